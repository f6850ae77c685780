"""Modbus TCP electricity meters: poll each meter's registers at an interval, decode them with its register
map (`registers.py`, `maps/*.toml`) and put one electricity_meter reading per successful poll.

A meter that does not answer (timeout, refused connection, Modbus exception) costs one failed poll: it is
counted in `stats`, logged once when the meter goes silent and once when it answers again (not at every
interval: a dead meter would fill the SD card), and the connection is closed so the next poll reconnects.
Nothing a meter does can stop the gateway. Meters behind one Modbus TCP gateway (same host and port, RS-485
unit ids) share one connection, polled in turn.

pymodbus is imported only when a meter is read over the network (the `modbus` extra): the gateway extra stays
paho-mqtt. A meter can instead be read from a register dump (`registers = "dump.json"`), which is
how a new map is checked offline and how the test cases run.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Protocol

from devices.kinds import DeviceKind
from devices.tables import Bounds
from devices.topics import check_id
from gateway.adapters.base import AdapterConfig, AdapterContext, AdapterSpec, DeviceRef, ReadingSink
from gateway.adapters.modbus.registers import Block, ReadError, RegisterMap, Table, decode, load_map, plan_reads
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from pymodbus.client import ModbusTcpClient

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MeterConfig:
    #: The registry id of the meter (an electricity_meter of this gateway).
    device: str
    #: A built-in map (`sdm630`, `em24`) or a map file, relative to the config file's folder.
    map: str
    host: str | None = None
    port: Annotated[int, Bounds(ge=1, le=65535)] = 502
    #: The Modbus unit id (slave address): the meter's RS-485 address behind a Modbus TCP gateway.
    unit: Annotated[int, Bounds(ge=0, le=255)] = 1
    #: Or: a register dump file read instead of the network (offline check of a map, test cases).
    registers: Path | None = None

    def __post_init__(self) -> None:
        if (self.host is None) == (self.registers is None):
            raise ValueError("give either host (Modbus TCP) or registers (a dump file)")
        check_id(self.device, "device")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModbusConfig(AdapterConfig):
    type: Literal["modbus"] = "modbus"
    #: Seconds between polls of every meter.
    interval_s: Annotated[float, Bounds(gt=0)] = 10.0
    #: Seconds to wait for a connection or an answer.
    timeout_s: Annotated[float, Bounds(gt=0, le=60)] = 2.0
    #: Extra attempts of a request within one poll (pymodbus `retries`).
    retries: Annotated[int, Bounds(ge=0, le=5)] = 0
    #: Stop after this many polling rounds (0: run until the gateway stops).
    polls: Annotated[int, Bounds(ge=0)] = 0
    meter: Annotated[list[MeterConfig], Bounds(min_length=1)]

    def __post_init__(self) -> None:
        ids = [m.device for m in self.meter]
        if len(set(ids)) != len(ids):
            raise ValueError(f"a device appears twice: {sorted({d for d in ids if ids.count(d) > 1})}")


class RegisterSource(Protocol):
    """Where a meter's registers come from: a Modbus TCP connection or a dump file."""

    def read(self, block: Block, unit: int) -> list[int]:
        """`block.count` registers; raises ReadError."""
        ...

    def close(self) -> None: ...


class DumpSource:
    """Registers from a JSON dump: `{"input": {"0x0000": [w0, w1, ...], ...}, "holding": {...}}`, each key the
    address of the first word of a run of consecutive registers."""

    def __init__(self, path: Path) -> None:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            self.tables: dict[str, dict[int, int]] = {}
            for table, runs in doc.items():
                words = self.tables.setdefault(table, {})
                for start, run in runs.items():
                    words.update({int(start, 0) + i: int(w) for i, w in enumerate(run)})
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            raise ConfigError(f"modbus: register dump {path}: {exc}") from exc

    def read(self, block: Block, unit: int) -> list[int]:
        words = self.tables.get(block.table, {})
        try:
            return [words[a] for a in range(block.address, block.address + block.count)]
        except KeyError as exc:
            raise ReadError(f"{block.table} register {exc.args[0]:#06x} is not in the dump") from None

    def close(self) -> None:
        pass


class TcpSource:
    """One Modbus TCP connection (pymodbus' synchronous client), reopened on the next read after a failure."""

    def __init__(self, host: str, port: int, timeout_s: float, retries: int) -> None:
        try:
            from pymodbus.client import ModbusTcpClient  # the `modbus` extra, only when used
        except ImportError as exc:
            raise ConfigError("modbus: pymodbus is not installed (pip install 'districtpulse[modbus]')") from exc
        self.where = f"{host}:{port}"
        self._client: ModbusTcpClient = ModbusTcpClient(host, port=port, timeout=timeout_s, retries=retries)

    def read(self, block: Block, unit: int) -> list[int]:
        from pymodbus.exceptions import ModbusException

        client = self._client
        try:
            if not client.connected and not client.connect():  # type: ignore[no-untyped-call]
                raise ReadError(f"cannot connect to {self.where}")
            fn = client.read_input_registers if block.table == "input" else client.read_holding_registers
            response = fn(block.address, count=block.count, device_id=unit)
        except (ModbusException, OSError) as exc:
            client.close()  # type: ignore[no-untyped-call]
            raise ReadError(f"{self.where} unit {unit}: {type(exc).__name__}: {exc}") from exc
        except ReadError:
            client.close()  # type: ignore[no-untyped-call]
            raise
        if response.isError():
            raise ReadError(f"{self.where} unit {unit}: {block.table} {block.address:#06x}+{block.count}: {response}")
        words = list(response.registers)
        if len(words) != block.count:
            raise ReadError(f"{self.where} unit {unit}: asked {block.count} registers, got {len(words)}")
        return words

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


@dataclass(slots=True)
class MeterStats:
    polls: int = 0
    failed: int = 0
    #: Consecutive failed polls (0 while the meter answers).
    failing_for: int = 0
    last_error: str = ""


@dataclass(slots=True)
class Meter:
    config: MeterConfig
    regmap: RegisterMap
    blocks: tuple[Block, ...]
    source: RegisterSource
    stats: MeterStats = field(default_factory=MeterStats)

    def read(self) -> dict[str, float]:
        registers: dict[int, int] = {}
        for block in self.blocks:
            words = self.source.read(block, self.config.unit)
            registers.update(zip(range(block.address, block.address + block.count), words, strict=True))
        return decode(self.regmap, registers)


class ModbusAdapter:
    def __init__(self, config: ModbusConfig, meters: Sequence[Meter]) -> None:
        self.config = config
        self.meters = tuple(meters)
        self._devices = tuple(DeviceRef(m.config.device, DeviceKind.ELECTRICITY_METER) for m in self.meters)

    def devices(self) -> Sequence[DeviceRef]:
        return self._devices

    @property
    def stats(self) -> dict[str, MeterStats]:
        return {m.config.device: m.stats for m in self.meters}

    def poll(self, meter: Meter, sink: ReadingSink) -> bool:
        """Read one meter and put its reading; a failure is counted and logged, never raised."""
        stats = meter.stats
        stats.polls += 1
        try:
            values = meter.read()
        except ReadError as exc:
            stats.failed += 1
            stats.failing_for += 1
            stats.last_error = str(exc)[:200]
            if stats.failing_for == 1:
                log.warning("modbus: meter %s: poll failed: %s", meter.config.device, stats.last_error)
            else:
                log.debug("modbus: meter %s: poll failed again: %s", meter.config.device, stats.last_error)
            return False
        if stats.failing_for:
            log.info("modbus: meter %s answers again after %d failed polls", meter.config.device, stats.failing_for)
            stats.failing_for = 0
        sink.now_ms()  # the reading's time: the gateway stamps it as it enters the spool
        sink.put(meter.config.device, values)
        return True

    def run(self, sink: ReadingSink, stop: threading.Event) -> None:
        due = time.monotonic()
        rounds = 0
        try:
            while not stop.is_set() and (self.config.polls == 0 or rounds < self.config.polls):
                for meter in self.meters:
                    if stop.is_set():
                        return
                    self.poll(meter, sink)
                rounds += 1
                due = max(due + self.config.interval_s, time.monotonic() - self.config.interval_s)
                stop.wait(max(0.0, due - time.monotonic()))
        finally:
            self.close()

    def close(self) -> None:
        """Close every connection (`run` does it when it returns)."""
        for source in {id(m.source): m.source for m in self.meters}.values():
            source.close()


def create(config: ModbusConfig, context: AdapterContext) -> ModbusAdapter:
    registry = {d.id: d.kind for d in context.registry_devices}
    sources: dict[tuple[str, int], RegisterSource] = {}
    meters = []
    for mc in config.meter:
        kind = registry.get(mc.device, DeviceKind.ELECTRICITY_METER if not registry else None)
        if kind is None:
            raise ConfigError(f"modbus: device {mc.device} is not assigned to gateway {context.gateway}")
        regmap = load_map(mc.map, context.base_dir)
        if kind is not regmap.kind:
            raise ConfigError(f"modbus: {mc.device} is a {kind.value}; map {regmap.name} reads {regmap.kind.value}")
        source: RegisterSource
        if mc.registers is not None:
            source = DumpSource(mc.registers if mc.registers.is_absolute() else context.base_dir / mc.registers)
        else:
            assert mc.host is not None  # the validator gives one or the other
            key = (mc.host, mc.port)
            if key not in sources:
                sources[key] = TcpSource(mc.host, mc.port, config.timeout_s, config.retries)
            source = sources[key]
        meters.append(Meter(mc, regmap, plan_reads(regmap), source))
    return ModbusAdapter(config, meters)


SPEC = AdapterSpec("modbus", ModbusConfig, create, "Modbus TCP electricity meters (Eastron SDM630, Carlo Gavazzi EM24)")

__all__ = ["SPEC", "DumpSource", "MeterConfig", "ModbusAdapter", "ModbusConfig", "Table", "TcpSource", "create"]

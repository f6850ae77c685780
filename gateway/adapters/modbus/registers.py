"""Register maps as data, and the decoding of raw 16-bit registers into readings (pure Python, no pymodbus).

A meter's map is a TOML file in `maps/` (or one given in the config): which register table it answers on
(input or holding), and per metric its address, data type, word order and divisor, with the page of the
vendor's document it comes from. Keeping maps as data means a new meter model is a reviewed file, not code,
and the decoding below is the same for the network, a register dump and the tests.

Decoding rules:
- a register is a big-endian 16-bit word (Modbus itself); a 32-bit value spans two registers, high word first
  (`word_order = "big"`, Eastron) or low word first (`"little"`, Carlo Gavazzi);
- a float32 is given as the shortest decimal that reads back as the same float32 (230.1, not
  230.10000610351562), so readings look like the meter's display and the tests can compare exactly;
- an integer is divided by `divide` (a register holding V x 10 has `divide = 10`): a true division, which is
  correctly rounded, where multiplying by 0.1 would not be (3 * 0.1 != 0.3).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from devices.kinds import KINDS, DeviceKind
from devices.tables import Bounds, TableError, load_toml
from gateway.errors import ConfigError

MAPS_DIR = Path(__file__).resolve().parent / "maps"
#: Modbus allows at most 125 registers in one read (the PDU is 253 bytes).
MODBUS_MAX_READ = 125

Table = Literal["input", "holding"]
DataType = Literal["float32", "int32", "uint32", "int16", "uint16"]
_STRUCT = {"float32": ">f", "int32": ">i", "uint32": ">I", "int16": ">h", "uint16": ">H"}
WIDTH = {"float32": 2, "int32": 2, "uint32": 2, "int16": 1, "uint16": 1}


class ReadError(Exception):
    """A meter could not be read (timeout, connection refused, Modbus exception, missing register)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterSpec:
    address: Annotated[int, Bounds(ge=0, le=0xFFFF)]
    type: DataType
    word_order: Literal["big", "little"] = "big"
    divide: Annotated[float, Bounds(gt=0)] = 1
    #: The unit of the value after division: checked against the metric's unit in `devices.kinds`.
    unit: str
    #: What the vendor's document calls the register (and where), for the reviewer.
    label: str = ""

    @property
    def width(self) -> int:
        return WIDTH[self.type]


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterMap:
    """One meter model's registers for the metrics of `kind` (all electricity meters today)."""

    name: str
    kind: DeviceKind = DeviceKind.ELECTRICITY_METER
    table: Table
    #: The vendor documents this map is taken from (titles, versions, URLs).
    sources: Annotated[list[str], Bounds(min_length=1)]
    #: Registers read in one request at most (some meters answer fewer than Modbus allows).
    max_read: Annotated[int, Bounds(ge=1, le=MODBUS_MAX_READ)] = MODBUS_MAX_READ
    #: Read through a gap of at most this many unmapped registers rather than send another request
    #: (0: only contiguous registers; some meters refuse a read that touches an unmapped register).
    max_gap: Annotated[int, Bounds(ge=0)] = 0
    registers: Annotated[dict[str, RegisterSpec], Bounds(min_length=1)]

    def __post_init__(self) -> None:
        metrics = KINDS[self.kind].metrics
        for name, reg in self.registers.items():
            metric = metrics.get(name)
            if metric is None:
                raise ValueError(f"{name} is not a metric of {self.kind.value} (known: {', '.join(metrics)})")
            if metric.unit != reg.unit:
                raise ValueError(f"{name}: the map gives {reg.unit!r}, {self.kind.value} wants {metric.unit!r}")
            if reg.width > self.max_read:
                raise ValueError(f"{name}: {reg.width} registers do not fit in max_read = {self.max_read}")


def builtin_maps() -> list[str]:
    return sorted(p.stem for p in MAPS_DIR.glob("*.toml"))


def load_map(name_or_path: str, base_dir: Path) -> RegisterMap:
    """A built-in map by name (`sdm630`, `em24`), or a map file (relative to the config's folder)."""
    path = MAPS_DIR / f"{name_or_path}.toml" if "/" not in name_or_path and not name_or_path.endswith(".toml") else None
    if path is None or not path.is_file():
        if path is not None:
            raise ConfigError(f"modbus: no built-in map {name_or_path!r} (built in: {', '.join(builtin_maps())})")
        path = Path(name_or_path) if Path(name_or_path).is_absolute() else base_dir / name_or_path
    try:
        return load_toml(RegisterMap, path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"modbus: cannot read map {path}: {exc}") from exc
    except TableError as exc:
        raise ConfigError(f"modbus: map {path}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: `count` registers from `address` of `table`."""

    table: Table
    address: int
    count: int


def plan_reads(regmap: RegisterMap) -> tuple[Block, ...]:
    """The fewest requests that cover every register of the map, within `max_read` and `max_gap`."""
    spans = sorted((r.address, r.address + r.width) for r in regmap.registers.values())
    blocks: list[list[int]] = []
    for start, end in spans:
        last = blocks[-1] if blocks else None
        if last and start - last[1] <= regmap.max_gap and max(end, last[1]) - last[0] <= regmap.max_read:
            last[1] = max(end, last[1])
        else:
            blocks.append([start, end])
    return tuple(Block(regmap.table, start, end - start) for start, end in blocks)


def _float32(raw: bytes) -> float:
    """The shortest decimal that reads back as the same float32 (NaN and infinities as they are)."""
    (value,) = struct.unpack(">f", raw)
    if value != value or value in (float("inf"), float("-inf")):
        return float(value)
    for digits in range(6, 10):
        short = float(f"{value:.{digits}g}")
        if struct.unpack(">f", struct.pack(">f", short))[0] == value:
            return short
    return float(value)


def decode_value(spec: RegisterSpec, words: Iterable[int]) -> float:
    """One metric's value from its registers, as they were read (in address order)."""
    regs = list(words)
    if len(regs) != spec.width or not all(0 <= w <= 0xFFFF for w in regs):
        raise ReadError(f"register {spec.address:#06x}: expected {spec.width} 16-bit words, got {regs!r:.60}")
    if spec.word_order == "little":
        regs.reverse()
    raw = b"".join(w.to_bytes(2, "big") for w in regs)
    if spec.type == "float32":
        value = _float32(raw)
        return value if spec.divide == 1 else value / spec.divide
    (number,) = struct.unpack(_STRUCT[spec.type], raw)
    return float(number) if spec.divide == 1 else number / spec.divide


def decode(regmap: RegisterMap, registers: Mapping[int, int]) -> dict[str, float]:
    """Every metric of the map from `registers` (address -> word, of the map's table)."""
    values: dict[str, float] = {}
    for name, spec in regmap.registers.items():
        try:
            words = [registers[a] for a in range(spec.address, spec.address + spec.width)]
        except KeyError as exc:
            raise ReadError(f"{name}: register {exc.args[0]:#06x} was not read") from None
        values[name] = decode_value(spec, words)
    return values

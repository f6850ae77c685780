"""Simulated devices: plausible readings for any number of devices of every kind, in plain Python.

Every value is a pure function of the device, the seed and the time of the sampling tick: registers grow
linearly with time (so they keep growing across gateway restarts, as a real meter's would), instantaneous
values oscillate, and each EV charger runs one charging session per four-hour period (a session start and
stop every period: the spool's EVENT readings). No state, no numpy: it runs on the Pi, in the tests and in
the footprint benchmark.
"""

from __future__ import annotations

import math
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

from devices.kinds import DeviceKind
from devices.tables import Bounds
from devices.topics import check_id
from gateway.adapters.base import AdapterConfig, AdapterContext, AdapterSpec, DeviceRef, ReadingSink, Values
from gateway.errors import ConfigError

HOUR_MS = 3_600_000
#: Registers count from 2024-01-01T00:00Z, so their values look like a few years of a real meter's.
REGISTER_EPOCH_MS = 1_704_067_200_000
EV_PERIOD_MS = 4 * HOUR_MS
EV_POWER_W = 11_000.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatedConfig(AdapterConfig):
    type: Literal["simulated"] = "simulated"
    #: Seconds between sampling ticks; every device gives one reading per tick.
    interval_s: Annotated[float, Bounds(gt=0)] = 1.0
    #: Registry devices to simulate (default: every device the registry assigns to this gateway).
    devices: list[str] | None = None
    #: Or: this many synthetic devices `<gateway>-sim-0000`..., kinds taken in turn from `kinds`.
    count: Annotated[int, Bounds(ge=1, le=100_000)] | None = None
    kinds: list[DeviceKind] = field(default_factory=lambda: list(DeviceKind))
    seed: int = 0
    #: Stop after this many ticks (0: run until the gateway stops).
    ticks: Annotated[int, Bounds(ge=0)] = 0
    #: Spread each tick's readings over the interval, a slice of the devices at a time (as a bus master
    #: polls its meters one after another), instead of reading every device at the tick's start.
    stagger: bool = False

    def __post_init__(self) -> None:
        if self.devices is not None and self.count is not None:
            raise ValueError("give either devices or count, not both")
        if not self.kinds:
            raise ValueError("kinds must not be empty")


def _unit(device_id: str, seed: int, salt: str) -> float:
    """A stable number in [0, 1) per device, seed and purpose."""
    return zlib.crc32(f"{seed}:{salt}:{device_id}".encode()) / 2**32


ValuesFn = Callable[[int], Values]


def values_fn(device: DeviceRef, seed: int) -> ValuesFn:
    """The device's reading at time `t_ms`, as a closure with the device's constants baked in."""
    u = _unit(device.id, seed, "size")
    phase = 2 * math.pi * _unit(device.id, seed, "phase")
    base = 1_000.0 + 50_000.0 * _unit(device.id, seed, "base")

    def hours(t_ms: int) -> float:
        return max(0, t_ms - REGISTER_EPOCH_MS) / HOUR_MS

    def wave(t_ms: int, period_h: float) -> float:
        return math.sin(2 * math.pi * t_ms / (period_h * HOUR_MS) + phase)

    kind = device.kind
    if kind is DeviceKind.ELECTRICITY_METER:
        mean_kw = 2.0 + 60.0 * u

        def meter(t: int) -> Values:
            return {
                "energy_import": round(base + mean_kw * hours(t), 4),
                "energy_export": round(base / 10, 4),
                "power": round(mean_kw * 1000 * (1 + 0.2 * wave(t, 24)), 1),
                "voltage": round(230 + 2 * wave(t, 0.5), 1),
            }

        return meter
    if kind is DeviceKind.HEAT_METER:
        mean_kw = 5.0 + 100.0 * u

        def heat(t: int) -> Values:
            return {
                "energy": round(base + mean_kw * hours(t), 4),
                "flow_temperature": round(60 + 5 * wave(t, 24), 2),
                "return_temperature": round(38 + 3 * wave(t, 24), 2),
            }

        return heat
    if kind is DeviceKind.PV_INVERTER:
        peak_w = 5_000.0 + 50_000.0 * u

        def pv(t: int) -> Values:
            return {
                "energy_production": round(base + peak_w / 3000 * hours(t), 4),
                "power": round(max(0.0, peak_w * wave(t, 24)), 1),
            }

        return pv
    if kind is DeviceKind.BUILDING_SENSOR:

        def sensor(t: int) -> Values:
            w = wave(t, 24)
            return {
                "temperature": round(21 + 1.5 * w, 2),
                "relative_humidity": round(35 + 5 * w, 1),
                "co2": round(600 + 300 * max(0.0, w), 0),
                "occupancy": float(round(20 * max(0.0, w))),
            }

        return sensor
    if kind is DeviceKind.WEATHER_STATION:

        def weather(t: int) -> Values:
            return {"outdoor_temperature": round(5 + 8 * wave(t, 24), 2)}

        return weather
    # EV charger: session k fills the start of period k, for 1 to 2.5 hours.
    prefix = device.id[:48]

    def charger(t: int) -> Values:
        k, into = divmod(t, EV_PERIOD_MS)
        duration = HOUR_MS + (k % 4) * HOUR_MS // 2
        if into < duration:
            return {
                "connector_status": "Charging",
                "session_id": f"{prefix}-{k}",
                "session_energy": round(EV_POWER_W / 1000 * into / HOUR_MS, 4),
                "power": EV_POWER_W,
            }
        return {"connector_status": "Available", "session_id": "", "session_energy": 0.0, "power": 0.0}

    return charger


#: With `stagger`, a tick's devices are read in at most this many slices (about one per interval / 100).
STAGGER_SLICES = 100


def _slices(fns: list[tuple[str, ValuesFn]], n: int) -> list[list[tuple[str, ValuesFn]]]:
    """`fns` in at most `n` slices of near-equal size, in order (one slice if there are no devices)."""
    n = max(1, min(n, len(fns)))
    size, extra = divmod(len(fns), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(fns[start:end])
        start = end
    return out


class SimulatedAdapter:
    def __init__(self, config: SimulatedConfig, devices: Sequence[DeviceRef]) -> None:
        self.config = config
        self._devices = tuple(devices)
        self._fns = [(d.id, values_fn(d, config.seed)) for d in self._devices]

    def devices(self) -> Sequence[DeviceRef]:
        return self._devices

    def run(self, sink: ReadingSink, stop: threading.Event) -> None:
        """One reading per device per tick; `sink.now_ms()` is read once per slice (a slice's time): one slice of
        every device per tick, or with `stagger` up to STAGGER_SLICES slices spread evenly over the interval."""
        interval = self.config.interval_s
        slices = _slices(self._fns, STAGGER_SLICES if self.config.stagger else 1)
        step = interval / len(slices)
        due = time.monotonic()
        tick = 0
        while not stop.is_set() and (self.config.ticks == 0 or tick < self.config.ticks):
            for part in slices:
                t = sink.now_ms()
                for device_id, fn in part:
                    sink.put(device_id, fn(t))
                due += step
                if stop.wait(max(0.0, due - time.monotonic())) and part is not slices[-1]:
                    return  # stopped mid-tick: the slices read so far are spooled, the rest of the tick is not
            tick += 1


def create(config: SimulatedConfig, context: AdapterContext) -> SimulatedAdapter:
    if config.count is not None:
        devices = [
            DeviceRef(check_id(f"{context.gateway}-sim-{i:04d}", "device"), config.kinds[i % len(config.kinds)])
            for i in range(config.count)
        ]
    else:
        known = {d.id: d for d in context.registry_devices}
        wanted = config.devices if config.devices is not None else list(known)
        missing = [d for d in wanted if d not in known]
        if missing:
            raise ConfigError(f"simulated: devices not assigned to gateway {context.gateway}: {', '.join(missing)}")
        devices = [known[d] for d in wanted]
        if not devices:
            raise ConfigError(f"simulated: gateway {context.gateway} has no devices in the registry; give count")
    return SimulatedAdapter(config, devices)


SPEC = AdapterSpec("simulated", SimulatedConfig, create, "plausible readings for any number of devices")

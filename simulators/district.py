"""A small simulated district: plausible readings for every device of a registry, with known totals.

Deterministic for a seed: the same registry, day and seed give byte-identical messages. Readings are
sampled every `resolution_s` seconds and grouped into one message per device per `publish_interval_s`,
as a gateway would publish them. Registers are cumulative where the real device's are.

This is the walking skeleton's generator; the simulators issue brings fuller models (weather-dependent
loads, clear-sky PV, EV session statistics, interventions and fault injection with a truth file).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from devices import Device, DeviceKind, Registry, encode_batch, units_for

Values = dict[str, float | str]


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    device: str
    readings: int


@dataclass(slots=True)
class Truth:
    """What the simulation sent: counts, per-device register deltas and the injected faults."""

    readings: int = 0
    messages: int = 0
    bad_readings: int = 0
    energy_import_kwh: dict[str, float] = field(default_factory=dict)
    faults: list[dict[str, object]] = field(default_factory=list)


def _hour_of_day(ts_ms: int, tz: ZoneInfo) -> float:
    local = datetime.fromtimestamp(ts_ms / 1000, tz)
    return local.hour + local.minute / 60 + local.second / 3600


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-(((hour - centre) / width) ** 2))


def _load_shape(use: str, hour: float) -> float:
    """Relative electricity demand (about 0.3..1.3) by building use and local hour."""
    if use == "residential":
        return 0.35 + 0.6 * _bump(hour, 7.5, 1.5) + 0.9 * _bump(hour, 19.0, 2.5)
    if use == "education":
        return 0.25 + 1.0 * _bump(hour, 11.0, 3.5)
    return 0.3 + 0.95 * _bump(hour, 13.0, 4.0)  # commercial


def _outdoor_temperature(hour: float, day_seed: float) -> float:
    """A November day in southern Finland: about -1..5 degC, coldest before dawn."""
    return 2.0 + day_seed + 2.5 * math.sin((hour - 9.0) / 24 * 2 * math.pi)


@dataclass
class DistrictSimulator:
    registry: Registry
    day: date
    seed: int = 42
    resolution_s: int = 60
    publish_interval_s: int = 900
    inject_bad_readings: int = 5
    truth: Truth = field(default_factory=Truth)

    def __post_init__(self) -> None:
        if self.publish_interval_s % self.resolution_s:
            raise ValueError("publish_interval_s must be a multiple of resolution_s")
        self.district = next(iter(self.registry.districts.values()))
        self.tz = ZoneInfo(self.district.timezone)
        start = datetime(self.day.year, self.day.month, self.day.day, tzinfo=self.tz)
        self.start_ms = int(start.timestamp() * 1000)
        end = datetime.combine(self.day + timedelta(days=1), datetime.min.time(), self.tz)
        self.end_ms = int(end.timestamp() * 1000)  # 23 or 25 hours on DST days
        self._rng = random.Random(self.seed)
        self._state: dict[str, dict[str, float]] = {}
        self._units = {kind: units_for(kind) for kind in DeviceKind}
        self._day_offset = self._rng.uniform(-2, 2)
        devices = sorted(self.registry, key=lambda d: d.id)
        total = (self.end_ms - self.start_ms) // (self.resolution_s * 1000) * len(devices)
        # The bad readings are chosen up front so that the count is exact and independent of timing.
        self._bad: dict[tuple[str, int], str] = {}
        candidates = [d for d in devices if d.kind in (DeviceKind.BUILDING_SENSOR, DeviceKind.WEATHER_STATION)]
        steps = (self.end_ms - self.start_ms) // (self.resolution_s * 1000)
        for i in range(min(self.inject_bad_readings, total)):
            dev = candidates[i % len(candidates)]
            step = self._rng.randrange(steps)
            self._bad[(dev.id, step)] = "nan" if i % 2 == 0 else "out_of_range"
        self._devices = devices

    # -- per-kind models ------------------------------------------------------------------------------------
    def _init_state(self, dev: Device) -> dict[str, float]:
        rng = self._rng
        return {
            "register": rng.uniform(1_000, 90_000),
            "export": rng.uniform(0, 5_000),
            "session": 0.0,
            "session_no": 0.0,
            "charge_left": 0.0,
            "next_arrival_h": rng.uniform(6, 20),
        }

    def _values(self, dev: Device, ts_ms: int, dt_h: float) -> Values:
        rng = self._rng
        st = self._state.setdefault(dev.id, self._init_state(dev))
        hour = _hour_of_day(ts_ms, self.tz)
        building = self.registry.buildings[dev.building][1]
        t_out = _outdoor_temperature(hour, self._day_offset)
        if dev.kind is DeviceKind.ELECTRICITY_METER:
            share = 1.0 if dev.submeter_of is None else 0.15 + 0.05 * (hash_id(dev.id) % 4)
            base_w = building.floor_area_m2 * 4.0  # ~4 W/m2 average electric load
            power = max(0.0, base_w * share * _load_shape(building.use, hour) * rng.uniform(0.9, 1.1))
            st["register"] += power * dt_h / 1000
            return {
                "energy_import": round(st["register"], 4),
                "energy_export": round(st["export"], 4),
                "power": round(power, 1),
                "voltage": round(rng.gauss(230, 1.5), 1),
            }
        if dev.kind is DeviceKind.HEAT_METER:
            ua_w_per_k = building.floor_area_m2 * 0.9
            power = max(0.0, ua_w_per_k * (20.0 - t_out) * rng.uniform(0.95, 1.05))
            st["register"] += power * dt_h / 1000
            flow = 55.0 + max(0.0, 5.0 - t_out) * 1.2
            return {
                "energy": round(st["register"], 4),
                "flow_temperature": round(flow, 2),
                "return_temperature": round(flow - 22.0 + rng.gauss(0, 0.3), 2),
            }
        if dev.kind is DeviceKind.PV_INVERTER:
            daylight = max(0.0, math.sin(math.pi * (hour - 9.0) / 6.0)) if 9.0 <= hour <= 15.0 else 0.0
            power = 30_000 * 0.25 * daylight * rng.uniform(0.4, 1.0)  # low November sun, clouds
            st["register"] += power * dt_h / 1000
            return {"energy_production": round(st["register"], 4), "power": round(power, 1)}
        if dev.kind is DeviceKind.WEATHER_STATION:
            return {"outdoor_temperature": round(t_out + rng.gauss(0, 0.2), 2)}
        if dev.kind is DeviceKind.BUILDING_SENSOR:
            occupied = _load_shape(building.use, hour) > 0.8
            people = float(rng.randint(5, 25)) if occupied else float(rng.randint(0, 2))
            return {
                "temperature": round(21.0 + rng.gauss(0, 0.3), 2),
                "relative_humidity": round(min(100.0, max(0.0, rng.gauss(32, 3))), 1),
                "co2": round(420 + 28 * people + rng.gauss(0, 10), 0),
                "occupancy": people,
            }
        # EV charger: sessions arrive, charge at 11 kW until their energy is delivered, then finish.
        if st["charge_left"] <= 0 and st["session"] > 0:
            st["session"] = 0.0
            st["next_arrival_h"] = hour + rng.uniform(1, 6)
        if st["charge_left"] <= 0 and st["session"] == 0 and st["next_arrival_h"] <= hour < 22:
            st["session_no"] += 1
            st["session"] = 1.0
            st["charge_left"] = rng.uniform(5, 30)
            st["register"] = 0.0
        if st["charge_left"] > 0:
            power = 11_000.0
            energy = min(st["charge_left"], power * dt_h / 1000)
            st["charge_left"] -= energy
            st["register"] += energy
            return {
                "connector_status": "Charging",
                "session_id": f"{dev.id}-{self.day.isoformat()}-{int(st['session_no'])}",
                "session_energy": round(st["register"], 4),
                "power": power,
            }
        return {"connector_status": "Available", "session_id": "", "session_energy": 0.0, "power": 0.0}

    # -- output ---------------------------------------------------------------------------------------------
    def messages(self) -> Iterator[Message]:
        """Every message of the day in publish order (by interval, then device)."""
        step_ms = self.resolution_s * 1000
        per_message = self.publish_interval_s // self.resolution_s
        dt_h = self.resolution_s / 3600
        seq: dict[str, int] = {}
        first_import: dict[str, float] = {}
        step = 0
        for interval_start in range(self.start_ms, self.end_ms, self.publish_interval_s * 1000):
            n = min(per_message, (self.end_ms - interval_start) // step_ms)
            for dev in self._devices:
                readings: list[tuple[int, dict[str, float | str]]] = []
                for k in range(n):
                    ts = interval_start + k * step_ms
                    values = self._values(dev, ts, dt_h)
                    fault = self._bad.get((dev.id, step + k))
                    if fault is not None:
                        metric = next(iter(values))
                        values[metric] = math.nan if fault == "nan" else 1e6
                        self.truth.bad_readings += 1
                        self.truth.faults.append({"device": dev.id, "ts": ts, "fault": fault, "metric": metric})
                    if dev.kind is DeviceKind.ELECTRICITY_METER:
                        first_import.setdefault(dev.id, float(values["energy_import"]))
                        self.truth.energy_import_kwh[dev.id] = float(values["energy_import"]) - first_import[dev.id]
                    readings.append((ts, values))
                first = seq.get(dev.id, 0)
                seq[dev.id] = first + len(readings)
                payload = encode_batch(dev.id, first, self._units[dev.kind], readings)
                self.truth.readings += len(readings)
                self.truth.messages += 1
                yield Message(dev.topic, payload, dev.id, len(readings))
            step += n


def hash_id(value: str) -> int:
    """A stable small hash (Python's hash() is salted per process)."""
    return sum(value.encode()) % 997


def yesterday(tz_name: str) -> date:
    return (datetime.now(UTC).astimezone(ZoneInfo(tz_name)) - timedelta(days=1)).date()

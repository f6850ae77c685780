"""One snapshot of every district: what the page shows and what the alert rules read.

`Collector.collect(now_ms)` asks the readers (`sources`) and composes plain, immutable views:
district -> building -> device, the gateways, today's figures, the data quality and a power chart.

Definitions (what an operator reads on the page):
- a device is *silent* when its newest reading is older than `fresh_intervals` of its reading interval
  (or it has none in the look-back); *power now* sums only devices that are not silent;
- *energy today* is counted from the cumulative registers since the district's local midnight with
  `aggregation.interval_energy` (resets, rollovers and implausible jumps handled there), on the last register
  of each minute, plus the interval from the last register before midnight: the cost is bounded by the
  minutes of the day, not by how often devices report. Sub-meters are left out: they are inside their meter;
- *self-sufficiency* (PED; `aggregation.kpis.self_sufficiency`) is Σ min(G, L) / Σ L. Behind a grid meter
  that is (G − X) / (I − X + G), with I, X the import and export registers and G the PV production: the meter
  itself nets generation against load at its own resolution;
- *completeness* is stored / issued readings over the last `quality_window_s`, counted from the gateways'
  sequence numbers (`aggregation.completeness`): what was issued is known, so no reporting interval is
  assumed, and the readings that are not stored are told apart: quarantined by ingest, evicted at the edge
  (a gateway's spool bound), or lost in transit. A device that issued nothing in the window has no
  completeness (it is *silent*, which is its own alert);
- the *quarantine rate* is quarantined / (stored + quarantined) readings over the same window.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np

from aggregation import interval_energy
from aggregation.completeness import SeqAccount, total
from dashboard.config import DashboardConfig
from dashboard.sources import GatewayStatus, Latest, Readings, Registers, Rejections, Statuses, Value
from devices import DeviceKind, Registry
from devices.carriers import carriers_of
from devices.registry import Device, DistrictEntry
from storage.errors import SinkError

log = logging.getLogger(__name__)

ENERGY_STEP_S = 60
GatewayState = Literal["online", "offline", "late", "unknown"]


@dataclass(frozen=True, slots=True)
class DeviceView:
    id: str
    kind: DeviceKind
    building: str
    gateway: str
    submeter_of: str | None
    interval_s: float
    last_seen_ms: int | None
    age_s: float | None
    silent: bool
    values: Mapping[str, Value]
    account: SeqAccount = field(default_factory=SeqAccount)

    @property
    def completeness(self) -> float | None:
        return self.account.completeness


@dataclass(frozen=True, slots=True)
class GatewayView:
    id: str
    building: str
    devices: int
    state: GatewayState
    reason: str | None = None
    heartbeat_age_s: float | None = None
    spool_readings: int | None = None
    spool_oldest_age_s: float | None = None
    clock_sync: str | None = None
    skew_s: float | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class Figures:
    """Live power (W) and today's energy (kWh) of a building or a district; None where nothing measures it."""

    grid_power_w: float | None = None
    pv_power_w: float | None = None
    ev_power_w: float | None = None
    import_kwh: float | None = None
    export_kwh: float | None = None
    pv_kwh: float | None = None
    heat_kwh: float | None = None
    ev_kwh: float | None = None
    chargers: int = 0
    chargers_charging: int = 0

    @property
    def consumption_w(self) -> float | None:
        if self.grid_power_w is None:
            return None
        return self.grid_power_w + (self.pv_power_w or 0.0)

    @property
    def self_sufficiency(self) -> float | None:
        """(G − X) / (I − X + G) over today; None without PV or without consumption."""
        if self.pv_kwh is None or self.import_kwh is None:
            return None
        export = self.export_kwh or 0.0
        load = self.import_kwh - export + self.pv_kwh
        if load <= 0:
            return None
        return min(max((self.pv_kwh - export) / load, 0.0), 1.0)


@dataclass(frozen=True, slots=True)
class Quality:
    window_s: int
    #: the district's readings issued in the window and what became of them, summed over its devices
    account: SeqAccount
    quarantined_window: int
    quarantined_today: Mapping[str, int]

    @property
    def completeness(self) -> float | None:
        return self.account.completeness

    @property
    def quarantine_rate(self) -> float | None:
        total = self.account.stored + self.quarantined_window
        return None if total == 0 else self.quarantined_window / total


@dataclass(frozen=True, slots=True)
class BuildingView:
    id: str
    name: str
    use: str
    floor_area_m2: float
    figures: Figures
    device_ids: tuple[str, ...]
    silent: int


@dataclass(frozen=True, slots=True)
class Chart:
    """Mean power per bucket (W): grid import (main meters), PV production, EV charging."""

    ts_ms: list[int] = field(default_factory=list)
    grid_w: list[float | None] = field(default_factory=list)
    pv_w: list[float | None] = field(default_factory=list)
    ev_w: list[float | None] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DistrictView:
    id: str
    name: str
    timezone: str
    day_start_ms: int
    figures: Figures
    savings_kwh: float | None
    co2_avoided_kg: float | None
    buildings: tuple[BuildingView, ...]
    devices: Mapping[str, DeviceView]
    gateways: tuple[GatewayView, ...]
    quality: Quality
    chart: Chart
    problem: str | None = None

    @property
    def silent(self) -> list[DeviceView]:
        return [d for d in self.devices.values() if d.silent]

    @property
    def reporting(self) -> int:
        return len(self.devices) - len(self.silent)


@dataclass(frozen=True, slots=True)
class Snapshot:
    at_ms: int
    districts: tuple[DistrictView, ...]
    pinned: bool = False  # `as_of` a past moment (a recorded day), not live

    def district(self, district_id: str) -> DistrictView | None:
        return next((d for d in self.districts if d.id == district_id), None)

    def find_building(self, building_id: str) -> tuple[DistrictView, BuildingView] | None:
        for d in self.districts:
            for b in d.buildings:
                if b.id == building_id:
                    return d, b
        return None

    def find_device(self, device_id: str) -> tuple[DistrictView, DeviceView] | None:
        for d in self.districts:
            if device_id in d.devices:
                return d, d.devices[device_id]
        return None


def local_midnight_ms(now_ms: int, tz: str) -> int:
    local = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(ZoneInfo(tz))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return int(midnight.timestamp() * 1000)


def register_energy(
    base: Latest | None, registers: Registers | None, field_name: str, max_power_w: float | None, rollover: float | None
) -> float:
    """kWh of one register since `base` (the last reading before the period) over the period's rows."""
    ts: list[int] = []
    values: list[float] = []
    if base is not None and isinstance(base.values.get(field_name), float):
        ts.append(base.ts_ms)
        values.append(float(base.values[field_name]))
    if registers is not None:
        for t, v in zip(registers.ts_ms, registers.values.get(field_name, []), strict=True):
            if not ts or t > ts[-1]:
                ts.append(t)
                values.append(v)
    if len(ts) < 2:
        return 0.0
    result = interval_energy(
        np.asarray(ts, dtype=np.int64), np.asarray(values, dtype=np.float64), max_power_w=max_power_w, rollover=rollover
    )
    return result.total()


# Which register of which kind feeds which figure.
def energy_by_device(
    devices: Sequence[Device], base: Mapping[str, Latest], rows: Mapping[str, Registers]
) -> dict[str, dict[str, float]]:
    """Figure name -> kWh today, per device that has registers (sub-meters left out)."""
    out: dict[str, dict[str, float]] = {}
    for device in devices:
        carriers = carriers_of(device.kind)
        if not carriers or device.submeter_of is not None:
            continue
        out[device.id] = {
            c.figure: register_energy(
                base.get(device.id), rows.get(device.id), c.register, device.max_power_w, device.register_rollover_kwh
            )
            for c in carriers
        }
    return out


def figures_of(
    devices: Sequence[Device],
    views: Mapping[str, DeviceView],
    energy: Mapping[str, Mapping[str, float]],
) -> Figures:
    """Sum live power over the devices that are not silent and today's energy over all of them."""

    def power(kind: DeviceKind, main_only: bool = False) -> float | None:
        chosen = [d for d in devices if d.kind == kind and not (main_only and d.submeter_of)]
        live = [views[d.id] for d in chosen if not views[d.id].silent]
        watts = [float(v.values["power"]) for v in live if isinstance(v.values.get("power"), float | int)]
        return float(sum(watts)) if watts else None

    def kwh(kind: DeviceKind, figure: str) -> float | None:
        chosen = [d for d in devices if d.kind == kind and d.submeter_of is None]
        if not chosen:
            return None
        return float(sum(energy.get(d.id, {}).get(figure, 0.0) for d in chosen))

    chargers = [views[d.id] for d in devices if d.kind == DeviceKind.EV_CHARGER]
    return Figures(
        grid_power_w=power(DeviceKind.ELECTRICITY_METER, main_only=True),
        pv_power_w=power(DeviceKind.PV_INVERTER),
        ev_power_w=power(DeviceKind.EV_CHARGER),
        import_kwh=kwh(DeviceKind.ELECTRICITY_METER, "import_kwh"),
        export_kwh=kwh(DeviceKind.ELECTRICITY_METER, "export_kwh"),
        pv_kwh=kwh(DeviceKind.PV_INVERTER, "pv_kwh"),
        heat_kwh=kwh(DeviceKind.HEAT_METER, "heat_kwh"),
        ev_kwh=kwh(DeviceKind.EV_CHARGER, "ev_kwh"),
        chargers=len(chargers),
        chargers_charging=sum(1 for c in chargers if not c.silent and c.values.get("connector_status") == "Charging"),
    )


#: The largest magnitude a status number may have (ms timestamps, counts, ages): beyond it, or not finite, or not
#: a number at all, the field is unknown. (`parse_status` already refuses NaN and Infinity; this also covers
#: a document built some other way, and a bool, which Python counts as an int.)
_MAX_NUMBER = 1e15
_MAX_TEXT = 200


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and abs(number) <= _MAX_NUMBER else None


def _text(value: object) -> str:
    """A status field shown to operators: a string, cut to `_MAX_TEXT` characters (escaped when rendered)."""
    text = value if isinstance(value, str) else json.dumps(value)[:_MAX_TEXT]
    return text[:_MAX_TEXT]


def gateway_view(
    gateway_id: str, building: str, devices: int, status: GatewayStatus | None, now_ms: int, late_after_s: float
) -> GatewayView:
    """A gateway's state from its last status: offline (said so or its Last Will), late (heartbeat overdue),
    online, or unknown (it never published a status)."""
    if status is None:
        return GatewayView(gateway_id, building, devices, "unknown")
    doc = status.doc
    ts = _number(doc.get("ts"))
    sent_ms = None if ts is None else int(ts)
    # A live message's age is its receive time; a retained one replayed at subscription has only its own ts.
    if status.retained:
        age_s = None if sent_ms is None else max((now_ms - sent_ms) / 1000, 0.0)
    else:
        age_s = max((now_ms - status.received_ms) / 1000, 0.0)
    skew_s = None if status.retained or sent_ms is None else (sent_ms - status.received_ms) / 1000
    spool = doc.get("spool") if isinstance(doc.get("spool"), dict) else {}
    clock = doc.get("clock") if isinstance(doc.get("clock"), dict) else {}
    state: GatewayState
    if status.state == "offline":
        state = "offline"
    elif status.state != "online":
        state = "unknown"
    elif age_s is not None and age_s > late_after_s:
        state = "late"
    else:
        state = "online"
    readings = _number(spool.get("readings")) if spool else None
    oldest = _number(spool.get("oldest_age_s")) if spool else None
    return GatewayView(
        gateway_id,
        building,
        devices,
        state,
        reason=_text(doc["reason"]) if "reason" in doc else None,
        heartbeat_age_s=age_s,
        spool_readings=None if readings is None else int(readings),
        spool_oldest_age_s=oldest,
        clock_sync=_text(clock["sync"]) if clock and "sync" in clock else None,
        skew_s=skew_s,
        version=_text(doc["version"]) if "version" in doc else None,
    )


def _sum_series(series: Mapping[str, list[tuple[int, float]]], devices: Sequence[str]) -> dict[int, float]:
    out: dict[int, float] = {}
    for device in devices:
        for t, w in series.get(device, []):
            out[t] = out.get(t, 0.0) + w
    return out


@dataclass(slots=True)
class _EnergyCache:
    day_start_ms: int
    computed_at: float
    by_device: dict[str, dict[str, float]]


class Collector:
    """Builds snapshots from the readers; keeps today's energy per district between refreshes."""

    def __init__(
        self,
        config: DashboardConfig,
        registry: Registry,
        readings: Readings,
        rejections: Rejections,
        statuses: Statuses,
        *,
        quality_window_s: int | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.readings = readings
        self.rejections = rejections
        self.statuses = statuses
        self.quality_window_s = quality_window_s or _completeness_window(config)
        self._energy: dict[str, _EnergyCache] = {}

    async def collect(self, now_ms: int | None = None) -> Snapshot:
        """The snapshot at `now_ms`: the configured `as_of`, else the wall clock."""
        as_of = self.config.dashboard.as_of
        if now_ms is None and as_of is not None:
            now_ms = int(as_of.timestamp() * 1000)
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        views = []
        for district in self.registry.districts.values():
            try:
                views.append(await self._district(district, now))
            except SinkError as exc:
                log.warning("district %s: %s", district.id, exc)
                views.append(self._unavailable(district, now, str(exc)))
        return Snapshot(now, tuple(views), pinned=as_of is not None)

    def _devices(self, district_id: str) -> list[Device]:
        return [d for d in self.registry if d.district == district_id]

    async def _district(self, district: DistrictEntry, now: int) -> DistrictView:
        cfg = self.config.dashboard
        devices = self._devices(district.id)
        day_start = local_midnight_ms(now, district.timezone)
        window_start = now - self.quality_window_s * 1000
        latest = await self.readings.latest(district.id, now - cfg.last_seen_lookback_s * 1000)
        found = await self.readings.seq_accounts(district.id, window_start, now + 1)
        views = {d.id: self._device_view(d, latest.get(d.id), found.get(d.id, SeqAccount()), now) for d in devices}
        energy = await self._energy_today(district.id, devices, day_start)
        buildings = []
        for building_id, (d_entry, b) in self.registry.buildings.items():
            if d_entry.id != district.id:
                continue
            in_building = [d for d in devices if d.building == building_id]
            buildings.append(
                BuildingView(
                    b.id,
                    b.name or b.id,
                    b.use,
                    b.floor_area_m2,
                    figures_of(in_building, views, energy),
                    tuple(d.id for d in in_building),
                    sum(1 for d in in_building if views[d.id].silent),
                )
            )
        statuses = self.statuses.gateways()
        late_after_s = cfg.heartbeat_interval_s * _heartbeats(self.config)
        gateways = tuple(
            gateway_view(g.id, b.id, len(g.device), statuses.get(g.id), now, late_after_s)
            for gid, (d_entry, b, g) in self.registry.gateways.items()
            if d_entry.id == district.id and gid
        )
        quarantined_window = sum(self.rejections.by_reason(district.id, window_start).values())
        quality = Quality(
            self.quality_window_s,
            total(v.account for v in views.values()),
            quarantined_window,
            self.rejections.by_reason(district.id, day_start),
        )
        savings = await self._kpi(district.id, self.config.kpis.savings_kwh)
        co2 = await self._kpi(district.id, self.config.kpis.co2_avoided_kg)
        chart = await self._chart(district.id, devices, now)
        return DistrictView(
            district.id,
            district.name or district.id,
            district.timezone,
            day_start,
            figures_of(devices, views, energy),
            savings,
            co2,
            tuple(buildings),
            views,
            gateways,
            quality,
            chart,
        )

    def _device_view(self, device: Device, latest: Latest | None, account: SeqAccount, now: int) -> DeviceView:
        interval = self.config.reading_interval_s(device.kind)
        age = None if latest is None else max((now - latest.ts_ms) / 1000, 0.0)
        silent = age is None or age > interval * self.config.dashboard.fresh_intervals
        return DeviceView(
            device.id,
            device.kind,
            device.building,
            device.gateway,
            device.submeter_of,
            interval,
            None if latest is None else latest.ts_ms,
            age,
            silent,
            {} if latest is None else dict(latest.values),
            account,
        )

    async def _energy_today(self, district: str, devices: list[Device], day_start: int) -> dict[str, dict[str, float]]:
        cached = self._energy.get(district)
        fresh = cached is not None and cached.day_start_ms == day_start
        if fresh and cached and time.monotonic() - cached.computed_at < self.config.dashboard.energy_refresh_s:
            return cached.by_device
        base = await self.readings.registers_before(
            district, day_start, self.config.dashboard.last_seen_lookback_s * 1000
        )
        rows = await self.readings.registers(district, day_start, ENERGY_STEP_S)
        by_device = energy_by_device(devices, base, rows)
        self._energy[district] = _EnergyCache(day_start, time.monotonic(), by_device)
        return by_device

    async def _kpi(self, district: str, ref: str) -> float | None:
        measurement, _, field_name = ref.partition(".")
        if not measurement or not field_name:
            return None
        found = await self.readings.kpi(district, measurement, field_name)
        return None if found is None else found[1]

    async def _chart(self, district: str, devices: list[Device], now: int) -> Chart:
        cfg = self.config.dashboard
        series = await self.readings.power_series(district, now - cfg.chart_window_s * 1000, cfg.chart_step_s)
        grid = _sum_series(
            series, [d.id for d in devices if d.kind == DeviceKind.ELECTRICITY_METER and not d.submeter_of]
        )
        pv = _sum_series(series, [d.id for d in devices if d.kind == DeviceKind.PV_INVERTER])
        ev = _sum_series(series, [d.id for d in devices if d.kind == DeviceKind.EV_CHARGER])
        ts = sorted(set(grid) | set(pv) | set(ev))
        return Chart(ts, [grid.get(t) for t in ts], [pv.get(t) for t in ts], [ev.get(t) for t in ts])

    def _unavailable(self, district: DistrictEntry, now: int, problem: str) -> DistrictView:
        devices = self._devices(district.id)
        views = {d.id: self._device_view(d, None, SeqAccount(), now) for d in devices}
        return DistrictView(
            district.id,
            district.name or district.id,
            district.timezone,
            local_midnight_ms(now, district.timezone),
            Figures(),
            None,
            None,
            (),
            views,
            (),
            Quality(self.quality_window_s, SeqAccount(), 0, {}),
            Chart(),
            problem=f"InfluxDB unavailable: {problem}",
        )


def _completeness_window(config: DashboardConfig) -> int:
    windows = [r.window_s for r in config.alerts.rule if r.kind == "completeness_below"]
    return windows[0] if windows else 3600


def _heartbeats(config: DashboardConfig) -> float:
    found = [r.heartbeats for r in config.alerts.rule if r.kind == "gateway_offline"]
    return found[0] if found else 3.0

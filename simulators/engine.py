"""The simulation engine: device models -> readings -> faults -> batches in delivery order, with the truth.

    for each hour of the run (a chunk):
        weather at every group's sample times
        EV sessions, PV, then electricity (the building's common meter carries its EVs and PV), heat, indoor,
        weather stations; energy per local day into the truth
        readings -> reading faults -> one batch per device per publish interval (split where an unsynced
        clock starts or ends: the batch's `"clock": "unsynced"` flag covers all its readings) -> message faults
        -> a delivery heap, with each gateway's statuses (online, heartbeats, offline during an outage);
        everything due by the end of the chunk is yielded in delivery order
    after the last chunk: what is still held, then every gateway's offline ("shutdown") status

Memory is bounded by one chunk plus the batches a fault holds back (late, out of order, spooled during an
outage). The output is a pure function of (registry, config): the same seed gives byte-identical messages.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np

from devices import KINDS, Device, DeviceKind, Reason, Registry, encode_batch, units_for
from simulators.config import Cadence, SimConfig
from simulators.faults import FaultPlan, MessageFault, Target, malform
from simulators.models import (
    Chunk,
    Coupling,
    ElectricityModel,
    EvModel,
    GroupOutput,
    HeatMeter,
    HeatModel,
    IndoorModel,
    Meter,
    PvModel,
    PvSystem,
    WeatherStationModel,
    Zone,
    pv_power_w,
)
from simulators.models.electricity import ELECTRIC_HEATING_UA_W_K, INTENSITY_KWH_M2A
from simulators.models.profiles import use_of
from simulators.rng import stable_hash, stream
from simulators.status import REASON_CONNECTION_LOST, REASON_SHUTDOWN, StatusEvent
from simulators.truth import DeviceTruth, Truth, Values
from simulators.weather import Weather

CHUNK_MS = 3_600_000
#: Decimal places sent per metric: registers to 0.1 Wh, powers to 0.1 W, temperatures to 0.01 K.
DECIMALS = {
    "energy_import": 4,
    "energy_export": 4,
    "energy": 4,
    "energy_production": 4,
    "session_energy": 4,
    "power": 1,
    "voltage": 1,
    "flow_temperature": 2,
    "return_temperature": 2,
    "temperature": 2,
    "relative_humidity": 1,
    "co2": 0,
    "occupancy": 0,
    "outdoor_temperature": 2,
}
ROOM_M2 = {"residential": 75.0, "commercial": 120.0, "education": 70.0}


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message: a device's batch. `deliver_ms` is the simulated time the gateway publishes it."""

    topic: str
    payload: bytes
    device: str
    readings: int
    deliver_ms: int = 0
    gateway: str = ""


@dataclass(frozen=True, slots=True)
class GatewayEvent:
    """A gateway goes offline (`online=False`) or comes back; a publisher may drop its connection."""

    gateway: str
    online: bool
    at_ms: int


@dataclass(frozen=True, slots=True)
class _StatusDue:
    """A status to publish; its figures (published counts, spool) are taken when it is delivered."""

    gateway: str
    state: str
    reason: str | None = None
    outage: _Outage | None = None  # coming back from this outage: report what the spool held


class _Model(Protocol):
    def sample(self, chunk: Chunk) -> GroupOutput: ...


@dataclass(slots=True)
class _Group:
    kind: DeviceKind
    devices: list[Device]
    cadence: Cadence
    first_ms: list[int]
    model: Any = None


@dataclass(slots=True)
class _Pending:
    message: Message
    device: str
    first_seq: int
    timestamps: list[int]
    stored: int
    quarantined: dict[str, int]
    points: list[tuple[int, Values]] | None
    copy_of: _Pending | None = None
    lost: bool = False
    #: Sent with `"clock": "unsynced"`: the timestamps ingest should store flagged (`clock_unsynced=true`).
    unsynced: list[int] | None = None


@dataclass(slots=True)
class _Outage:
    gateway: str
    start_ms: int
    end_ms: int
    held: deque[_Pending] = field(default_factory=deque)
    lost: int = 0


def local_midnight_ms(day: date, tz: ZoneInfo) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() * 1000)


class Simulation:
    """A run over one district of a registry. Iterate `stream()` (or `messages()`) exactly once."""

    def __init__(self, registry: Registry, config: SimConfig, *, district: str | None = None) -> None:
        self.registry = registry
        self.config = config
        entry = registry.districts[district] if district else next(iter(registry.districts.values()))
        self.district = entry
        self.tz = ZoneInfo(entry.timezone)
        self.days = [config.start + timedelta(days=i) for i in range(config.days)]
        self.midnights = [local_midnight_ms(d, self.tz) for d in [*self.days, self.days[-1] + timedelta(days=1)]]
        self.start_ms, self.end_ms = self.midnights[0], self.midnights[-1]
        self.devices = sorted((d for d in registry if d.district == entry.id), key=lambda d: d.id)
        self.weather = Weather(config.climate, config.seed, self.start_ms)
        self.truth = Truth(points={} if config.truth_points else None)
        self._seq: dict[str, int] = {}
        self._stagger: dict[str, int] = {}
        self._counter = itertools.count()
        self._heap: list[tuple[int, int, _Pending | GatewayEvent | _StatusDue]] = []
        self._units = {kind: units_for(kind) for kind in DeviceKind}
        self._metric_order = {kind: tuple(KINDS[kind].metrics) for kind in DeviceKind}
        self._building_pv: dict[str, list[PvSystem]] = {}
        self._building_chargers: dict[str, list[int]] = {}
        self._nominal_kw: dict[str, float] = {}
        self._groups = self._build_groups()
        targets = [
            Target(
                d,
                g.cadence.resolution_s * 1000,
                g.cadence.publish_interval_s * 1000,
                first,
                self._nominal_kw.get(d.id, 0),
            )
            for g in self._groups.values()
            for d, first in zip(g.devices, g.first_ms, strict=True)
        ]
        gateways = sorted({d.gateway for d in self.devices})
        self.gateways = gateways
        self._heartbeat_ms = 1000 * (config.heartbeat_s or config.cadence.publish_interval_s)
        self._published: dict[str, list[int]] = {g: [0, 0] for g in gateways}  # gateway -> [messages, readings]
        self._evicted: dict[str, int] = dict.fromkeys(gateways, 0)
        self.plan = FaultPlan(
            config.faults,
            targets,
            gateways,
            start_ms=self.start_ms,
            end_ms=self.end_ms,
            rng=stream(config.seed, "faults"),
        )
        self.truth.faults = self.plan.faults
        self._outages = [_Outage(o.gateway, o.start_ms, o.end_ms) for o in self.plan.outages]
        for g in gateways:
            self._push(self.start_ms, _StatusDue(g, "online"))
        for o in self._outages:
            # The offline status goes out before the connection closes (a real gateway's Last Will says the
            # same when the broker notices); the online one reconnects, reporting what the spool held.
            self._push(o.start_ms, _StatusDue(o.gateway, "offline", REASON_CONNECTION_LOST))
            self._push(o.start_ms, GatewayEvent(o.gateway, False, o.start_ms))
            self._push(o.end_ms, GatewayEvent(o.gateway, True, o.end_ms))
            self._push(o.end_ms, _StatusDue(o.gateway, "online", outage=o))
        self._init_truth()

    # -- set-up -------------------------------------------------------------------------------------------
    def _day_index(self, day: date) -> int:
        return (day - self.config.start).days

    def _build_groups(self) -> dict[DeviceKind, _Group]:
        cfg, seed = self.config, self.config.seed
        by_kind: dict[DeviceKind, list[Device]] = {}
        for d in self.devices:
            by_kind.setdefault(d.kind, []).append(d)
        groups: dict[DeviceKind, _Group] = {}
        params = stream(seed, "parameters")
        registers = stream(seed, "registers")
        start_of = {d.id: max(d.commissioned_ms, self.start_ms) for d in self.devices}

        pv_devices = by_kind.get(DeviceKind.PV_INVERTER, [])
        systems: list[PvSystem] = []
        for d in pv_devices:
            kwp = cfg.pv_kwp.get(d.id) or (0.6 * d.max_power_w / 1000 if d.max_power_w else 30.0)
            azimuth = 180.0 + float(params.uniform(-30, 30))
            systems.append(PvSystem(d.id, d.building, kwp, 35.0, azimuth))
        extra: list[PvSystem] = []
        for iv in cfg.interventions:
            if iv.kind != "pv":
                continue
            day = self._day_index(iv.start)
            if iv.device is not None:
                i = next((k for k, s in enumerate(systems) if s.name == iv.device), None)
                if i is None:
                    raise ValueError(f"pv intervention: {iv.device!r} is not a pv_inverter of the district")
                systems[i] = PvSystem(iv.device, iv.building, iv.kwp, iv.tilt_deg, iv.azimuth_deg, day, True)
                start_of[iv.device] = max(start_of[iv.device], local_midnight_ms(iv.start, self.tz))
            else:
                extra.append(
                    PvSystem(f"{iv.building}-pv-retrofit", iv.building, iv.kwp, iv.tilt_deg, iv.azimuth_deg, day, True)
                )
        for s in [*systems, *extra]:
            self._building_pv.setdefault(s.building, []).append(s)
        if pv_devices:
            regs = registers.uniform(100, 50_000, len(pv_devices))
            groups[DeviceKind.PV_INVERTER] = _Group(
                DeviceKind.PV_INVERTER, pv_devices, cfg.cadence_of(DeviceKind.PV_INVERTER), [], PvModel(systems, regs)
            )

        chargers = by_kind.get(DeviceKind.EV_CHARGER, [])
        if chargers:
            specs = []
            for row, d in enumerate(chargers):
                use = use_of(self.registry.building_of(d.id).use)
                specs.append((d.id, d.building, "residential" if use == "residential" else "workplace", d.max_power_w))
                self._building_chargers.setdefault(d.building, []).append(row)
            model = EvModel(
                specs, tz=self.tz, start_ms=self.start_ms, rngs=[stream(seed, "ev", d.id) for d in chargers]
            )
            groups[DeviceKind.EV_CHARGER] = _Group(
                DeviceKind.EV_CHARGER, chargers, cfg.cadence_of(DeviceKind.EV_CHARGER), [], model
            )

        meters = by_kind.get(DeviceKind.ELECTRICITY_METER, [])
        if meters:
            groups[DeviceKind.ELECTRICITY_METER] = self._electricity_group(meters, params, registers)

        heat = by_kind.get(DeviceKind.HEAT_METER, [])
        if heat:
            per_building = {b: sum(1 for h in heat if h.building == b) for b in {h.building for h in heat}}
            hms = []
            for d in heat:
                b = self.registry.building_of(d.id)
                hm = HeatMeter(
                    d.id, d.building, b.use, b.floor_area_m2 / per_building[d.building], float(params.lognormal(0, 0.1))
                )
                for iv in cfg.interventions:
                    if iv.kind == "heating" and iv.building == d.building:
                        hm.retrofit_from_day, hm.retrofit_factor = self._day_index(iv.start), iv.factor
                self._nominal_kw[d.id] = (
                    hm.ua_w_k * max(1.0, hm.balance_c - cfg.climate.mean_temp_c) + hm.hot_water_w
                ) / 1000
                hms.append(hm)
            regs = registers.uniform(1_000, 90_000, len(heat))
            groups[DeviceKind.HEAT_METER] = _Group(
                DeviceKind.HEAT_METER,
                heat,
                cfg.cadence_of(DeviceKind.HEAT_METER),
                [],
                HeatModel(hms, stream(seed, "heat"), regs),
            )

        sensors = by_kind.get(DeviceKind.BUILDING_SENSOR, [])
        if sensors:
            zones = []
            for d in sensors:
                b = self.registry.building_of(d.id)
                zones.append(Zone(d.id, d.building, b.use, ROOM_M2[use_of(b.use)]))
            groups[DeviceKind.BUILDING_SENSOR] = _Group(
                DeviceKind.BUILDING_SENSOR,
                sensors,
                cfg.cadence_of(DeviceKind.BUILDING_SENSOR),
                [],
                IndoorModel(zones, stream(seed, "indoor")),
            )
        stations = by_kind.get(DeviceKind.WEATHER_STATION, [])
        if stations:
            groups[DeviceKind.WEATHER_STATION] = _Group(
                DeviceKind.WEATHER_STATION,
                stations,
                cfg.cadence_of(DeviceKind.WEATHER_STATION),
                [],
                WeatherStationModel(len(stations), stream(seed, "weather-station")),
            )
        for g in groups.values():
            g.first_ms = [start_of[d.id] for d in g.devices]
        return groups

    def _electricity_group(
        self, meters: list[Device], params: np.random.Generator, registers: np.random.Generator
    ) -> _Group:
        cfg = self.config
        rows = {d.id: i for i, d in enumerate(meters)}
        by_building: dict[str, list[Device]] = {}
        for d in meters:
            by_building.setdefault(d.building, []).append(d)
        models: list[Meter | None] = [None] * len(meters)
        for building_id, devs in sorted(by_building.items()):
            b = self.registry.buildings[building_id][1]
            mains = [d for d in devs if d.submeter_of is None]
            eff = next(
                (iv for iv in cfg.interventions if iv.kind == "electricity" and iv.building == building_id), None
            )
            eff_day, eff_factor = (self._day_index(eff.start), eff.factor) if eff else (10**9, 1.0)
            for j, d in enumerate(mains):
                area = b.floor_area_m2 / len(mains)
                household = len(mains) > 1
                scale = float(params.lognormal(0, 0.3)) if household else 1.0
                heating = (
                    ELECTRIC_HEATING_UA_W_K
                    if household and use_of(b.use) == "residential" and params.random() < cfg.electric_heating_share
                    else 0.0
                )
                sigma = float(np.clip(0.45 * math.sqrt(70.0 / area), 0.05, 0.5))
                models[rows[d.id]] = Meter(
                    d.id,
                    building_id,
                    b.use,
                    area,
                    sigma,
                    scale,
                    heating_ua_w_k=heating,
                    common=j == 0,
                    efficiency_from_day=eff_day,
                    efficiency_factor=eff_factor,
                )
                self._nominal_kw[d.id] = area * INTENSITY_KWH_M2A[use_of(b.use)] / 8766 * scale
            subs = [d for d in devs if d.submeter_of is not None]
            for d in subs:
                assert d.submeter_of is not None
                parent = rows[d.submeter_of]
                share = float(params.uniform(0.08, 0.2))
                pm = models[parent]
                assert pm is not None
                models[rows[d.id]] = Meter(
                    d.id,
                    building_id,
                    b.use,
                    pm.area_m2,
                    0.15,
                    pm.scale,
                    parent=parent,
                    share=share,
                    efficiency_from_day=eff_day,
                    efficiency_factor=eff_factor,
                )
                self._nominal_kw[d.id] = self._nominal_kw.get(d.submeter_of, 0.0) * share
        final = [m for m in models if m is not None]
        imports = registers.uniform(1_000, 90_000, len(meters))
        exports = np.array(
            [registers.uniform(0, 5_000) if m.common and m.building in self._building_pv else 0.0 for m in final]
        )
        model = ElectricityModel(final, stream(cfg.seed, "electricity"), imports, exports)
        return _Group(DeviceKind.ELECTRICITY_METER, meters, cfg.cadence_of(DeviceKind.ELECTRICITY_METER), [], model)

    def _init_truth(self) -> None:
        t = self.truth
        t.meta = {
            "district": self.district.id,
            "timezone": self.district.timezone,
            "start": self.days[0].isoformat(),
            "days": len(self.days),
            "day": self.days[0].isoformat(),
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "seed": self.config.seed,
            "climate": {"latitude": self.config.climate.latitude, "longitude": self.config.climate.longitude},
            "cadence": {
                k.value: {"resolution_s": g.cadence.resolution_s, "publish_interval_s": g.cadence.publish_interval_s}
                for k, g in self._groups.items()
            },
        }
        for g in self._groups.values():
            for d in g.devices:
                t.devices[d.id] = DeviceTruth(d.kind.value, d.building, d.gateway)
        for iv in self.config.interventions:
            t.interventions.append(
                {"building": iv.building, "start": iv.start.isoformat(), "kind": iv.kind, "factor": iv.factor}
                | ({"kwp": iv.kwp, "device": iv.device} if iv.kind == "pv" else {})
            )

    # -- time -----------------------------------------------------------------------------------------------
    def _chunk(self, group: _Group, c0: int, c1: int) -> Chunk:
        res = group.cadence.resolution_s * 1000
        t = np.arange(c0, c1, res, dtype=np.int64)
        off0 = self._offset_ms(c0)
        if off0 == self._offset_ms(c1 - 1):
            local = t + off0
        else:  # a DST change inside the chunk (only for zones with sub-hour offsets)
            local = np.array([x + self._offset_ms(int(x)) for x in t], dtype=np.int64)
        hour = (local % 86_400_000) / 3_600_000
        weekday = ((local // 86_400_000) + 3) % 7  # 1970-01-01 was a Thursday
        day = np.searchsorted(np.array(self.midnights), t, side="right") - 1
        return Chunk(
            t,
            group.cadence.resolution_s,
            hour.astype(np.float64),
            weekday.astype(np.int64),
            day.astype(np.int64),
            self.weather.at(t),
        )

    def _offset_ms(self, t_ms: int) -> int:
        offset = datetime.fromtimestamp(t_ms / 1000, UTC).astimezone(self.tz).utcoffset()
        return int(offset.total_seconds() * 1000) if offset is not None else 0

    # -- the run --------------------------------------------------------------------------------------------
    def stream(self) -> Iterator[Message | GatewayEvent | StatusEvent]:
        """Every message, gateway outage event and gateway status of the run, in delivery order.

        Each gateway says online at the start, sends a heartbeat every `SimConfig.heartbeat_s` of simulated
        time while it is up (none while offline or rebooting), says offline during an outage and, after
        everything has been delivered, offline ("shutdown") at the end of the run.
        """
        for c0 in range(self.start_ms, self.end_ms, CHUNK_MS):
            c1 = min(c0 + CHUNK_MS, self.end_ms)
            self._run_chunk(c0, c1)
            self._push_heartbeats(c0, c1)
            yield from self._deliver(until_ms=c1)
        yield from self._deliver(until_ms=None)
        at = max(self.end_ms, *(o.end_ms for o in self._outages)) if self._outages else self.end_ms
        for g in self.gateways:
            yield self._status(_StatusDue(g, "offline", REASON_SHUTDOWN), at)
        self._finish_truth()

    def _push_heartbeats(self, c0: int, c1: int) -> None:
        """Heartbeats due in [c0, c1): pushed after the chunk's batches, so a heartbeat at the same simulated
        time as a batch comes after it (its published counts include it)."""
        step = self._heartbeat_ms
        first = self.start_ms + max(1, -(-(c0 - self.start_ms) // step)) * step
        for t in range(first, c1, step):
            for g in self.gateways:
                if any(o.gateway == g and o.start_ms <= t <= o.end_ms for o in self._outages):
                    continue  # offline, or the reconnection status says it
                clock = self.plan.clock_for(g, t)
                if clock is not None and clock.mode == "down":
                    continue  # rebooting
                self._push(t, _StatusDue(g, "online"))

    def _status(self, due: _StatusDue, at_ms: int) -> StatusEvent:
        messages, readings = self._published[due.gateway]
        clock = self.plan.clock_for(due.gateway, at_ms)
        held = [p for p in due.outage.held if not p.lost] if due.outage is not None else []
        stamps = [min(p.timestamps) for p in held if p.timestamps]
        return StatusEvent(
            due.gateway,
            self.district.id,
            at_ms,
            due.state,
            due.reason,
            spool_readings=sum(p.message.readings for p in held),
            oldest_ms=min(stamps) if stamps else None,
            evicted=self._evicted[due.gateway],
            published_messages=messages,
            published_readings=readings,
            clock_synced=clock is None or clock.mode in ("skew", "down"),
            started_ms=self.start_ms,
        )

    def messages(self) -> Iterator[Message]:
        for item in self.stream():
            if isinstance(item, Message):
                yield item

    def _run_chunk(self, c0: int, c1: int) -> None:
        outputs: dict[DeviceKind, tuple[Chunk, GroupOutput]] = {}
        ev = self._groups.get(DeviceKind.EV_CHARGER)
        for kind in (
            DeviceKind.EV_CHARGER,
            DeviceKind.PV_INVERTER,
            DeviceKind.HEAT_METER,
            DeviceKind.BUILDING_SENSOR,
            DeviceKind.WEATHER_STATION,
        ):
            g = self._groups.get(kind)
            if g is not None:
                chunk = self._chunk(g, c0, c1)
                outputs[kind] = (chunk, g.model.sample(chunk))
        em = self._groups.get(DeviceKind.ELECTRICITY_METER)
        if em is not None:
            chunk = self._chunk(em, c0, c1)
            couplings: dict[str, Coupling] = {}
            for building in {m.building for m in em.model.meters if m.common}:
                rows = self._building_chargers.get(building, [])
                ev_kwh = (
                    ev.model.energy_kwh(rows, chunk.t_ms, chunk.dt_s) if ev is not None and rows else np.zeros(chunk.n)
                )
                systems = self._building_pv.get(building, [])
                if systems:
                    power = pv_power_w(systems, chunk.weather, chunk.day)
                    pv = power.sum(axis=0)
                    keep = [i for i, s in enumerate(systems) if not s.intervention]
                    pv_cf = pv if len(keep) == len(systems) else power[keep].sum(axis=0)
                else:
                    pv = pv_cf = np.zeros(chunk.n)
                couplings[building] = Coupling(ev_kwh, pv, pv_cf)
            outputs[DeviceKind.ELECTRICITY_METER] = (chunk, em.model.sample(chunk, couplings))
        if ev is not None:
            for device, session in ev.model.new_sessions:
                self.truth.devices[device].sessions.append(session.as_dict())
            ev.model.new_sessions.clear()
            ev.model.advance(c1)
        self._weather_truth(c0, c1)
        for kind, (chunk, out) in outputs.items():
            g = self._groups[kind]
            self._energy_truth(g, chunk, out)
            self._emit(g, chunk, out)

    def _energy_truth(self, g: _Group, chunk: Chunk, out: GroupOutput) -> None:
        days = np.unique(chunk.day)
        cf_rows = set(out.counterfactual_rows)
        for metric, energy in out.energy.items():
            cf = out.counterfactual.get(metric)
            for d in days:
                mask = chunk.day == d
                iso = self.days[int(d)].isoformat()
                totals = energy[:, mask].sum(axis=1)
                cf_totals = cf[:, mask].sum(axis=1) if cf is not None else None
                for row, device in enumerate(g.devices):
                    dt = self.truth.devices[device.id]
                    per_day = dt.energy.setdefault(metric, {})
                    per_day[iso] = per_day.get(iso, 0.0) + float(totals[row])
                    if cf_totals is not None and row in cf_rows:
                        cf_day = dt.counterfactual.setdefault(metric, {})
                        cf_day[iso] = cf_day.get(iso, 0.0) + float(cf_totals[row])

    def _weather_truth(self, c0: int, c1: int) -> None:
        t = np.arange(c0, c1, 300_000, dtype=np.int64)
        w = self.weather.at(t)
        day = np.searchsorted(np.array(self.midnights), t, side="right") - 1
        for d in np.unique(day):
            mask = day == d
            doc = self.truth.weather.setdefault(
                self.days[int(d)].isoformat(),
                {"_n": 0.0, "_t": 0.0, "ghi_kwh_m2": 0.0, "clear_sky_ghi_kwh_m2": 0.0, "_cloud": 0.0},
            )
            doc["_n"] += float(mask.sum())
            doc["_t"] += float(w.temperature_c[mask].sum())
            doc["_cloud"] += float(w.cloud_cover[mask].sum())
            doc["ghi_kwh_m2"] += float(w.ghi_w_m2[mask].sum()) * 300 / 3.6e6
            doc["clear_sky_ghi_kwh_m2"] += float(w.ghi_clear_w_m2[mask].sum()) * 300 / 3.6e6

    def _emit(self, g: _Group, chunk: Chunk, out: GroupOutput) -> None:
        kind = g.kind
        order = self._metric_order[kind]
        rounded = {m: np.round(a, DECIMALS[m]) for m, a in out.values.items()}
        publish_ms = g.cadence.publish_interval_s * 1000
        t = chunk.t_ms.tolist()
        spec = KINDS[kind].metrics
        plan = self.plan
        t0 = t[0]
        for row, device in enumerate(g.devices):
            first = g.first_ms[row]
            if t[-1] < first:
                continue
            columns: dict[str, list[Any]] = {m: rounded[m][row].tolist() for m in rounded}
            columns |= {m: s[row] for m, s in out.strings.items()}
            cols = [(m, columns[m]) for m in order if m in columns]
            faulty_registers = device.id in plan.registers
            clock = plan.clock.get(device.gateway)
            # Runs of consecutive readings of one publish interval and one clock state: a batch's `clock` flag
            # covers all its readings, so a gateway whose clock syncs mid-interval sends two batches.
            batches: list[tuple[int, bool, list[tuple[int, Values]]]] = []
            for k, ts in enumerate(t):
                if ts < first:
                    continue
                values: Values = {m: col[k] for m, col in cols}
                if faulty_registers and not plan.apply_register(device.id, ts, values):
                    continue
                sent_ts = ts
                unsynced = False
                if clock is not None:
                    fault = plan.clock_for(device.gateway, ts)
                    if fault is not None:
                        if fault.mode == "down":
                            continue
                        sent_ts = ts + fault.offset_ms
                        # A skewed clock believes it is synchronised; one that never synced since boot knows not.
                        unsynced = fault.mode in ("epoch", "stale")
                plan.apply_value(device.id, ts, values)
                index = (ts - t0) // publish_ms
                if batches and batches[-1][0] == index and batches[-1][1] == unsynced:
                    batches[-1][2].append((sent_ts, values))
                else:
                    batches.append((index, unsynced, [(sent_ts, values)]))
            check = device.id in plan.value_devices
            for index, unsynced, readings in batches:
                self._batch(
                    device, t0 + index * publish_ms, publish_ms, readings, spec if check else None, unsynced=unsynced
                )

    def _batch(
        self,
        device: Device,
        interval_start: int,
        publish_ms: int,
        readings: list[tuple[int, Values]],
        spec: Any,
        *,
        unsynced: bool = False,
    ) -> None:
        first_seq = self._seq.get(device.id, 0)
        self._seq[device.id] = first_seq + len(readings)
        payload = encode_batch(device.id, first_seq, self._units[device.kind], readings, clock_unsynced=unsynced)
        deliver = interval_start + publish_ms
        if self.config.stagger:
            stagger = self._stagger.get(device.id)
            if stagger is None:
                stagger = self._stagger[device.id] = stable_hash(str(self.config.seed), device.id) % max(
                    1, publish_ms // 2
                )
            deliver += stagger
        stored = 0
        quarantined: dict[str, int] = {}
        flagged: list[int] | None = [] if unsynced else None
        points: list[tuple[int, Values]] | None = [] if self.truth.points is not None else None
        for ts, values in readings:
            # Clean readings are valid by construction (tests check it); only a device with planned value
            # faults needs its readings checked the way ingest will.
            reason = _expected_reason(values, spec) if spec is not None else None
            if reason is None and ts < device.commissioned_ms:
                reason = Reason.BEFORE_COMMISSIONING.value
            if reason is None:
                stored += 1
                if points is not None:
                    points.append((ts, values))
                if flagged is not None:
                    flagged.append(ts)
            else:
                quarantined[reason] = quarantined.get(reason, 0) + 1
                if reason in (Reason.NON_FINITE.value, Reason.OUT_OF_RANGE.value):
                    self.truth.bad_readings += 1
        faults = self.plan.message_faults.get((device.id, interval_start), [])
        for f in faults:
            if f.kind == "malformed":
                payload, reason_enum, per_reading = malform(payload, f.variant)
                stored, points = 0, ([] if points is not None else None)
                flagged = [] if flagged is not None else None
                quarantined = {reason_enum.value: len(readings) if per_reading else 1}
                self._record_message_fault(device, interval_start, f, deliver, reason_enum.value)
        delay = sum(f.delay_ms for f in faults if f.kind in ("out_of_order", "late"))
        for f in faults:
            if f.kind in ("out_of_order", "late"):
                self._record_message_fault(device, interval_start, f, deliver + delay)
        message = Message(device.topic, payload, device.id, len(readings), deliver + delay, device.gateway)
        pending = _Pending(
            message, device.id, first_seq, [ts for ts, _ in readings], stored, quarantined, points, unsynced=flagged
        )
        self._hold_or_push(pending)
        for f in faults:
            if f.kind == "duplicate":
                copy_deliver = deliver + delay + f.delay_ms
                self._record_message_fault(device, interval_start, f, copy_deliver)
                dup = Message(message.topic, message.payload, device.id, len(readings), copy_deliver, device.gateway)
                self._hold_or_push(_Pending(dup, device.id, first_seq, [], 0, {}, None, copy_of=pending))

    def _record_message_fault(
        self, device: Device, interval_start: int, f: MessageFault, deliver: int, reason: str | None = None
    ) -> None:
        record: dict[str, Any] = {
            "fault": f.kind,
            "device": device.id,
            "interval_start_ms": interval_start,
            "delivered_ms": deliver,
        }
        if f.kind == "malformed":
            record |= {"variant": f.variant, "expected_reason": reason}
        if f.kind in ("late", "out_of_order"):
            record["delay_ms"] = f.delay_ms
        self.truth.faults.append(record)

    def _push(self, at_ms: int, item: _Pending | GatewayEvent | _StatusDue) -> None:
        heapq.heappush(self._heap, (at_ms, next(self._counter), item))

    def _hold_or_push(self, p: _Pending) -> None:
        at = p.message.deliver_ms
        for o in self._outages:
            if o.gateway == p.message.gateway and o.start_ms <= at < o.end_ms:
                o.held.append(p)
                if len(o.held) > self.config.faults.spool_capacity:
                    dropped = o.held.popleft()
                    dropped.lost = True
                    o.lost += 1
                    self._evicted[o.gateway] += dropped.message.readings
                p.message = _redeliver(p.message, o.end_ms)
                at = o.end_ms
                break
        self._push(at, p)

    def _deliver(self, until_ms: int | None) -> Iterator[Message | GatewayEvent | StatusEvent]:
        heap = self._heap
        while heap and (until_ms is None or heap[0][0] <= until_ms):
            at, _, item = heapq.heappop(heap)
            if isinstance(item, GatewayEvent):
                yield item
                continue
            if isinstance(item, _StatusDue):
                yield self._status(item, at)
                continue
            if item.lost or (item.copy_of is not None and item.copy_of.lost):
                if item.copy_of is None:
                    self._account_lost(item)
                continue
            self._account(item)
            yield item.message

    def _account(self, p: _Pending) -> None:
        t = self.truth
        n = p.message.readings
        t.published_messages += 1
        t.published_readings += n
        published = self._published[p.message.gateway]
        published[0] += 1
        published[1] += n
        if p.copy_of is not None:
            return
        dt = t.devices[p.device]
        t.messages += 1
        t.readings += n
        dt.messages += 1
        dt.readings_sent += n
        if p.timestamps:
            lo, hi = min(p.timestamps), max(p.timestamps)
            dt.first_ts = lo if dt.first_ts is None else min(dt.first_ts, lo)
            dt.last_ts = hi if dt.last_ts is None else max(dt.last_ts, hi)
        dt.seq = [p.first_seq if dt.seq[0] < 0 else min(dt.seq[0], p.first_seq), max(dt.seq[1], p.first_seq + n - 1)]
        dt.expected_stored += p.stored
        t.expected_stored += p.stored
        for reason, count in p.quarantined.items():
            dt.expected_quarantined[reason] += count
            t.expected_quarantined[reason] += count
        if p.points is not None:
            for ts, values in p.points:
                t.add_point(p.device, ts, values)
        if p.unsynced is not None:
            dt.clock_unsynced_sent += n
            dt.clock_unsynced_stored.extend(p.unsynced)
            t.clock_unsynced_sent += n
            t.clock_unsynced_stored += len(p.unsynced)

    def _account_lost(self, p: _Pending) -> None:
        self.truth.lost_readings += p.message.readings
        self.truth.devices[p.device].lost_readings += p.message.readings
        self.truth.faults.append(
            {
                "fault": "spool_overflow",
                "device": p.device,
                "readings": p.message.readings,
                "seq": [p.first_seq, p.first_seq + p.message.readings - 1],
            }
        )

    def _finish_truth(self) -> None:
        for doc in self.truth.weather.values():
            if "_n" in doc:
                n = doc.pop("_n")
                mean = doc.pop("_t") / n
                doc["mean_temperature_c"] = mean
                doc["heating_degree_days_17"] = max(0.0, 17.0 - mean)
                doc["mean_cloud_cover"] = doc.pop("_cloud") / n
        for device, dt in self.truth.devices.items():
            if dt.kind == DeviceKind.ELECTRICITY_METER.value:
                self.truth.energy_import_kwh[device] = sum(dt.energy.get("energy_import", {}).values())
        for o in self._outages:
            for f in self.truth.faults:
                if f["fault"] == "disconnect" and f["gateway"] == o.gateway and f["start_ms"] == o.start_ms:
                    f["messages_held"] = len(o.held) + o.lost
                    f["messages_lost"] = o.lost


def _redeliver(m: Message, at_ms: int) -> Message:
    return Message(m.topic, m.payload, m.device, m.readings, at_ms, m.gateway)


def _expected_reason(values: Values, spec: Any) -> str | None:
    """What ingest's validation says about one reading's values (the first bad metric decides)."""
    for name, value in values.items():
        m = spec[name]
        if isinstance(value, float | int):
            if math.isnan(value) or math.isinf(value):
                return Reason.NON_FINITE.value
            if not m.min <= value <= m.max:
                return Reason.OUT_OF_RANGE.value
    return None

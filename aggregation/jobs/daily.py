"""`districtpulse aggregate`: raw readings in InfluxDB -> daily KPI series, recomputed when late data arrives.

Each cycle looks at the last `--days` local days of every district (the allowed lateness). For each day it
asks InfluxDB how many readings it holds per building (one cheap count query); a day is recomputed only when
that count (or the count of its `unstored` points: quarantined runs, eviction notices) differs from the one
its KPIs were computed from, so late or backfilled readings revise exactly
the days they fall in. Results go to two measurements (InfluxQL-readable on 1.x and on 2.x's v1 API):

    kpi_energy,district=..,building=..,carrier=electricity|electricity_export|heat|pv|ev
        energy_kwh, readings, coverage, status="provisional"|"final", revision, computed_at   (time = local midnight)
    kpi_district,district=..
        electricity_import_kwh, electricity_export_kwh, heat_kwh, pv_kwh, ev_kwh, final_energy_kwh,
        self_consumption, self_sufficiency, co2_kg, co2_factor_g_per_kwh, completeness, readings,
        readings_issued, readings_quarantined, readings_evicted, readings_lost, unstored_points,
        status, revision, computed_at

`completeness` is stored / issued readings of the day, counted from the gateways' sequence numbers
(`aggregation.completeness`, `aggregation.jobs.accounts`): `readings_issued` = stored (`readings`) +
quarantined + evicted at the edge + lost in transit. It assumes no reporting interval: a device that was
switched off issued nothing; one whose readings are still spooled at the edge counts once they arrive (the
day is recomputed then).

A day is `final` once its end is older than `--final-after-hours`; before that it is `provisional` and may
be revised (revision + 1 whenever its readings change). Energy comes from the cumulative registers through
`aggregation.interval_energy` (resets, rollovers and glitches handled); an interval counts in the day its
reading closes, and each day's query starts `LOOKBACK` earlier so the first interval after midnight is kept.
`coverage` is the share of the day's length spanned by valid intervals (1.0 for a complete day at any
reading cadence), averaged over a building's meters of the carrier.

Districts with a building `retrofit` date (devices.registry) get two more steps per cycle: days of the
savings' baseline and reporting periods that are older than the lateness window and have no KPIs yet are
backfilled once (`backfill`: a month of days per query, a progress bar on a terminal), then
`aggregation.jobs.savings` writes metered savings and CO2 avoided to date (kpi_savings_building,
kpi_savings, kpi_co2) where the daily KPIs they depend on changed.

Known limit: a correction that overwrites existing points with new values (same count) is not detected;
re-run with `--recompute` for that. Late data older than the lateness window is not seen either (a backfill
fills only days without KPIs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from aggregation import interval_energy
from aggregation.co2 import load_factors
from aggregation.completeness import SeqAccount, total
from aggregation.energy import interval_starts
from aggregation.jobs import savings as savings_job
from aggregation.jobs.accounts import seq_accounts
from aggregation.jobs.revisions import Stored, next_revision, unchanged
from devices import Registry
from devices.carriers import CARRIERS
from devices.progress import ProgressBar
from devices.registry import DistrictEntry
from storage import queries
from storage.influx import InfluxV1
from storage.lineprotocol import FieldValue, point

log = logging.getLogger("aggregate")

LOOKBACK_MS = 6 * 3_600_000  # how far before midnight to look for the reading that opens the first interval
LOOKAHEAD_MS = 3_600_000  # readings after midnight that let the kernel tell a glitch from a reset
#: How far back to look for the last register above 0 (a meter that reads 0 through a long reboot comes back
#: to continue it: `aggregation.energy`'s dip rule needs that reading even when it is days before the window).
DIP_LOOKBACK_MS = 31 * 86_400_000


#: carrier -> (device kind, register field)
@dataclass(frozen=True, slots=True)
class DayWindow:
    day: date
    start_ms: int
    end_ms: int


def local_day(zone: ZoneInfo, day: date) -> DayWindow:
    start = datetime.combine(day, datetime.min.time(), zone)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone)
    return DayWindow(day, int(start.timestamp() * 1000), int(end.timestamp() * 1000))


@dataclass(slots=True)
class DayKpis:
    readings: int
    seq: SeqAccount = field(default_factory=SeqAccount)
    unstored_points: int = 0
    energy: dict[tuple[str, str], float] = field(default_factory=dict)  # (building, carrier) -> kWh
    coverage: dict[tuple[str, str], float] = field(default_factory=dict)


async def count_readings(influx: InfluxV1, district: str, window: DayWindow) -> int:
    """Readings of a district's day in InfluxDB (every raw point has the integer field `seq`)."""
    series = await queries.count_readings(influx, district, window.start_ms, window.end_ms)
    return sum(int(row[1]) for s in series for row in s["values"])


async def count_unstored(influx: InfluxV1, district: str, window: DayWindow) -> int:
    """`unstored` points of a district's day (storage.unstored): a new one changes the day's completeness."""
    series = await queries.count_unstored(influx, district, window.start_ms, window.end_ms)
    return sum(int(row[1]) for s in series for row in s["values"])


async def day_account(influx: InfluxV1, district: str, window: DayWindow) -> tuple[SeqAccount, int]:
    """The district's account of the day (summed over its devices) and its `unstored` point count."""
    found = await seq_accounts(influx, district, window.start_ms, window.end_ms)
    return total(found.values()), await count_unstored(influx, district, window)


async def count_readings_per_day(influx: InfluxV1, district: str, windows: list[DayWindow]) -> list[int]:
    """`count_readings` of consecutive days in one query: counts per bucket (1 h, or 15 min where local
    midnight is not on the hour), summed into the day each bucket starts in. Exact because every local
    midnight is a bucket boundary; a zone whose midnights are not on a 15-minute grid falls back to a query
    per day."""
    edges = [w.start_ms for w in windows] + [windows[-1].end_ms]
    bucket = next((b for b in (3_600_000, 900_000) if all(e % b == 0 for e in edges)), None)
    if bucket is None:
        return [await count_readings(influx, district, w) for w in windows]
    series = await queries.count_readings(influx, district, edges[0], edges[-1], bucket_minutes=bucket // 60_000)
    counts = [0] * len(windows)
    starts = np.array(edges[:-1], dtype=np.int64)
    for s in series:
        for t, n in s["values"]:
            counts[int(np.searchsorted(starts, t, side="right")) - 1] += int(n)
    return counts


Registers = dict[str, tuple[NDArray[np.int64], NDArray[np.float64]]]
"""device -> (timestamps, register values) in time order, for one carrier."""


async def fetch_registers(influx: InfluxV1, district: str, carrier: str, start_ms: int, end_ms: int) -> Registers:
    """The register of one carrier of every device of a district in [start_ms, end_ms), each device's series
    led by its last reading above 0 before `start_ms` (up to `DIP_LOOKBACK_MS` back) when it has one."""
    c = CARRIERS[carrier]
    series = await queries.registers(influx, c.kind, [c.register], district, start_ms, end_ms)
    before = await queries.last_positive_register_before(
        influx, c.kind, c.register, district, start_ms, DIP_LOOKBACK_MS
    )
    leading = {s["tags"]["device"]: (int(s["values"][0][0]), float(s["values"][0][1])) for s in before if s["values"]}
    out: Registers = {}
    for s in series:
        rows = [(row[0], row[1]) for row in s["values"] if row[1] is not None]
        if rows:
            lead = leading.get(s["tags"]["device"])
            rows = [lead, *rows] if lead is not None else rows
            ts = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            reg = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
            out[s["tags"]["device"]] = (ts, reg)
    return out


def day_slice(
    ts: NDArray[np.int64], reg: NDArray[np.float64], window: DayWindow
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The readings of `window` with its look-back and look-ahead, led by the last reading above 0 before the
    look-back when they start at 0 or below (a meter reading 0 since before the look-back: see
    `DIP_LOOKBACK_MS`). The same for a fetch of this day alone and for a fetch of many days (`compute_days`)."""
    lo, hi = np.searchsorted(ts, [window.start_ms - LOOKBACK_MS, window.end_ms + LOOKAHEAD_MS])
    if lo == hi or lo == 0 or reg[lo] > 0:
        return ts[lo:hi], reg[lo:hi]
    positive = np.flatnonzero(reg[:lo] > 0)
    if positive.size == 0 or ts[positive[-1]] < window.start_ms - LOOKBACK_MS - DIP_LOOKBACK_MS:
        return ts[lo:hi], reg[lo:hi]
    k = int(positive[-1])
    return np.concatenate((ts[k : k + 1], ts[lo:hi])), np.concatenate((reg[k : k + 1], reg[lo:hi]))


def day_kpis(
    registry: Registry, district: str, window: DayWindow, readings: int, fetched: dict[str, Registers]
) -> DayKpis:
    """Energy per building and carrier of one local day from registers that cover at least
    [start - LOOKBACK, end + LOOKAHEAD) (more is cut off here, so one fetch can serve many days and give
    exactly what a fetch of the day alone gives).

    Coverage is the share of the day's length spanned by the valid intervals its readings close (averaged
    over a building's meters of the carrier): 1.0 for a complete day at any reading cadence."""
    kpis = DayKpis(readings=readings)
    for building in (b for b, (d, _) in registry.buildings.items() if d.id == district):
        for carrier in CARRIERS:
            kpis.energy[(building, carrier)] = 0.0
            kpis.coverage[(building, carrier)] = 0.0
    day_ms = window.end_ms - window.start_ms
    for carrier, per_device in fetched.items():
        devices_in_carrier: dict[str, int] = {}
        for device_id, (all_ts, all_reg) in per_device.items():
            device = registry.devices.get(device_id)
            if device is None or device.submeter_of is not None:
                continue  # sub-meters are inside their main meter
            ts, reg = day_slice(all_ts, all_reg, window)
            if ts.size == 0:
                continue
            result = interval_energy(ts, reg, max_power_w=device.max_power_w, rollover=device.register_rollover_kwh)
            in_day = (ts >= window.start_ms) & (ts < window.end_ms)
            key = (device.building, carrier)
            energy = result.energy_kwh[in_day]
            kpis.energy[key] += float(np.nansum(energy))
            spans = ts[in_day] - interval_starts(ts, result.events)[in_day]
            kpis.coverage[key] += float(spans[np.isfinite(energy)].sum()) / day_ms
            devices_in_carrier[device.building] = devices_in_carrier.get(device.building, 0) + 1
        for building, n in devices_in_carrier.items():
            kpis.coverage[(building, carrier)] /= n
    return kpis


async def compute_day(influx: InfluxV1, registry: Registry, district: str, window: DayWindow) -> DayKpis:
    """Energy per building and carrier for one local day, from the registers."""
    readings = await count_readings(influx, district, window)
    start, end = window.start_ms - LOOKBACK_MS, window.end_ms + LOOKAHEAD_MS
    fetched = {c: await fetch_registers(influx, district, c, start, end) for c in CARRIERS}
    kpis = day_kpis(registry, district, window, readings, fetched)
    kpis.seq, kpis.unstored_points = await day_account(influx, district, window)
    return kpis


async def compute_days(influx: InfluxV1, registry: Registry, district: str, windows: list[DayWindow]) -> list[DayKpis]:
    """`compute_day` of consecutive days, with one count query and one register query per carrier for the
    whole run instead of six queries per day (a year of backfill then takes seconds). Keep the
    run short (`BACKFILL_CHUNK_DAYS`): the registers of the whole run are held in memory."""
    counts = await count_readings_per_day(influx, district, windows)
    start, end = windows[0].start_ms - LOOKBACK_MS, windows[-1].end_ms + LOOKAHEAD_MS
    fetched = {c: await fetch_registers(influx, district, c, start, end) for c in CARRIERS} if any(counts) else {}
    out = [day_kpis(registry, district, w, n, fetched) for w, n in zip(windows, counts, strict=True)]
    for window, kpis in zip(windows, out, strict=True):
        if kpis.readings:
            kpis.seq, kpis.unstored_points = await day_account(influx, district, window)
    return out


def district_line(
    district: DistrictEntry,
    window: DayWindow,
    kpis: DayKpis,
    *,
    status: str,
    revision: int,
    computed_at: int,
) -> str:
    def total(carrier: str) -> float:
        return sum(v for (_, c), v in kpis.energy.items() if c == carrier)

    imported, exported, heat, pv, ev = (total(c) for c in ("electricity", "electricity_export", "heat", "pv", "ev"))
    self_used = max(pv - exported, 0.0)
    self_consumption = self_used / pv if pv > 0 else float("nan")
    self_sufficiency = self_used / (imported + self_used) if imported + self_used > 0 else float("nan")
    factors = load_factors()
    grid = factors.find(carrier="electricity", zone=district.grid_zone)
    co2_g = imported * grid.value
    if district.heat_zone is not None:
        co2_g += heat * factors.find(carrier="district_heat", zone=district.heat_zone).value
    figures: dict[str, FieldValue] = {
        "electricity_import_kwh": imported,
        "electricity_export_kwh": exported,
        "heat_kwh": heat,
        "pv_kwh": pv,
        "ev_kwh": ev,
        "final_energy_kwh": imported + heat,
        "self_consumption": self_consumption,
        "self_sufficiency": self_sufficiency,
        "co2_kg": co2_g / 1000,
        "co2_factor_g_per_kwh": grid.value,
        "completeness": float("nan") if kpis.seq.completeness is None else kpis.seq.completeness,
    }
    seq = kpis.seq
    values: dict[str, FieldValue] = {
        **figures,
        "readings": kpis.readings,
        "readings_issued": seq.issued,
        "readings_quarantined": seq.quarantined,
        "readings_evicted": seq.evicted,
        "readings_lost": seq.lost,
        "unstored_points": kpis.unstored_points,
        "status": status,
        "revision": revision,
        "computed_at": computed_at,
        "co2_factor_source": grid.id,
    }
    return point("kpi_district", {"district": district.id}, values, window.start_ms)


def energy_lines(
    district: str, window: DayWindow, kpis: DayKpis, *, status: str, revision: int, computed_at: int
) -> list[str]:
    return [
        point(
            "kpi_energy",
            {"district": district, "building": building, "carrier": carrier},
            {
                "energy_kwh": kwh,
                "coverage": kpis.coverage[(building, carrier)],
                "readings": kpis.readings,
                "status": status,
                "revision": revision,
                "computed_at": computed_at,
            },
            window.start_ms,
        )
        for (building, carrier), kwh in sorted(kpis.energy.items())
    ]


async def stored_state(influx: InfluxV1, district: str, window: DayWindow) -> Stored | None:
    """What the day's stored district KPIs were computed from: inputs = (readings, unstored points)."""
    fields = ["readings", "revision", "status", "unstored_points"]
    at = window.start_ms
    series = await queries.kpi_rows(influx, "kpi_district", fields, district, at, at, end_inclusive=True)
    for s in series:
        for row in s["values"]:
            return Stored((int(row[1]), int(row[4] or 0)), int(row[2]), str(row[3]))
    return None


async def stored_days(influx: InfluxV1, district: str, start_ms: int, end_ms: int) -> set[int]:
    """Start (ms) of every day in [start_ms, end_ms) that has its district KPIs."""
    series = await queries.kpi_rows(influx, "kpi_district", ["revision"], district, start_ms, end_ms)
    return {int(row[0]) for s in series for row in s["values"]}


@dataclass(slots=True)
class CycleReport:
    recomputed: list[tuple[str, date, int]] = field(default_factory=list)  # (district, day, revision)
    finalised: list[tuple[str, date]] = field(default_factory=list)
    unchanged: int = 0
    backfilled: list[tuple[str, date]] = field(default_factory=list)  # (district, day) computed for the first time
    savings: list[savings_job.MeterSavings] = field(default_factory=list)  # points written, one per meter


def day_lines(
    district: DistrictEntry,
    window: DayWindow,
    kpis: DayKpis,
    *,
    status: str,
    revision: int,
    computed_at: int,
) -> list[str]:
    """The kpi_energy lines and the kpi_district line of one day."""
    lines = energy_lines(district.id, window, kpis, status=status, revision=revision, computed_at=computed_at)
    lines.append(
        district_line(
            district,
            window,
            kpis,
            status=status,
            revision=revision,
            computed_at=computed_at,
        )
    )
    return lines


def _status(window: DayWindow, now_ms: int, final_after_hours: float) -> str:
    return "final" if now_ms >= window.end_ms + final_after_hours * 3_600_000 else "provisional"


BACKFILL_CHUNK_DAYS = 31
"""Days computed per fetch in a backfill: a month of registers in memory at a time."""


def _runs(windows: list[DayWindow], max_len: int) -> list[list[DayWindow]]:
    """Consecutive days in runs of at most `max_len` (a batched count needs consecutive days)."""
    runs: list[list[DayWindow]] = []
    for w in windows:
        if runs and len(runs[-1]) < max_len and runs[-1][-1].end_ms == w.start_ms:
            runs[-1].append(w)
        else:
            runs.append([w])
    return runs


async def backfill(
    influx: InfluxV1,
    registry: Registry,
    district: DistrictEntry,
    first: date,
    last: date,
    *,
    now_ms: int,
    final_after_hours: float,
    progress: bool | None = None,
) -> list[date]:
    """Compute the daily KPIs of every day in [first, last] that has readings but no KPIs yet (revision 1),
    a month per fetch; returns the days written. Days that already have KPIs are left to the lateness
    window (`--days`): a backfill fills gaps once, it does not re-check old days. A backfill of more than a
    month draws a progress bar on stderr (on a terminal, or always with `progress=True`)."""
    zone = ZoneInfo(district.timezone)
    windows = [local_day(zone, first + timedelta(days=i)) for i in range((last - first).days + 1)]
    if not windows:
        return []
    have = await stored_days(influx, district.id, windows[0].start_ms, windows[-1].end_ms)
    missing = [w for w in windows if w.start_ms not in have]
    runs = _runs(missing, BACKFILL_CHUNK_DAYS)
    bar = ProgressBar(
        len(missing), label=f"backfill {district.id}", unit="days", enabled=None if len(runs) > 1 else False
    )
    if progress is not None:
        bar.enabled = progress
    done: list[date] = []
    for run in runs:
        lines: list[str] = []
        for window, kpis in zip(run, await compute_days(influx, registry, district.id, run), strict=True):
            if kpis.readings == 0:
                continue
            status = _status(window, now_ms, final_after_hours)
            lines += day_lines(
                district,
                window,
                kpis,
                status=status,
                revision=1,
                computed_at=now_ms,
            )
            done.append(window.day)
        if lines:
            await influx.write("\n".join(lines).encode())
        bar.advance(len(run))
    bar.close()
    if done:
        log.info("days backfilled", extra={"fields": {"district": district.id, "days": len(done)}})
    return done


async def run_cycle(
    influx: InfluxV1,
    registry: Registry,
    *,
    days: int,
    final_after_hours: float,
    now_ms: int,
    recompute: bool = False,
    progress: bool | None = None,
) -> CycleReport:
    """One pass over every district: the lateness window of daily KPIs, then for districts with retrofits the
    backfill of the older days their savings need, then the savings of the window's complete days."""
    report = CycleReport()
    for district in registry.districts.values():
        zone = ZoneInfo(district.timezone)
        today = datetime.fromtimestamp(now_ms / 1000, zone).date()
        for offset in range(days, -1, -1):
            window = local_day(zone, today - timedelta(days=offset))
            if window.start_ms > now_ms:
                continue
            status = _status(window, now_ms, final_after_hours)
            previous = await stored_state(influx, district.id, window)
            count = await count_readings(influx, district.id, window)
            if count == 0 and previous is None:
                continue
            inputs = (count, await count_unstored(influx, district.id, window))
            if not recompute and unchanged(previous, inputs, status):
                report.unchanged += 1
                continue
            revision = next_revision(previous, inputs, force=recompute)
            if previous is not None and revision == previous.revision:
                report.finalised.append((district.id, window.day))  # same numbers, now final
            else:
                report.recomputed.append((district.id, window.day, revision))
            kpis = await compute_day(influx, registry, district.id, window)
            lines = day_lines(
                district,
                window,
                kpis,
                status=status,
                revision=revision,
                computed_at=now_ms,
            )
            await influx.write("\n".join(lines).encode())
            log.info(
                "kpis written",
                extra={
                    "fields": {
                        "district": district.id,
                        "day": str(window.day),
                        "status": status,
                        "revision": revision,
                        "readings": kpis.readings,
                    }
                },
            )
        found = savings_job.retrofits(registry, district.id)
        if not found or min(r.day for r in found) >= today:
            continue  # no reporting day yet
        backfilled = await backfill(
            influx,
            registry,
            district,
            savings_job.first_day(found),
            today - timedelta(days=days + 1),
            now_ms=now_ms,
            final_after_hours=final_after_hours,
            progress=progress,
        )
        report.backfilled += [(district.id, day) for day in backfilled]
        report.savings += await savings_job.update_savings(
            influx, registry, district, today=today, days=days, now_ms=now_ms
        )
    return report

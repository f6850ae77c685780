"""Metered savings and CO2 avoided to date for buildings with a `retrofit` date: a step of `districtpulse aggregate`.

For every building of the registry with a `retrofit` date (devices.registry.BuildingEntry), and each of its
carriers (`electricity`: the main meters' import, CalTRACK fuel "electricity"; `heat`: the heat meters,
CalTRACK fuel "gas", i.e. intercept-only and heating models only), the job fits CalTRACK 2.0 daily
(`aggregation.caltrack_daily`, IPMVP option C) on

* usage: the daily `kpi_energy` series the job itself writes (a day whose valid intervals cover less than
  `MIN_DAY_COVERAGE` of it is missing data, so a meter outage is not read as a saving), and
* temperature: the hourly mean outdoor temperature of the district's weather station(s), read from InfluxDB
  (every station's readings of the hour averaged, degC -> degF),

with the CalTRACK periods: baseline = the 365 local days before the retrofit date, reporting = from the
retrofit date to the end of day E. It writes, at time = E's local midnight:

    kpi_savings_building,district=..,building=..,carrier=electricity|heat
        savings_kwh, counterfactual_kwh, observed_kwh, model_type, cv_rmse, nmbe, fsu, fsu_error_band_kwh,
        r_squared, baseline_days, reporting_days, qualified, reason, retrofit, inputs, status, revision, computed_at
    kpi_savings,district=..     savings_kwh, counterfactual_kwh, observed_kwh, <carrier>_savings_kwh,
        savings_band_kwh, meters, qualified, inputs, status, revision, computed_at
    kpi_co2,district=..         avoided_kg, <carrier>_avoided_kg, <carrier>_factor_id, <carrier>_factor_g_per_kwh,
        inputs, status, revision, computed_at

E runs over the complete local days of the job's lateness window, so a point becomes `final` once every
daily KPI it was computed from is final, and the newest point is "savings to date". A point is recomputed
only when its inputs change: `inputs` is a digest of the (day, revision) pairs of the daily KPIs it used
(weather readings count in their day's revision too), so late data that revises a day recomputes exactly
the points that include it, and an unchanged day costs no fit.

A meter qualifies when at least `MIN_BASELINE_SHARE` of its baseline days have both usage and temperature
(CalTRACK's data sufficiency) and a candidate model qualifies; otherwise its point says why (`reason`) and
the district totals leave it out (`qualified` counts the meters in them). The district's savings band adds
the meters' ASHRAE Guideline 14 bands (90 % confidence) in quadrature, i.e. assumes independent meters.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from aggregation._caltrack_common import Fuel, HourlyTemperature, MeterSeries
from aggregation.caltrack_daily import NoModelError, SavingsResult, caltrack_daily, daily_periods
from aggregation.co2 import Factor, load_factors
from aggregation.jobs.revisions import Stored, next_revision, unchanged
from devices import DeviceKind, Registry
from devices.registry import DistrictEntry
from storage import queries
from storage.influx import InfluxV1
from storage.lineprotocol import FieldValue, point

__all__ = [
    "BASELINE_DAYS",
    "MIN_BASELINE_SHARE",
    "MIN_DAY_COVERAGE",
    "MeterSavings",
    "Retrofit",
    "first_day",
    "meter_savings",
    "read_hourly_temperature",
    "retrofits",
    "update_savings",
    "usage_series",
]

log = logging.getLogger("aggregate.savings")

METHOD = "caltrack-daily"
FUELS: dict[str, Fuel] = {"electricity": "electricity", "heat": "gas"}
"""kpi_energy carrier -> CalTRACK fuel rules (heat has no cooling term, and its zeros are real)."""
CO2_CARRIERS = {"electricity": "electricity", "heat": "district_heat"}
"""kpi_energy carrier -> carrier of the emission-factor table."""
BASELINE_DAYS = 365
MIN_BASELINE_SHARE = 0.9
MIN_DAY_COVERAGE = 0.9
HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Retrofit:
    """A building with a retrofit date and the carriers it has meters for."""

    building: str
    day: date
    carriers: tuple[str, ...]


def retrofits(registry: Registry, district: str) -> list[Retrofit]:
    """The district's buildings with a retrofit date that have a main electricity meter or a heat meter."""
    out = []
    for building_id, (d, building) in registry.buildings.items():
        if d.id != district or building.retrofit is None:
            continue
        devices = [dev for dev in registry if dev.building == building_id]
        carriers = []
        if any(dev.kind == DeviceKind.ELECTRICITY_METER and dev.submeter_of is None for dev in devices):
            carriers.append("electricity")
        if any(dev.kind == DeviceKind.HEAT_METER for dev in devices):
            carriers.append("heat")
        if carriers:
            out.append(Retrofit(building_id, building.retrofit, tuple(carriers)))
    return out


def first_day(found: list[Retrofit]) -> date:
    """The first baseline day of a district's retrofits: daily KPIs must exist from here on."""
    return min(r.day for r in found) - timedelta(days=BASELINE_DAYS)


@dataclass(frozen=True, slots=True)
class _Days:
    """The local days from a first day: midnights (UTC ms) and UTC offsets (s), one more midnight at the end."""

    first: date
    midnight_ms: list[int]
    offset_s: list[int]

    @classmethod
    def of(cls, zone: ZoneInfo, first: date, last: date) -> _Days:
        midnights, offsets = [], []
        for i in range((last - first).days + 2):
            dt = datetime.combine(first + timedelta(days=i), datetime.min.time(), zone)
            offset = dt.utcoffset()
            midnights.append(int(dt.timestamp() * 1000))
            offsets.append(int(offset.total_seconds()) if offset is not None else 0)
        return cls(first, midnights, offsets)

    def ms(self, day: date) -> int:
        return self.midnight_ms[(day - self.first).days]


@dataclass(frozen=True, slots=True)
class DailyRow:
    energy_kwh: float
    coverage: float
    revision: int
    final: bool


async def read_daily(
    influx: InfluxV1, district: str, building: str, start_ms: int, end_ms: int
) -> dict[str, dict[int, DailyRow]]:
    """A building's daily kpi_energy rows of the savings carriers: carrier -> day start (ms) -> row."""
    series = await queries.kpi_rows(
        influx,
        "kpi_energy",
        ["energy_kwh", "coverage", "revision", "status"],
        district,
        start_ms,
        end_ms,
        where={"building": building, "carrier": list(FUELS)},
        group_by=["carrier"],
    )
    out: dict[str, dict[int, DailyRow]] = {c: {} for c in FUELS}
    for s in series:
        rows = out[s["tags"]["carrier"]]
        for t, energy, coverage, revision, status in s["values"]:
            rows[int(t)] = DailyRow(float(energy), float(coverage), int(revision), status == "final")
    return out


async def read_hourly_temperature(influx: InfluxV1, district: str, start_ms: int, end_ms: int) -> HourlyTemperature:
    """Hourly mean outdoor temperature (degF) of the district's weather stations on the grid of hours from
    `start_ms` (NaN where no station reported)."""
    offset_min = (start_ms % HOUR_MS) // 60_000  # local midnight on the half hour: hours start there too
    series = await queries.hourly_mean(
        influx, DeviceKind.WEATHER_STATION, "outdoor_temperature", district, start_ms, end_ms, offset_min=offset_min
    )
    degf = np.full(-(-(end_ms - start_ms) // HOUR_MS), np.nan)
    for s in series:
        for t, value in s["values"]:
            if value is not None:
                degf[(int(t) - start_ms) // HOUR_MS] = float(value) * 1.8 + 32.0
    return HourlyTemperature(t0_s=start_ms // 1000, degf=degf)


def usage_series(rows: dict[int, DailyRow], days: _Days) -> MeterSeries:
    """One row per local day (NaN: no daily KPI, or one covering less than MIN_DAY_COVERAGE of the day)."""
    starts = days.midnight_ms[:-1]
    value = np.full(len(starts), np.nan)
    for i, t in enumerate(starts):
        row = rows.get(t)
        if row is not None and row.coverage >= MIN_DAY_COVERAGE:
            value[i] = row.energy_kwh
    return MeterSeries(np.array(starts, dtype=np.int64) // 1000, np.array(days.offset_s[:-1], dtype=np.int64), value)


def meter_savings(
    usage: MeterSeries,
    temperature: HourlyTemperature,
    baseline: tuple[int, int],
    reporting: tuple[int, int],
    fuel: Fuel,
) -> tuple[SavingsResult | None, str, int]:
    """CalTRACK daily savings of one meter after the data-sufficiency check: (result or None, why not, the
    number of valid baseline days). Periods in UTC epoch seconds, half-open."""
    base = daily_periods(usage, temperature, baseline[0], baseline[1], fuel)
    valid = int(np.count_nonzero(np.isfinite(base.usage_per_day) & np.isfinite(base.td)))
    if valid < MIN_BASELINE_SHARE * BASELINE_DAYS:
        return None, f"insufficient baseline: {valid} of {BASELINE_DAYS} days have usage and temperature", valid
    try:
        return caltrack_daily(usage, temperature, baseline, reporting, fuel), "", valid
    except NoModelError as exc:
        return None, str(exc), valid


@dataclass(frozen=True, slots=True)
class MeterSavings:
    """What was written for one building and carrier at one reporting end day."""

    building: str
    carrier: str
    end_day: date
    result: SavingsResult | None
    reason: str
    status: str
    revision: int


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def _inputs(
    retrofit: Retrofit, carrier: str, rows: dict[int, DailyRow], start_ms: int, end_ms: int, last_day_ms: int
) -> tuple[str, bool]:
    """The digest of the daily KPIs a point uses, and whether they are all final, the last day's included."""
    used = sorted((t, r.revision) for t, r in rows.items() if start_ms <= t < end_ms)
    final = last_day_ms in rows and all(rows[t].final for t, _ in used)
    return _digest(METHOD, retrofit.day, carrier, used), final


async def _stored(
    influx: InfluxV1, measurement: str, district: str, start_ms: int, end_ms: int, tags: tuple[str, ...]
) -> dict[tuple[str, ...], Stored]:
    """(tag values..., time) -> what is stored, for the points in [start_ms, end_ms]."""
    series = await queries.kpi_rows(
        influx,
        measurement,
        ["inputs", "revision", "status"],
        district,
        start_ms,
        end_ms,
        group_by=tags,
        end_inclusive=True,
    )
    out: dict[tuple[str, ...], Stored] = {}
    for s in series:
        key = tuple(s.get("tags", {})[t] for t in tags)
        for t, inputs, revision, status in s["values"]:
            out[(*key, str(t))] = Stored(str(inputs), int(revision), str(status))
    return out


async def update_savings(
    influx: InfluxV1, registry: Registry, district: DistrictEntry, *, today: date, days: int, now_ms: int
) -> list[MeterSavings]:
    """Savings to date of a district's retrofits for each complete local day E of the lateness window
    (`days` days before `today`), recomputed where their inputs or status changed. Returns what it wrote.

    The daily KPIs from the first baseline day on must exist (`aggregation.jobs.daily.backfill`)."""
    found = retrofits(registry, district.id)
    last = today - timedelta(days=1)
    ends = [last - timedelta(days=k) for k in range(days - 1, -1, -1)]
    ends = [e for e in ends if found and e >= min(r.day for r in found)]
    if not ends:
        return []
    zone = ZoneInfo(district.timezone)
    span = _Days.of(zone, first_day(found), last)
    start_ms, end_ms = span.midnight_ms[0], span.midnight_ms[-1]
    daily = {r.building: await read_daily(influx, district.id, r.building, start_ms, end_ms) for r in found}
    first_end, last_end = span.ms(ends[0]), span.ms(ends[-1])
    stored_meters = await _stored(
        influx, "kpi_savings_building", district.id, first_end, last_end, ("building", "carrier")
    )
    stored_district = await _stored(influx, "kpi_savings", district.id, first_end, last_end, ())
    temperature: HourlyTemperature | None = None
    written: list[MeterSavings] = []
    for end in ends:
        end_ms_day = span.ms(end)
        meters = [(r, c) for r in found if end >= r.day for c in r.carriers]
        after = span.ms(end + timedelta(days=1))
        inputs = {
            (r.building, c): _inputs(
                r, c, daily[r.building][c], span.ms(r.day - timedelta(days=BASELINE_DAYS)), after, end_ms_day
            )
            for r, c in meters
        }
        district_inputs = _digest(*(f"{b}/{c}/{i}" for (b, c), (i, _) in sorted(inputs.items())))
        district_status = "final" if all(f for _, f in inputs.values()) else "provisional"
        previous = stored_district.get((str(end_ms_day),))
        wanted = {(b, c, str(end_ms_day)): (i, "final" if f else "provisional") for (b, c), (i, f) in inputs.items()}
        if unchanged(previous, district_inputs, district_status) and all(
            unchanged(stored_meters.get(key), *state) for key, state in wanted.items()
        ):
            continue
        if temperature is None:
            temperature = await read_hourly_temperature(influx, district.id, start_ms, end_ms)
        results = []
        lines = []
        for r, carrier in meters:
            digest, final = inputs[(r.building, carrier)]
            status = "final" if final else "provisional"
            revision = next_revision(stored_meters.get((r.building, carrier, str(end_ms_day))), digest)
            usage = usage_series(daily[r.building][carrier], span)
            baseline = (span.ms(r.day - timedelta(days=BASELINE_DAYS)) // 1000, span.ms(r.day) // 1000)
            reporting = (span.ms(r.day) // 1000, after // 1000)
            result, reason, valid = meter_savings(usage, temperature, baseline, reporting, FUELS[carrier])
            meter = MeterSavings(r.building, carrier, end, result, reason, status, revision)
            results.append(meter)
            lines.append(_meter_line(district.id, r, meter, valid, digest, now_ms, end_ms_day))
            if result is None:
                log.warning(
                    "savings not computed",
                    extra={"fields": {"building": r.building, "carrier": carrier, "day": str(end), "reason": reason}},
                )
        district_revision = next_revision(previous, district_inputs)
        common: dict[str, FieldValue] = {
            "inputs": district_inputs,
            "status": district_status,
            "revision": district_revision,
        }
        lines += _district_lines(district, results, common, now_ms, end_ms_day)
        await influx.write("\n".join(lines).encode())
        written += results
        log.info(
            "savings written",
            extra={
                "fields": {
                    "district": district.id,
                    "day": str(end),
                    "status": district_status,
                    "revision": district_revision,
                    "savings_kwh": sum(m.result.metered_savings for m in results if m.result is not None),
                }
            },
        )
    return written


def _meter_line(
    district: str, retrofit: Retrofit, meter: MeterSavings, valid_days: int, inputs: str, now_ms: int, t_ms: int
) -> str:
    result = meter.result
    values: dict[str, FieldValue] = {}
    if result is not None:
        values = {
            "savings_kwh": result.metered_savings,
            "counterfactual_kwh": result.counterfactual_total,
            "observed_kwh": result.observed_total,
            "model_type": result.model_type,
            "cv_rmse": result.metrics.cv_rmse,
            "nmbe": result.metrics.nmbe,
            "r_squared": result.metrics.r_squared,
            "fsu": result.fsu,
            "fsu_error_band_kwh": result.fsu_error_band,
            "reporting_days": result.reporting_n,
        }
    else:
        values = {"model_type": "none", "reason": meter.reason}
    values |= {
        "baseline_days": valid_days,
        "qualified": result is not None,
        "retrofit": retrofit.day.isoformat(),
        "method": METHOD,
        "inputs": inputs,
        "status": meter.status,
        "revision": meter.revision,
        "computed_at": now_ms,
    }
    tags = {"district": district, "building": meter.building, "carrier": meter.carrier}
    return point("kpi_savings_building", tags, values, t_ms)


def _factor(district: DistrictEntry, carrier: str) -> Factor | None:
    zone = district.grid_zone if carrier == "electricity" else district.heat_zone
    if zone is None:
        return None
    return load_factors().find(carrier=CO2_CARRIERS[carrier], zone=zone)


def _district_lines(
    district: DistrictEntry,
    meters: list[MeterSavings],
    common: dict[str, FieldValue],
    now_ms: int,
    t_ms: int,
) -> list[str]:
    done = [(m, m.result) for m in meters if m.result is not None]
    savings: dict[str, FieldValue] = {"meters": len(meters), "qualified": len(done)}
    co2: dict[str, FieldValue] = {}
    if done:
        savings |= {
            "savings_kwh": sum(r.metered_savings for _, r in done),
            "counterfactual_kwh": sum(r.counterfactual_total for _, r in done),
            "observed_kwh": sum(r.observed_total for _, r in done),
            "savings_band_kwh": math.sqrt(sum(r.fsu_error_band**2 for _, r in done)),
            "reporting_days": max(r.reporting_n for _, r in done),
        }
        avoided = 0.0
        for carrier in FUELS:
            kwh = [r.metered_savings for m, r in done if m.carrier == carrier]
            if not kwh:
                continue
            savings[f"{carrier}_savings_kwh"] = sum(kwh)
            factor = _factor(district, carrier)
            if factor is None:
                log.warning("no emission factor zone for %s in district %s: left out of kpi_co2", carrier, district.id)
                continue
            kg = sum(kwh) * factor.value / 1000.0
            avoided += kg
            co2 |= {
                f"{carrier}_avoided_kg": kg,
                f"{carrier}_factor_id": factor.id,
                f"{carrier}_factor_g_per_kwh": factor.value,
            }
        co2 = {"avoided_kg": avoided, **co2}
    tail = {**common, "computed_at": now_ms}
    lines = [point("kpi_savings", {"district": district.id}, savings | tail, t_ms)]
    if co2:
        lines.append(point("kpi_co2", {"district": district.id}, co2 | tail, t_ms))
    return lines

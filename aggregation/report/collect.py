"""What a report reads from InfluxDB, through storage: the daily KPI series the aggregate job wrote, the
savings to date at the report's last day, the data-quality accounts, and nothing from the raw readings
except their sequence numbers (`aggregation.jobs.accounts`). A report therefore says what the KPIs say:
`districtpulse aggregate` must have run over the period (its `--days` window, or a backfill)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aggregation.completeness import SeqAccount
from aggregation.jobs.accounts import seq_accounts
from devices import Registry
from storage import queries
from storage.influx import InfluxV1

DISTRICT_FIELDS = (
    "electricity_import_kwh",
    "electricity_export_kwh",
    "heat_kwh",
    "pv_kwh",
    "ev_kwh",
    "final_energy_kwh",
    "self_consumption",
    "self_sufficiency",
    "co2_kg",
    "co2_factor_source",
    "completeness",
    "readings",
    "readings_issued",
    "readings_quarantined",
    "readings_evicted",
    "readings_lost",
    "status",
    "revision",
)
SAVINGS_BUILDING_FIELDS = (
    "savings_kwh",
    "counterfactual_kwh",
    "observed_kwh",
    "model_type",
    "cv_rmse",
    "nmbe",
    "r_squared",
    "fsu",
    "fsu_error_band_kwh",
    "baseline_days",
    "reporting_days",
    "qualified",
    "reason",
    "retrofit",
    "status",
    "revision",
)
SAVINGS_DISTRICT_FIELDS = ("savings_kwh", "counterfactual_kwh", "observed_kwh", "savings_band_kwh", "qualified")
CO2_FIELDS = ("avoided_kg",)


@dataclass(frozen=True, slots=True)
class Period:
    """The local days [first, last] of a district, and their bounds in UTC milliseconds."""

    first: date
    last: date
    zone: str
    start_ms: int
    end_ms: int

    @classmethod
    def of(cls, first: date, last: date, zone: str) -> Period:
        if last < first:
            raise ValueError(f"the period ends ({last}) before it starts ({first})")
        tz = ZoneInfo(zone)
        start = datetime.combine(first, datetime.min.time(), tz)
        end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tz)
        return cls(first, last, zone, int(start.timestamp() * 1000), int(end.timestamp() * 1000))

    @property
    def last_day_ms(self) -> int:
        """The local midnight that starts the last day: where the savings to date of that day are stored."""
        tz = ZoneInfo(self.zone)
        return int(datetime.combine(self.last, datetime.min.time(), tz).timestamp() * 1000)

    def day_of(self, ts_ms: int) -> str:
        return datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(self.zone)).date().isoformat()


Row = dict[str, Any]


@dataclass(slots=True)
class ReportData:
    """Everything read for one report, as rows keyed by local day (ISO date) and tags."""

    period: Period
    energy: list[Row] = field(default_factory=list)  # building, carrier, energy_kwh, days, revisions, max_revision
    energy_days: list[Row] = field(default_factory=list)  # day, carrier, energy_kwh (the district's)
    district: list[Row] = field(default_factory=list)  # day, the kpi_district fields
    savings_buildings: list[Row] = field(default_factory=list)  # building, carrier, the fields at the last day
    savings_series: list[Row] = field(default_factory=list)  # day, the district's savings to date of each day
    co2: list[Row] = field(default_factory=list)  # day, carrier fields of kpi_co2 at the last day
    unstored: list[Row] = field(default_factory=list)  # stage, reason, readings
    accounts: dict[str, SeqAccount] = field(default_factory=dict)


def _rows(series: list[dict[str, Any]], period: Period) -> list[Row]:
    out = []
    for s in series:
        tags = s.get("tags") or {}
        for values in s["values"]:
            row = dict(zip(s["columns"], values, strict=True))
            row["day"] = period.day_of(int(row.pop("time")))
            out.append({**tags, **row})
    return sorted(out, key=lambda r: tuple(str(r.get(k, "")) for k in ("day", "building", "carrier")))


async def collect(influx: InfluxV1, registry: Registry, district: str, period: Period) -> ReportData:
    if district not in registry.districts:
        raise ValueError(f"district {district!r} is not in the registry ({', '.join(sorted(registry.districts))})")
    data = ReportData(period)
    start, end = period.start_ms, period.end_ms
    # Sums in InfluxDB, not every day's row: a district-year of thousands of buildings stays a few MB.
    totals = await queries.kpi_energy_totals(influx, district, start, end)
    data.energy = [{k: v for k, v in row.items() if k != "day"} for row in _rows(totals, period)]
    data.energy_days = _rows(await queries.kpi_energy_per_day(influx, district, start, end, period.zone), period)
    data.district = _rows(await queries.kpi_rows(influx, "kpi_district", DISTRICT_FIELDS, district, start, end), period)
    at = period.last_day_ms
    buildings = await queries.kpi_rows(
        influx,
        "kpi_savings_building",
        SAVINGS_BUILDING_FIELDS,
        district,
        at,
        at,
        end_inclusive=True,
        group_by=("building", "carrier"),
    )
    data.savings_buildings = _rows(buildings, period)
    series = await queries.kpi_rows(influx, "kpi_savings", SAVINGS_DISTRICT_FIELDS, district, start, end)
    data.savings_series = _rows(series, period)
    co2 = await queries.co2_rows(influx, district, at)
    data.co2 = _rows(co2, period)
    data.unstored = [
        {**(s.get("tags") or {}), "readings": int(v[1] or 0)}
        for s in await queries.unstored_readings(influx, district, start, end)
        for v in s["values"]
    ]
    data.accounts = await seq_accounts(influx, district, start, end)
    return data

"""The demo's savings history: a baseline year and three reporting months in seconds, so that the dashboard's
"Savings to date" and "CO2 avoided" tiles have values after `make demo`.

Metered savings need a year of baseline before a retrofit (CalTRACK). The demo day itself is simulated at
one-minute resolution through MQTT; the history before it is simulated at hourly resolution for the devices
the savings use only (main electricity meters, heat meters, weather stations: about 77,000 readings for the
demo registry), validated as ingest validates and written straight to InfluxDB, with a retrofit
`REPORTING_DAYS` before the demo day on every building (electricity x `ELECTRICITY_FACTOR`, space heat x
`HEATING_FACTOR`). One `districtpulse aggregate` cycle with those retrofit dates then backfills the daily KPIs
and writes kpi_savings_building, kpi_savings and kpi_co2.

The history is a separate simulation, so the registers jump at the demo day's first reading: the
interval-energy kernel reads that as a meter reset (energy NaN for that one interval), which costs the demo
day one minute of coverage. The demo owns its district: it deletes the district's raw points in the history
span and its KPI series first, so a run on another day does not mix two simulations.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from aggregation.jobs.daily import CycleReport, run_cycle
from devices import KINDS, DeviceKind, Registry, validate_message
from devices.progress import ProgressBar
from simulators.config import Cadence, Intervention, SimConfig
from simulators.engine import Simulation
from storage.influx import InfluxV1
from storage.lineprotocol import encode_readings, series_key

__all__ = [
    "ELECTRICITY_FACTOR",
    "HEATING_FACTOR",
    "KPI_MEASUREMENTS",
    "REPORTING_DAYS",
    "Summary",
    "history_config",
    "history_registry",
    "retrofits",
    "run",
    "with_retrofit",
    "write_history",
]

REPORTING_DAYS = 90
ELECTRICITY_FACTOR = 0.85
HEATING_FACTOR = 0.7
KPI_MEASUREMENTS = ("kpi_energy", "kpi_district", "kpi_savings_building", "kpi_savings", "kpi_co2")
_KINDS = (DeviceKind.ELECTRICITY_METER, DeviceKind.HEAT_METER, DeviceKind.WEATHER_STATION)
_LINES_PER_WRITE = 5000


def with_retrofit(registry: Registry, district: str, retrofit: date) -> Registry:
    """The registry with `retrofit` set on every building of `district` (the demo's file stays as it is)."""
    model = dataclasses.asdict(registry.model)
    for d in model["district"]:
        if d["id"] == district:
            for building in d["building"]:
                building["retrofit"] = retrofit
    return Registry.from_table(model)


def history_registry(registry: Registry, district: str) -> Registry:
    """Only what the savings use: the district's main electricity meters, heat meters and weather stations."""
    model = dataclasses.asdict(registry.model)
    model["district"] = [d for d in model["district"] if d["id"] == district]
    for d in model["district"]:
        for building in d["building"]:
            for gateway in building["gateway"]:
                gateway["device"] = [
                    dev for dev in gateway["device"] if dev["kind"] in _KINDS and dev.get("submeter_of") is None
                ]
    return Registry.from_table(model)


def retrofits(registry: Registry, retrofit: date) -> tuple[Intervention, ...]:
    """Every building's retrofit from `retrofit` on: electricity x ELECTRICITY_FACTOR, space heat x
    HEATING_FACTOR. The history and the demo day are simulated with the same ones, so the day's savings
    continue the history's."""
    interventions = []
    for building_id in registry.buildings:
        kinds = {d.kind for d in registry if d.building == building_id}
        if DeviceKind.ELECTRICITY_METER in kinds:
            interventions.append(Intervention(building_id, retrofit, "electricity", factor=ELECTRICITY_FACTOR))
        if DeviceKind.HEAT_METER in kinds:
            interventions.append(Intervention(building_id, retrofit, "heating", factor=HEATING_FACTOR))
    return tuple(interventions)


def history_config(registry: Registry, retrofit: date, end: date, seed: int) -> SimConfig:
    """Hourly days from the baseline's eve (its first day needs the reading before midnight) to `end`
    (exclusive), with each building's retrofit."""
    start = retrofit - timedelta(days=366)
    return SimConfig(
        start=start,
        days=(end - start).days,
        seed=seed,
        cadence=Cadence(3600, 3600),
        interventions=retrofits(registry, retrofit),
    )


async def write_history(
    influx: InfluxV1, registry: Registry, district: str, demo_day: date, *, seed: int, now_ms: int
) -> tuple[Simulation, int]:
    """Simulate the history before `demo_day` and write it as ingest would; returns the run and its readings."""
    retrofit = demo_day - timedelta(days=REPORTING_DAYS)
    subset = history_registry(registry, district)
    sim = Simulation(subset, history_config(subset, retrofit, demo_day, seed), district=district)
    for kind in KINDS.values():  # the demo owns its district: no points of an earlier run in the span
        await influx.query(
            f'DELETE FROM "{kind.measurement}" WHERE "district" = \'{district}\''
            f" AND time >= {sim.start_ms}ms AND time < {sim.end_ms}ms"
        )
    for measurement in KPI_MEASUREMENTS:
        await influx.query(f'DELETE FROM "{measurement}" WHERE "district" = \'{district}\'')
    bar = ProgressBar(sim.config.days, label="history", unit="days")
    lines: list[str] = []
    written = 0
    day_ms = 86_400_000
    for msg in sim.messages():
        result = validate_message(msg.topic, msg.payload, registry, now_ms=now_ms)
        if result.device is None or result.rejected:
            raise RuntimeError(f"history reading rejected: {result.rejected}")
        lines += encode_readings(series_key(result.device), result.good, result.seqs)
        if len(lines) >= _LINES_PER_WRITE:
            await influx.write("\n".join(lines).encode())
            written += len(lines)
            lines = []
            bar.advance((msg.deliver_ms - sim.start_ms) // day_ms - bar.done)
    if lines:
        await influx.write("\n".join(lines).encode())
        written += len(lines)
    bar.advance(sim.config.days - bar.done)
    bar.close()
    return sim, written


@dataclass(frozen=True, slots=True)
class Summary:
    """What the demo prints: the history written, the aggregate cycle, and the tiles' values."""

    readings: int
    report: CycleReport
    savings_kwh: float | None
    avoided_kg: float | None
    seconds: float


async def run(influx: InfluxV1, registry: Registry, district: str, demo_day: date, *, seed: int) -> Summary:
    """History, then one aggregate cycle as of the hour after the demo day (whose data must be in InfluxDB),
    then the newest district totals, read as the dashboard reads them."""
    t0 = time.monotonic()
    zone = ZoneInfo(registry.districts[district].timezone)
    end_ms = int(datetime.combine(demo_day + timedelta(days=1), datetime.min.time(), zone).timestamp() * 1000)
    _, readings = await write_history(influx, registry, district, demo_day, seed=seed, now_ms=end_ms)
    report = await run_cycle(
        influx,
        with_retrofit(registry, district, demo_day - timedelta(days=REPORTING_DAYS)),
        days=2,
        final_after_hours=48,
        now_ms=end_ms + 3_600_000,
    )
    newest = {}
    for measurement, field in (("kpi_savings", "savings_kwh"), ("kpi_co2", "avoided_kg")):
        series = await influx.query(f'SELECT last("{field}") FROM "{measurement}" WHERE "district" = \'{district}\'')
        newest[field] = next((float(row[1]) for s in series for row in s["values"] if row[1] is not None), None)
    return Summary(readings, report, newest["savings_kwh"], newest["avoided_kg"], time.monotonic() - t0)

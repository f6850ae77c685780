"""`districtpulse aggregate` with a retrofit on the real InfluxDB: metered savings and CO2 avoided to date.

A small district (one residential building with two electrically heated households, one school with a heat
meter, one weather station) is simulated hourly over the baseline year plus 91 reporting days, with an
efficiency retrofit (electricity x 0.8) and a heating retrofit (space heat x 0.7) on the retrofit date. The
savings the job writes are checked against the simulator's truth (counterfactual - actual, within a stated
tolerance) and against `caltrack_daily` called directly on daily energy and hourly temperature rebuilt from
the raw payloads (the independent reference, 1e-9 relative).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from aggregation._caltrack_common import HourlyTemperature, MeterSeries
from aggregation.caltrack_daily import SavingsResult, caltrack_daily
from aggregation.co2 import load_factors
from aggregation.jobs.daily import compute_day, local_day, run_cycle
from dashboard.sources import InfluxSource
from devices import Registry
from districtpulse.config import Endpoints
from simulators import Message
from simulators.config import Cadence, Intervention, SimConfig
from simulators.engine import Simulation
from storage.influx import InfluxConfig, InfluxV1
from tests.support.influx_writes import write_messages
from tests.support.services import scratch_database

RETROFIT = date(2025, 1, 1)
BASELINE_FIRST = RETROFIT - timedelta(days=365)  # 2024-01-02: CalTRACK's 365 days before the retrofit
LAST = RETROFIT + timedelta(days=90)  # 91 reporting days, the spring DST change included
ZONE = ZoneInfo("Europe/Helsinki")
TRUTH_TOLERANCE = 0.05
"""Savings vs the simulator's truth: within 5 % (and within the 90 % FSU band). The daily model is not the
simulator's physics (smoothed temperature, hot water, noise), and a day's energy counts the hour before
midnight (an interval counts in the day its reading closes)."""

REGISTRY = """
[[district]]
id = "{d}"
timezone = "Europe/Helsinki"
grid_zone = "FI"
heat_zone = "FI-Helsinki"
  [[district.building]]
  id = "{d}-h"
  use = "residential"
  floor_area_m2 = 150
  retrofit = {retrofit}
    [[district.building.gateway]]
    id = "{d}-gw-h"
      [[district.building.gateway.device]]
      id = "{d}-h-em-a"
      kind = "electricity_meter"
      max_power_w = 60000
      [[district.building.gateway.device]]
      id = "{d}-h-em-b"
      kind = "electricity_meter"
      max_power_w = 60000
      [[district.building.gateway.device]]
      id = "{d}-ws"
      kind = "weather_station"
  [[district.building]]
  id = "{d}-s"
  use = "education"
  floor_area_m2 = 2000
  retrofit = {retrofit}
    [[district.building.gateway]]
    id = "{d}-gw-s"
      [[district.building.gateway.device]]
      id = "{d}-s-hm"
      kind = "heat_meter"
      max_power_w = 400000
"""


@pytest.fixture
async def influx(endpoints: Endpoints) -> AsyncIterator[InfluxV1]:
    async with scratch_database(endpoints, "sav") as client:
        yield client


def midnight_ms(day: date) -> int:
    return int(datetime.combine(day, datetime.min.time(), ZONE).timestamp() * 1000)


def readings(messages: list[Message], device: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    rows = sorted(
        (r["ts"], r["values"][metric])
        for m in messages
        if m.device == device
        for r in json.loads(m.payload)["readings"]
    )
    return np.array([t for t, _ in rows], dtype=np.int64), np.array([v for _, v in rows])


def reference_usage(messages: list[Message], devices: list[str], metric: str) -> MeterSeries:
    """Daily energy from the raw registers: each register increase counts in the local day of the reading
    that closes it (the job's convention), summed over the building's meters."""
    days = [BASELINE_FIRST + timedelta(days=i) for i in range((LAST - BASELINE_FIRST).days + 1)]
    edges = np.array([midnight_ms(d) for d in [*days, LAST + timedelta(days=1)]], dtype=np.int64)
    energy = np.zeros(len(days))
    for device in devices:
        ts, reg = readings(messages, device, metric)
        day = np.searchsorted(edges, ts[1:], side="right") - 1
        inside = (day >= 0) & (day < len(days))
        np.add.at(energy, day[inside], np.diff(reg)[inside])
    offsets = [int(datetime.fromtimestamp(e / 1000, ZONE).utcoffset().total_seconds()) for e in edges[:-1]]  # type: ignore[union-attr]
    return MeterSeries(edges[:-1] // 1000, np.array(offsets, dtype=np.int64), energy)


def reference_temperature(messages: list[Message], station: str) -> HourlyTemperature:
    t0 = midnight_ms(BASELINE_FIRST)
    hours = (midnight_ms(LAST + timedelta(days=1)) - t0) // 3_600_000
    ts, degc = readings(messages, station, "outdoor_temperature")
    total, count = np.zeros(hours), np.zeros(hours)
    index = (ts - t0) // 3_600_000
    inside = (index >= 0) & (index < hours)
    np.add.at(total, index[inside], degc[inside])
    np.add.at(count, index[inside], 1)
    with np.errstate(invalid="ignore"):
        return HourlyTemperature(t0 // 1000, total / count * 1.8 + 32.0)


def reference(messages: list[Message], devices: list[str], metric: str, station: str, fuel: str) -> SavingsResult:
    baseline = (midnight_ms(BASELINE_FIRST) // 1000, midnight_ms(RETROFIT) // 1000)
    reporting = (midnight_ms(RETROFIT) // 1000, midnight_ms(LAST + timedelta(days=1)) // 1000)
    usage = reference_usage(messages, devices, metric)
    return caltrack_daily(usage, reference_temperature(messages, station), baseline, reporting, fuel)  # type: ignore[arg-type]


async def points(influx: InfluxV1, measurement: str) -> list[dict[str, object]]:
    series = await influx.query(f'SELECT * FROM "{measurement}" GROUP BY *')
    return [dict(zip(s["columns"], row, strict=True)) | s.get("tags", {}) for s in series for row in s["values"]]


async def test_savings_to_date_match_truth_and_caltrack_and_reach_the_dashboard(
    influx: InfluxV1, endpoints: Endpoints
) -> None:
    d = "sv" + uuid.uuid4().hex[:8]
    registry = Registry.from_toml(REGISTRY.format(d=d, retrofit=RETROFIT.isoformat()))
    config = SimConfig(
        start=BASELINE_FIRST - timedelta(days=1),  # the baseline's first day needs the reading before midnight
        days=(LAST - BASELINE_FIRST).days + 2,
        seed=3,
        cadence=Cadence(3600, 3600),
        electric_heating_share=1.0,
        interventions=(
            Intervention(f"{d}-h", RETROFIT, "electricity", factor=0.8),
            Intervention(f"{d}-s", RETROFIT, "heating", factor=0.7),
        ),
    )
    sim = Simulation(registry, config)
    messages = list(sim.messages())
    assert sim.end_ms == midnight_ms(LAST + timedelta(days=1))
    heat_meter = f"{d}-s-hm"
    late_from = sim.end_ms - 3 * 3_600_000  # the heat meter's last 3 hours arrive after the first cycle
    on_time = [m for m in messages if m.device != heat_meter]
    heat = [m for m in messages if m.device == heat_meter]
    early = await write_messages(influx, registry, on_time, lambda ts: True)
    early += await write_messages(influx, registry, heat, lambda ts: ts < late_from)
    now = sim.end_ms + 3_600_000  # 01:00 the day after LAST: LAST is the last complete day
    e2, e1 = LAST - timedelta(days=2), LAST - timedelta(days=1)

    first = await run_cycle(influx, registry, days=3, final_after_hours=48, now_ms=now)
    assert first.recomputed == [(d, e2, 1), (d, e1, 1), (d, LAST, 1)]
    assert first.backfilled == [(d, BASELINE_FIRST + timedelta(days=i)) for i in range((e2 - BASELINE_FIRST).days)]
    assert len(first.backfilled) == 453
    assert [(m.building, m.carrier, m.end_day, m.revision, m.status) for m in first.savings] == [
        (f"{d}-h", "electricity", e2, 1, "final"),  # every input day is 48 h old
        (f"{d}-s", "heat", e2, 1, "final"),
        (f"{d}-h", "electricity", e1, 1, "provisional"),
        (f"{d}-s", "heat", e1, 1, "provisional"),
        (f"{d}-h", "electricity", LAST, 1, "provisional"),
        (f"{d}-s", "heat", LAST, 1, "provisional"),
    ]
    energy = {(p["time"], p["building"], p["carrier"]): p for p in await points(influx, "kpi_energy")}
    for dst_day in (date(2024, 3, 31), date(2024, 10, 27)):  # backfilled a month per query: as a day alone
        window = local_day(ZONE, dst_day)
        alone = await compute_day(influx, registry, d, window)
        for (building, carrier), kwh in alone.energy.items():
            row = energy[(window.start_ms, building, carrier)]
            assert (row["energy_kwh"], row["coverage"]) == (kwh, alone.coverage[(building, carrier)])
        assert alone.coverage[(f"{d}-s", "heat")] == 1.0
    heat_before = first.savings[-1].result
    assert heat_before is not None
    assert heat_before.reporting_n == 90  # LAST covers 21 of 24 hours: missing data, not a saving
    stored = {(p["time"], p["carrier"]): p for p in await points(influx, "kpi_energy") if p["building"] == f"{d}-s"}
    assert stored[(midnight_ms(LAST), "heat")]["coverage"] == 21 / 24

    second = await run_cycle(influx, registry, days=3, final_after_hours=48, now_ms=now)
    assert (second.recomputed, second.backfilled, second.savings, second.unchanged) == ([], [], [], 3)

    late = await write_messages(influx, registry, heat, lambda ts: ts >= late_from)
    assert (early + late, late) == (sum(m.readings for m in messages), 3)
    third = await run_cycle(influx, registry, days=3, final_after_hours=48, now_ms=now)
    assert third.recomputed == [(d, LAST, 2)]
    assert [(m.building, m.carrier, m.end_day, m.revision) for m in third.savings] == [
        (f"{d}-h", "electricity", LAST, 2),  # a day's revision covers every carrier of the district
        (f"{d}-s", "heat", LAST, 2),
    ]

    # The job's numbers against the independent reference and the truth.
    station = f"{d}-ws"
    meters = {
        (f"{d}-h", "electricity"): ([f"{d}-h-em-a", f"{d}-h-em-b"], "energy_import", "electricity"),
        (f"{d}-s", "heat"): ([heat_meter], "energy", "gas"),
    }
    latest = {
        (p["building"], p["carrier"]): p
        for p in await points(influx, "kpi_savings_building")
        if p["time"] == midnight_ms(LAST)
    }
    assert latest.keys() == meters.keys()
    factors = load_factors()
    factor = {
        "electricity": factors.find(carrier="electricity", zone="FI"),
        "heat": factors.find(carrier="district_heat", zone="FI-Helsinki"),
    }
    total_savings = total_cf = total_obs = avoided = 0.0
    for (building, carrier), (devices, metric, fuel) in meters.items():
        point = latest[(building, carrier)]
        ref = reference(messages, devices, metric, station, fuel)
        assert (point["qualified"], point["model_type"], point["status"]) == (True, ref.model_type, "provisional")
        assert ref.model_type == "hdd_only"
        assert point["reporting_days"] == ref.reporting_n == 91
        assert point["baseline_days"] == ref.metrics.n == 365
        for field, expected in (
            ("savings_kwh", ref.metered_savings),
            ("counterfactual_kwh", ref.counterfactual_total),
            ("observed_kwh", ref.observed_total),
            ("cv_rmse", ref.metrics.cv_rmse),
            ("fsu_error_band_kwh", ref.fsu_error_band),
        ):
            assert point[field] == pytest.approx(expected, rel=1e-9), field
        truth_cf = truth_actual = 0.0
        for device in devices:
            dt = sim.truth.devices[device]
            for day, cf in dt.counterfactual[metric].items():
                if RETROFIT.isoformat() <= day <= LAST.isoformat():
                    truth_cf += cf
                    truth_actual += dt.energy[metric][day]
        truth = truth_cf - truth_actual
        saved = float(point["savings_kwh"])  # type: ignore[arg-type]
        print(f"{building} {carrier}: job {saved:.1f} kWh, truth {truth:.1f} kWh ({saved / truth - 1:+.2%})")
        assert abs(saved - truth) <= TRUTH_TOLERANCE * truth
        assert abs(saved - truth) <= ref.fsu_error_band
        assert float(point["cv_rmse"]) < 0.25  # type: ignore[arg-type]
        total_savings += ref.metered_savings
        total_cf += ref.counterfactual_total
        total_obs += ref.observed_total
        avoided += ref.metered_savings * factor[carrier].value / 1000

    [district] = [p for p in await points(influx, "kpi_savings") if p["time"] == midnight_ms(LAST)]
    assert district["savings_kwh"] == pytest.approx(total_savings, rel=1e-9)
    assert district["counterfactual_kwh"] == pytest.approx(total_cf, rel=1e-9)
    assert district["observed_kwh"] == pytest.approx(total_obs, rel=1e-9)
    assert (district["meters"], district["qualified"], district["revision"]) == (2, 2, 2)
    [co2] = [p for p in await points(influx, "kpi_co2") if p["time"] == midnight_ms(LAST)]
    assert co2["avoided_kg"] == pytest.approx(avoided, rel=1e-9)
    assert (co2["electricity_factor_id"], co2["heat_factor_id"]) == (factor["electricity"].id, factor["heat"].id)

    # What the dashboard shows: the newest district totals.
    source = InfluxSource(InfluxConfig(url=endpoints.influx_url, database=influx.config.database))
    try:
        assert await source.kpi(d, "kpi_savings", "savings_kwh") == (midnight_ms(LAST), district["savings_kwh"])
        assert await source.kpi(d, "kpi_co2", "avoided_kg") == (midnight_ms(LAST), co2["avoided_kg"])
    finally:
        await source.aclose()

    # Past the watermark the same numbers become final, with the same revisions.
    fourth = await run_cycle(influx, registry, days=3, final_after_hours=1, now_ms=now)
    assert fourth.finalised == [(d, e1), (d, LAST)]
    assert [(m.end_day, m.revision, m.status) for m in fourth.savings] == [
        (e1, 1, "final"),
        (e1, 1, "final"),
        (LAST, 2, "final"),
        (LAST, 2, "final"),
    ]
    [final] = [p for p in await points(influx, "kpi_savings") if p["time"] == midnight_ms(LAST)]
    assert (final["status"], final["revision"], final["savings_kwh"]) == ("final", 2, district["savings_kwh"])

"""The parts of the savings step and of the demo's savings history that need no InfluxDB (the job itself runs on
the real database in tests/integration/test_savings_job.py)."""

from __future__ import annotations

import io
from collections import Counter
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from aggregation._caltrack_common import HourlyTemperature, MeterSeries
from aggregation.jobs import savings as savings_job
from aggregation.jobs.daily import DayWindow, _runs
from devices import DeviceKind, Registry, demo_registry_path
from devices.progress import ProgressBar
from districtpulse import demo_savings

DAY_S = 86_400


def test_retrofits_name_the_carriers_a_building_has_meters_for() -> None:
    registry = demo_savings.with_retrofit(Registry.load(demo_registry_path()), "demo", date(2026, 1, 1))
    found = savings_job.retrofits(registry, "demo")
    assert [(r.building, r.day, r.carriers) for r in found] == [
        (b, date(2026, 1, 1), ("electricity", "heat")) for b in ("b1", "b2", "b3")
    ]
    assert savings_job.first_day(found) == date(2025, 1, 1)
    assert savings_job.retrofits(Registry.load(demo_registry_path()), "demo") == []


def _series(days: int, valid: int) -> tuple[MeterSeries, HourlyTemperature]:
    """`days` UTC days of usage that follows a heating line, the first `valid` of them present."""
    rng = np.random.default_rng(1)
    temp_f = 40 + 25 * np.sin(np.arange(days) * 2 * np.pi / 365) + rng.normal(0, 3, days)
    usage = 100 + 4 * np.maximum(60 - temp_f, 0) + rng.normal(0, 5, days)
    usage[valid:] = np.nan
    starts = np.arange(days, dtype=np.int64) * DAY_S
    return MeterSeries(starts, np.zeros(days, dtype=np.int64), usage), HourlyTemperature(0, np.repeat(temp_f, 24))


def test_a_baseline_with_less_than_90_percent_of_its_days_is_not_fitted() -> None:
    baseline, reporting = (0, 365 * DAY_S), (365 * DAY_S, 400 * DAY_S)
    usage, temperature = _series(400, valid=328)  # 328 of 365 baseline days: 89.9 %
    result, reason, valid = savings_job.meter_savings(usage, temperature, baseline, reporting, "gas")
    assert (result, valid) == (None, 328)
    assert reason == "insufficient baseline: 328 of 365 days have usage and temperature"
    usage, temperature = _series(400, valid=329)  # 90.1 %: fitted, and the reporting days are all missing
    result, reason, valid = savings_job.meter_savings(usage, temperature, baseline, reporting, "gas")
    assert result is not None and (reason, valid, result.reporting_n) == ("", 329, 0)
    assert result.model_type == "hdd_only"


def test_a_day_below_the_coverage_threshold_is_missing_data() -> None:
    days = savings_job._Days.of(ZoneInfo("UTC"), date(2025, 1, 1), date(2025, 1, 3))
    rows = {
        days.midnight_ms[0]: savings_job.DailyRow(10.0, 1.0, 1, True),
        days.midnight_ms[1]: savings_job.DailyRow(9.0, 0.89, 1, True),  # a meter outage: not a saving
    }
    usage = savings_job.usage_series(rows, days)
    assert usage.value.tolist()[0] == 10.0
    assert np.isnan(usage.value[1:]).all()
    assert usage.start_s.tolist() == [m // 1000 for m in days.midnight_ms[:-1]]


def test_backfill_runs_are_consecutive_days_of_bounded_length() -> None:
    day_ms = DAY_S * 1000
    windows = [DayWindow(date(2025, 1, 1) + timedelta(days=i), i * day_ms, (i + 1) * day_ms) for i in (0, 1, 2, 4, 5)]
    assert [[w.start_ms // day_ms for w in run] for run in _runs(windows, 2)] == [[0, 1], [2], [4, 5]]


def test_the_progress_bar_draws_only_when_enabled() -> None:
    quiet, shown = io.StringIO(), io.StringIO()
    for stream, enabled in ((quiet, None), (shown, True)):  # StringIO is not a terminal
        bar = ProgressBar(365, label="backfill demo", unit="days", stream=stream, enabled=enabled, min_interval_s=0)
        bar.advance(31)
        bar.advance(334)
        bar.close()
    assert quiet.getvalue() == ""
    assert shown.getvalue().count("\r") == 3
    assert "[##############################] 100.0%  365/365 days" in shown.getvalue().splitlines()[-1]


def test_the_demo_history_keeps_only_what_the_savings_use() -> None:
    registry = Registry.load(demo_registry_path())
    subset = demo_savings.history_registry(registry, "demo")
    assert Counter(d.kind for d in subset) == {
        DeviceKind.ELECTRICITY_METER: 3,
        DeviceKind.HEAT_METER: 3,
        DeviceKind.WEATHER_STATION: 1,
    }
    assert all(d.submeter_of is None and registry.devices[d.id].gateway == d.gateway for d in subset)
    config = demo_savings.history_config(subset, date(2026, 8, 24), date(2026, 11, 22), seed=42)
    assert (config.start, config.days) == (date(2025, 8, 23), 456)
    assert (config.cadence.resolution_s, config.cadence.publish_interval_s) == (3600, 3600)
    assert [(i.building, i.kind, i.factor) for i in config.interventions] == [
        (b, kind, factor) for b in ("b1", "b2", "b3") for kind, factor in (("electricity", 0.85), ("heating", 0.7))
    ]


def test_the_demo_day_is_simulated_with_the_retrofit_its_history_has() -> None:
    """The savings history has every building retrofitted `REPORTING_DAYS` before the demo day; the demo day
    itself must be too, or its savings fall back to about 0 and "savings to date" drops when it is added."""
    from simulators import DistrictSimulator

    registry = Registry.load(demo_registry_path())
    day = date(2026, 11, 22)
    retrofit = demo_savings.retrofits(registry, day - timedelta(days=demo_savings.REPORTING_DAYS))
    sim = DistrictSimulator(registry, day, seed=3, inject_bad_readings=0, interventions=retrofit)
    for _ in sim.messages():  # the truth is recorded as the messages are made
        pass
    truth = sim.truth.devices
    mains = [d.id for d in registry if d.kind is DeviceKind.ELECTRICITY_METER and d.submeter_of is None]
    heat = [d.id for d in registry if d.kind is DeviceKind.HEAT_METER]
    day_key = day.isoformat()
    for device in mains:  # the load x 0.85; what the retrofit does not touch (EV charging) keeps the ratio above
        actual, without = (
            t.get("energy_import", {})[day_key] for t in (truth[device].energy, truth[device].counterfactual)
        )
        assert 0.8 < actual / without < 0.86
    for device in heat:  # space heat x 0.7, hot water as before
        actual, without = (t.get("energy", {})[day_key] for t in (truth[device].energy, truth[device].counterfactual))
        assert demo_savings.HEATING_FACTOR < actual / without < 0.8
    plain_sim = DistrictSimulator(registry, day, seed=3, inject_bad_readings=0)
    for _ in plain_sim.messages():
        pass
    plain = plain_sim.truth.devices
    assert all(not plain[d].counterfactual for d in mains + heat)

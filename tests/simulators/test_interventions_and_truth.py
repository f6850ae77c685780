"""Interventions with their counterfactual, and the truth file against what was actually published."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from devices import Registry
from simulators import Cadence, Intervention, SimConfig, load_truth
from tests.support.registries import fleet_registry
from tests.support.simulation import run

START = date(2026, 2, 2)
RETROFIT = START + timedelta(days=4)
CADENCE = Cadence(900, 3600)


def per_day(doc: dict[str, dict[str, float]], metric: str) -> np.ndarray:
    return np.array(list(doc[metric].values()))


def test_heating_retrofit_saves_its_share_of_space_heat_and_the_counterfactual_is_the_untouched_building() -> None:
    registry = fleet_registry()
    retrofit = Intervention("f-home", RETROFIT, "heating", factor=0.7)
    base, _ = run(registry, SimConfig(start=START, days=8, seed=2, cadence=CADENCE))
    sim, _ = run(registry, SimConfig(start=START, days=8, seed=2, cadence=CADENCE, interventions=(retrofit,)))
    actual = per_day(sim.truth.devices["f-hm1"].energy, "energy")
    counterfactual = per_day(sim.truth.devices["f-hm1"].counterfactual, "energy")
    untouched = per_day(base.truth.devices["f-hm1"].energy, "energy")
    np.testing.assert_allclose(counterfactual, untouched, rtol=1e-12)  # same seed, same weather, same noise
    np.testing.assert_allclose(actual[:4], counterfactual[:4], rtol=1e-12)  # before the retrofit date
    savings = 1 - actual[4:] / counterfactual[4:]
    assert np.all((savings > 0.15) & (savings < 0.3))  # 30 % of space heat; hot water is not retrofitted
    # The other building is not touched at all.
    assert sim.truth.devices["f-hm2"].energy == base.truth.devices["f-hm2"].energy
    assert "counterfactual_kwh_per_day" not in sim.truth.devices["f-hm2"].as_dict()
    assert sim.truth.interventions == [
        {"building": "f-home", "start": RETROFIT.isoformat(), "kind": "heating", "factor": 0.7}
    ]


def test_pv_added_behind_the_meter_cuts_imports_adds_exports_and_reports_from_its_date() -> None:
    registry = fleet_registry()
    summer = date(2026, 6, 1)
    pv = Intervention("f-office", summer + timedelta(days=2), "pv", kwp=80.0)
    sim, _got = run(registry, SimConfig(start=summer, days=5, seed=2, cadence=CADENCE, interventions=(pv,)))
    truth = sim.truth.devices["f-em2"]
    imports, imports_cf = per_day(truth.energy, "energy_import"), per_day(truth.counterfactual, "energy_import")
    exports = per_day(truth.energy, "energy_export")
    np.testing.assert_allclose(imports[:2], imports_cf[:2], rtol=1e-12)
    assert np.all(imports[2:] < 0.9 * imports_cf[2:])
    assert exports[:2].sum() == 0 and exports[2:].sum() > 0  # a weekend with 80 kWp on an office exports
    # The inverter of the home building was there all along; a PV retrofit with a device reports from its date.
    on_device = Intervention("f-home", summer + timedelta(days=3), "pv", kwp=20.0, device="f-pv1")
    sim2, got2 = run(registry, SimConfig(start=summer, days=5, seed=2, cadence=CADENCE, interventions=(on_device,)))
    first = min(ts for ts, _ in got2.readings("f-pv1"))
    assert first == sim2.midnights[3]
    assert per_day(sim2.truth.devices["f-pv1"].counterfactual, "energy_production").sum() == 0


def test_the_truth_file_agrees_with_the_published_messages(tmp_path: Path) -> None:
    registry: Registry = fleet_registry()
    sim, got = run(registry, SimConfig(start=START, days=2, seed=8, cadence=Cadence(300, 900), truth_points=True))
    path = tmp_path / "truth.json"
    sim.truth.write(path)
    doc = load_truth(path)
    assert doc["readings"] == sum(m.readings for m in got.messages) == doc["totals"]["expected_stored"]
    assert doc["messages"] == len(got.messages)
    for device, d in doc["devices"].items():
        readings = sorted(got.readings(device))
        assert d["readings_sent"] == len(readings) == len(doc["points"][device])
        assert (d["first_ts"], d["last_ts"]) == (readings[0][0], readings[-1][0])
        assert d["seq"] == [0, len(readings) - 1]
        assert dict(readings) == doc["points"][device]
        for metric, days in d["energy_kwh_per_day"].items():
            if metric == "session_energy":
                continue
            series = dict(got.series(device, metric))
            midnight = [series[t] for t in sim.midnights[:2]]
            first_day = next(iter(days.values()))
            assert first_day == pytest.approx(midnight[1] - midnight[0], abs=2e-4)
    n_sessions = 0
    for charger in ("f-ev1", "f-ev2"):
        sessions = doc["devices"][charger]["sessions"]
        n_sessions += len(sessions)
        booked = sum(doc["devices"][charger]["energy_kwh_per_day"]["session_energy"].values())
        in_run = sum(
            s["power_w"] * max(0, min(s["charge_end_ms"], sim.end_ms) - max(s["charge_start_ms"], sim.start_ms)) / 3.6e9
            for s in sessions
        )
        assert booked == pytest.approx(in_run, rel=1e-9, abs=1e-9)
    assert n_sessions > 0
    assert set(doc["weather"]) == {START.isoformat(), (START + timedelta(days=1)).isoformat()}
    json.dumps(doc)  # plain JSON all the way down

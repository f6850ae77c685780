"""Generator statistics within stated bounds, physical consistency, determinism and resolution independence.

Bounds come from the models' parameters (annual intensities, UA values, session statistics) and the usual
published ranges for Nordic buildings; each test says which.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import date, timedelta

import numpy as np
import pytest

from devices import DeviceKind, Registry, validate_message
from simulators import Cadence, SimConfig, Simulation
from simulators.models.heat import HOT_WATER_KWH_M2A, UA_W_M2K
from tests.support.simulation import SUMMER, WINTER, Collected, run

NOW = 1_900_000_000_000
QUARTER_HOURLY = Cadence(900, 3600)


@pytest.fixture(scope="module")
def winter(demo_registry: Registry) -> tuple[Simulation, Collected]:
    return run(demo_registry, SimConfig(start=WINTER, days=21, seed=3, cadence=QUARTER_HOURLY))


def daily(sim: Simulation, device: str, metric: str) -> np.ndarray:
    return np.array(list(sim.truth.devices[device].energy[metric].values()))


def test_every_clean_reading_passes_validation_and_the_counts_are_exact(
    winter: tuple[Simulation, Collected], demo_registry: Registry
) -> None:
    sim, got = winter
    good = bad = 0
    for m in got.messages:
        result = validate_message(m.topic, m.payload, demo_registry, now_ms=NOW)
        good += len(result.good)
        bad += result.rejected_readings
    assert bad == 0
    assert good == sim.truth.readings == sim.truth.expected_stored == 40 * 96 * 21
    assert len(got.messages) == sim.truth.messages == 40 * 24 * 21


def test_electricity_daily_totals_follow_floor_area_and_annual_intensity(winter: tuple[Simulation, Collected]) -> None:
    sim, _ = winter
    # Intensities (kWh/m2a): residential 35, education 50, commercial 90; January lighting adds 5-15 %.
    # The main meters also carry the building's EV charging; subtract it to compare the building load.
    for building, area, intensity in (("b1", 5200, 35), ("b2", 3800, 50), ("b3", 6100, 90)):
        ev = sum(daily(sim, d, "session_energy") for d in sim.truth.devices if d.startswith(f"{building}-ev"))
        load = daily(sim, f"{building}-em-main", "energy_import") - ev
        expected = area * intensity / 365
        assert 0.9 * expected < load.mean() < 1.35 * expected, building
        subs = sum(daily(sim, f"{building}-em-sub{i}", "energy_import") for i in (1, 2, 3))
        assert np.all(subs < load), building  # sub-meters are inside the main meter


def test_weekly_shape_offices_and_schools_are_quiet_at_weekends(winter: tuple[Simulation, Collected]) -> None:
    sim, _ = winter
    for building in ("b2", "b3"):
        load = daily(sim, f"{building}-em-main", "energy_import")
        weekday = [load[i] for i in range(21) if (WINTER + timedelta(days=i)).weekday() < 5]
        weekend = [load[i] for i in range(21) if (WINTER + timedelta(days=i)).weekday() >= 5]
        assert np.mean(weekday) > 1.8 * np.mean(weekend), building


def test_registers_never_go_back_and_power_matches_the_register_increase(winter: tuple[Simulation, Collected]) -> None:
    sim, got = winter
    for device in ("b1-em-main", "b2-hm-01", "b1-pv-01"):
        metric = {"em": "energy_import", "hm": "energy", "pv": "energy_production"}[device.split("-")[1]]
        series = got.series(device, metric)
        values = [v for _, v in series]
        assert all(b >= a for a, b in itertools.pairwise(values)), device
        # energy per day in the truth = register increase from midnight to midnight (0.1 Wh rounding)
        per_day = sim.truth.devices[device].energy[metric]
        midnights = [v for ts, v in series if ts in sim.midnights]
        for (a, b), truth in zip(itertools.pairwise(midnights), per_day.values(), strict=False):
            assert abs((b - a) - truth) < 2e-4, device


def test_heat_follows_degree_days(winter: tuple[Simulation, Collected]) -> None:
    sim, _ = winter
    hdd = np.array([w["heating_degree_days_17"] for w in sim.truth.weather.values()])
    heat = daily(sim, "b1-hm-01", "energy")
    slope, _ = np.polyfit(hdd, heat, 1)
    r2 = np.corrcoef(hdd, heat)[0, 1] ** 2
    ua = sim._groups[DeviceKind.HEAT_METER].model.meters[0].ua_w_k
    assert ua == pytest.approx(UA_W_M2K["residential"] * 5200, rel=0.35)
    assert r2 > 0.8  # the building lags the weather by its 12 h time constant
    assert slope == pytest.approx(ua * 24 / 1000, rel=0.15)  # kWh per degree day = UA x 24 h
    # The period's total: UA x 24 h x degree days + hot water (30 kWh/m2a), within 10 %.
    hot_water = HOT_WATER_KWH_M2A["residential"] * 5200 / 365 * len(heat)
    assert heat.sum() == pytest.approx(ua * 24 / 1000 * hdd.sum() + hot_water, rel=0.1)


def test_ev_sessions_have_realistic_counts_energies_and_ocpp_statuses(demo_registry: Registry) -> None:
    others = {k: Cadence(3600, 3600) for k in DeviceKind if k is not DeviceKind.EV_CHARGER}
    sim, got = run(demo_registry, SimConfig(start=WINTER, days=14, seed=5, cadence=Cadence(60, 900), cadences=others))
    chargers = [d for d, t in sim.truth.devices.items() if t.kind == "ev_charger"]
    sessions = {d: sim.truth.devices[d].sessions for d in chargers}
    # Configured: 0.9 sessions/day at homes (b1: 3 chargers), 1.1 per weekday / 0.15 per weekend day at
    # workplaces (5 chargers); minus arrivals turned away while occupied. Poisson bounds +-4 sigma.
    home = sum(len(sessions[d]) for d in chargers if d.startswith("b1"))
    work = sum(len(sessions[d]) for d in chargers if not d.startswith("b1"))
    assert 3 * 14 * 0.9 * 0.55 < home < 3 * 14 * 0.9 + 4 * np.sqrt(3 * 14 * 0.9)
    assert 5 * (10 * 1.1 + 4 * 0.15) * 0.55 < work < 5 * (10 * 1.1 + 4 * 0.15) + 4 * np.sqrt(5 * 11.6)
    energies = np.array([s["energy_kwh"] for ss in sessions.values() for s in ss])
    assert 5 < np.median(energies) < 13 and energies.max() <= 80
    allowed = {
        "Available": {"Available", "Preparing"},
        "Preparing": {"Preparing", "Charging", "SuspendedEV", "Finishing"},
        "Charging": {"Charging", "SuspendedEV", "Finishing", "Available"},
        "SuspendedEV": {"SuspendedEV", "Finishing", "Available"},
        "Finishing": {"Finishing", "Available"},
    }
    for d in chargers:
        readings = sorted(got.readings(d))
        for (_, a), (_, b) in itertools.pairwise(readings):
            assert b["connector_status"] in allowed[a["connector_status"]], (d, a, b)
            if a["session_id"] and a["session_id"] == b["session_id"]:
                assert b["session_energy"] >= a["session_energy"]
        # The energy the truth books per day is exactly the sessions' energy (within the run).
        booked = sum(sim.truth.devices[d].energy["session_energy"].values())
        in_run = sum(s["energy_kwh"] for s in sessions[d] if s["charge_end_ms"] <= sim.end_ms)
        assert booked >= in_run - 1e-9
        for _, values in readings:
            assert values["power"] <= 22_000
            assert (values["power"] > 0) == (values["connector_status"] == "Charging")


def test_indoor_co2_follows_occupancy_and_winter_air_is_dry(winter: tuple[Simulation, Collected]) -> None:
    _, got = winter
    readings = [(ts, v) for ts, v in got.readings("b2-bs-01")]  # a classroom in the school
    occupied = [v["co2"] for _, v in readings if v["occupancy"] >= 10]
    empty_night = [v["co2"] for ts, v in readings if v["occupancy"] == 0 and (ts // 3_600_000 + 2) % 24 in (3, 4)]
    # Steady state for ~20 pupils, 210 m3, 3 air changes/h: 420 + 1e6 x 20 x 5.2e-6 / 0.175 = ~1,010 ppm.
    assert 700 < np.median(occupied) < 1400
    assert max(empty_night) < 520
    rh = [v["relative_humidity"] for _, v in readings]
    assert 8 < np.median(rh) < 35  # Nordic winter indoor air: 15-30 %
    temps = [v["temperature"] for _, v in readings]
    assert min(temps) > 17
    assert max(temps) < 25


def test_pv_produces_in_daylight_only_and_much_more_in_summer(demo_registry: Registry) -> None:
    sim, got = run(demo_registry, SimConfig(start=SUMMER, days=7, seed=3, cadence=QUARTER_HOURLY))
    summer = daily(sim, "b1-pv-01", "energy_production")
    kwp = 0.6 * 60  # default: 60 % of the inverter's max_power_w
    assert 1.0 * kwp < summer.mean() < 7.0 * kwp  # June at 60 N: 1-7 kWh/kWp a day
    for ts, v in got.readings("b1-pv-01"):
        hour = (ts // 3_600_000 + 3) % 24  # EEST
        if hour in (0, 1, 2):
            assert v["power"] == 0.0
    winter_sim, _ = run(demo_registry, SimConfig(start=WINTER, days=7, seed=3, cadence=QUARTER_HOURLY))
    # January at 60 N: the sun stays below ~8 degrees and skies are overcast (~0.1-0.5 kWh/kWp a day).
    assert daily(winter_sim, "b1-pv-01", "energy_production").mean() < 0.12 * summer.mean()


def test_same_seed_gives_the_same_bytes_and_another_seed_other_bytes(demo_registry: Registry) -> None:
    def digest(seed: int) -> list[bytes]:
        return [m.payload for m in Simulation(demo_registry, SimConfig(start=WINTER, seed=seed)).messages()]

    assert digest(7) == digest(7)
    assert digest(7) != digest(8)


SMALL = """
[[district]]
id = "res"
timezone = "Europe/Helsinki"
  [[district.building]]
  id = "r1"
  floor_area_m2 = 900
    [[district.building.gateway]]
    id = "r1-gw"
      [[district.building.gateway.device]]
      id = "r1-pv"
      kind = "pv_inverter"
      [[district.building.gateway.device]]
      id = "r1-em"
      kind = "electricity_meter"
"""


@pytest.mark.parametrize("resolution", [1, 3600])
def test_any_resolution_from_one_second_to_one_hour_sees_the_same_weather(resolution: int) -> None:
    registry = Registry.from_toml(SMALL)
    reference, _ = run(registry, SimConfig(start=SUMMER, seed=9, cadence=Cadence(60, 900)))
    sim, got = run(registry, SimConfig(start=SUMMER, seed=9, cadence=Cadence(resolution, 3600)))
    assert sim.truth.readings == 2 * 86_400 // resolution
    assert sim.truth.weather == reference.truth.weather
    # PV is a deterministic function of the weather: its energy agrees to within the sampling error.
    pv = sum(daily(sim, "r1-pv", "energy_production"))
    assert pv == pytest.approx(
        sum(daily(reference, "r1-pv", "energy_production")), rel=0.03 if resolution > 60 else 0.002
    )
    kinds = Counter(json.loads(m.payload)["device"] for m in got.messages)
    assert kinds == {"r1-pv": 24, "r1-em": 24}


def test_a_dst_day_has_25_hours(demo_registry: Registry) -> None:
    sim, _ = run(demo_registry, SimConfig(start=date(2026, 10, 25), seed=1))  # EEST -> EET
    assert sim.truth.readings == 40 * 25 * 60

"""The factor table (every row sourced and dated) and the CO2 functions against hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from aggregation.co2 import (
    DEFAULT_TABLE,
    FactorTable,
    FactorTableError,
    avoided_emissions_kg,
    emissions_kg,
    ev_co2_avoided_kg,
    hourly_intensity,
    load_factors,
    market_based_emissions_kg,
)

NAN = np.nan


def test_every_row_has_source_year_and_status() -> None:
    table = load_factors()
    assert table.version == "2025.11.1"
    assert len(table.factors) == 38
    for factor in table.factors:
        assert factor.source.strip()
        assert 2000 <= factor.data_year <= 2025
        assert factor.status in {"published", "transcribed", "recall", "derived", "assumption"}
        assert math.isfinite(factor.value)
    assert {f.resolution for f in table.factors} == {"annual", "hourly"}
    assert {"location", "market", "per_source"} <= {f.method for f in table.factors}


def test_table_values_from_kpis_md() -> None:
    table = load_factors()
    assert table.find(carrier="electricity", zone="EU27").value == 183.0  # latest data year
    assert table.find(carrier="electricity", zone="EU27", year=2023).value == 206.0
    assert table.find(carrier="electricity", zone="EU27", year=2020).value == 281.0
    assert table.find(carrier="electricity", zone="FI").data_year == 2024
    assert table.find(carrier="electricity", zone="FI", method="market").value == 405.6
    assert table.find(carrier="natural_gas", zone="FI").value == 202.0  # zone "*" matches any zone
    assert table.find(carrier="petrol", zone="EU", method="counterfactual", quantity="ice_distance").value == 160.0
    assert table.find(carrier="electricity", zone="EU", quantity="primary_energy").value == 1.9
    assert table.per_source("direct")["coal"] == 760.0
    assert table.per_source()["wind"] == 11.0
    label = table.find(carrier="electricity", zone="FI").label()
    assert label.startswith("27 gCO2e/kWh (location, FI, 2024; EEA")


def test_lookup_errors_name_what_exists() -> None:
    table = load_factors()
    with pytest.raises(KeyError, match=r"no emission factor for electricity/XX/location.*\('AT', 'location', 2024\)"):
        table.find(carrier="electricity", zone="XX")
    with pytest.raises(KeyError, match="up to 2010"):
        table.find(carrier="electricity", zone="FI", year=2010)
    with pytest.raises(KeyError, match="basis 'marginal'"):
        table.per_source("marginal")


ROW = """
[[factor]]
id = "x"
quantity = "emission"
carrier = "electricity"
zone = "FI"
method = "location"
basis = "generation"
resolution = "annual"
data_year = 2024
value = 27.0
unit = "g/kWh"
source = "somewhere"
status = "published"
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('version = "1"\n' + ROW.replace('source = "somewhere"', 'source = " "'), "needs a source"),
        ('version = "1"\n' + ROW.replace("data_year = 2024\n", ""), r"missing \['data_year'\]"),
        ('version = "1"\n' + ROW.replace("data_year = 2024", 'data_year = "2024"'), "data_year must be a year"),
        ('version = "1"\n' + ROW.replace("value = 27.0", "value = -1.0"), "finite non-negative"),
        ('version = "1"\n' + ROW.replace('"published"', '"guess"'), "status must be one of"),
        ('version = "1"\n' + ROW + "extra = 1\n", r"unknown keys \['extra'\]"),
        ('version = "1"\n' + ROW + ROW, r"duplicate factor ids: \['x'\]"),
        (ROW, "needs a version"),
        ("version = ", "not valid TOML"),
    ],
    ids=["source", "year_missing", "year_type", "value", "status", "unknown", "duplicate", "version", "toml"],
)
def test_malformed_tables_are_refused(text: str, message: str) -> None:
    with pytest.raises(FactorTableError, match=message):
        FactorTable.from_toml(text)


def test_load_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_text('version = "9"\n' + ROW)
    table = load_factors(path)
    assert table.version == "9"
    assert load_factors() is load_factors()  # the packaged table is parsed once
    assert DEFAULT_TABLE.is_file()


def test_emissions_annual_and_hourly() -> None:
    energy = np.array([10.0, 20.0, NAN, 5.0])
    assert emissions_kg(energy, 183.0) == pytest.approx(35.0 * 0.183)
    hourly = np.array([100.0, 200.0, 300.0, NAN])
    assert emissions_kg(energy, hourly) == pytest.approx((10 * 100 + 20 * 200) / 1000)
    assert emissions_kg([], 183.0) == 0.0
    assert avoided_emissions_kg([2.0, -1.0], [500.0, 100.0]) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="one value per interval"):
        emissions_kg([1.0, 2.0], [1.0, 2.0, 3.0])


def test_market_based() -> None:
    assert market_based_emissions_kg(1000.0, 405.6) == pytest.approx(405.6)
    assert market_based_emissions_kg(1000.0, 405.6, certified_kwh=600.0) == pytest.approx(400 * 0.4056)
    assert market_based_emissions_kg(1000.0, 405.6, certified_kwh=2000.0, certified_g_per_kwh=10.0) == pytest.approx(
        10.0
    )
    with pytest.raises(ValueError, match="must not be negative"):
        market_based_emissions_kg(-1.0, 1.0)


def test_hourly_intensity_from_a_production_mix() -> None:
    factors = load_factors().per_source()
    mix = {"wind": [50.0, 0.0, 0.0, NAN], "gas": [50.0, 10.0, 0.0, 1.0], "nuclear": [0.0, 30.0, 0.0, 1.0]}
    got = hourly_intensity(mix, factors)
    assert_allclose(got, [(50 * 11 + 50 * 490) / 100, (10 * 490 + 30 * 12) / 40, NAN, NAN])
    with pytest.raises(KeyError, match=r"no factor for sources \['peat'\]"):
        hourly_intensity({"peat": [1.0]}, factors)
    with pytest.raises(ValueError, match="same hours"):
        hourly_intensity({"wind": [1.0], "gas": [1.0, 2.0]}, factors)


def test_ev_co2_avoided_matches_kpis_md() -> None:
    # kpis.md 4.2: avoided per kWh charged = (1/0.18) x 0.160 - EF_grid: FI 0.86, EU 0.71 kg/kWh.
    assert ev_co2_avoided_kg(1.0, 27.0) == pytest.approx(0.889 - 0.027, abs=1e-3)
    assert ev_co2_avoided_kg(1.0, 183.0) == pytest.approx(0.71, abs=5e-3)
    hourly = ev_co2_avoided_kg([1.0, 2.0, NAN], [0.0, 900.0, 10.0], ice_g_per_km=180.0, ev_kwh_per_km=0.2)
    assert hourly == pytest.approx((1 / 0.2 * 180 + 2 / 0.2 * 180 - 2 * 900) / 1000)
    assert ev_co2_avoided_kg(1.0, 2000.0) < 0  # a coal-heavy grid loses against the car
    with pytest.raises(ValueError, match="ev_kwh_per_km > 0"):
        ev_co2_avoided_kg(1.0, 1.0, ev_kwh_per_km=0.0)

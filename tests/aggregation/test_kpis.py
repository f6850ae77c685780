"""District KPIs (kpis.md §5) against hand-computed values and plain-loop re-statements of the formulas."""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from aggregation import kpis

NAN = np.nan
# Four quarter-hours of a small district: load L, PV generation G, EV charging (part of L), counterfactual.
LOAD = np.array([10.0, 8.0, NAN, 12.0])
PV = np.array([0.0, 10.0, 5.0, 6.0])
EV = np.array([2.0, 3.0, 1.0, 4.0])
COUNTERFACTUAL = np.array([12.0, 9.0, 9.0, 15.0])


def test_hand_computed_district() -> None:
    assert kpis.final_energy(LOAD) == 30.0  # the NaN quarter is left out
    assert kpis.final_energy(LOAD, floor_area_m2=1000.0) == 0.03
    # Intervals with both: 0, 1, 3. Savings (12 + 9 + 15 - 30) / 36.
    assert kpis.savings_percent(COUNTERFACTUAL, LOAD) == pytest.approx(100 * 6 / 36)
    # Intervals with both G and L: 0, 1, 3: ΣG = 16, ΣL = 30, Σmin = 0 + 8 + 6 = 14.
    assert kpis.self_supply_by_renewables(PV, LOAD) == pytest.approx(16 / 30)
    assert kpis.self_consumption(PV, LOAD) == pytest.approx(14 / 16)
    assert kpis.self_sufficiency(PV, LOAD) == pytest.approx(14 / 30)
    # EV share from local RES, other load = L - EV: surplus max(G - other, 0) = 0, 5, -, 0; min(EV, .) = 0, 3, -, 0
    assert kpis.ev_local_renewable_share(EV, PV, LOAD - EV) == pytest.approx(3 / 9)
    assert kpis.ev_charging_energy(EV) == 10.0


def test_self_consumption_equals_export_form() -> None:
    # kpis.md #4/#5: Σmin(G, L) / ΣG = (ΣG - ΣX) / ΣG and Σmin / ΣL = (ΣL - ΣI) / ΣL with X, I per interval.
    rng = np.random.default_rng(3)
    g, load = rng.uniform(0, 10, 96), rng.uniform(0, 10, 96)
    export, imported = np.maximum(g - load, 0), np.maximum(load - g, 0)
    assert kpis.self_consumption(g, load) == pytest.approx((g.sum() - export.sum()) / g.sum())
    assert kpis.self_sufficiency(g, load) == pytest.approx((load.sum() - imported.sum()) / load.sum())


def test_primary_energy_balance() -> None:
    imports = {"electricity": [100.0, NAN, 50.0], "district_heat": [200.0, 0.0, 0.0]}
    exports = {"electricity": [0.0, 120.0, 80.0]}
    factors = {"electricity": 1.9, "district_heat": 0.7}
    demand = 1.9 * 150 + 0.7 * 200
    assert kpis.primary_energy_demand(imports, factors) == pytest.approx(demand)
    assert kpis.primary_energy_balance(imports, exports, factors) == pytest.approx(1.9 * 200 - demand)
    assert kpis.primary_energy_balance(imports, exports, factors, {"electricity": 2.5}) == pytest.approx(500 - demand)
    with pytest.raises(KeyError):
        kpis.primary_energy_balance({"gas": [1.0]}, {}, factors)


def test_peaks() -> None:
    edges = np.arange(5) * 900_000
    assert kpis.peak_demand_kw(np.nan_to_num(LOAD), edges) == pytest.approx(48.0)
    assert kpis.peak_reduction(60.0, 48.0) == pytest.approx(0.2)
    assert math.isnan(kpis.peak_reduction(0.0, 1.0))
    assert kpis.load_factor(LOAD, edges) == pytest.approx((30 / 0.75) / 48.0)


def test_zero_denominators_are_nan() -> None:
    zeros = np.zeros(3)
    assert math.isnan(kpis.savings_percent(zeros, zeros))
    assert math.isnan(kpis.self_consumption(zeros, np.ones(3)))
    assert math.isnan(kpis.self_sufficiency(np.ones(3), zeros))
    assert math.isnan(kpis.ev_local_renewable_share(zeros, zeros, zeros))
    assert math.isnan(kpis.self_supply_by_renewables([], []))
    assert kpis.final_energy([]) == 0.0


def test_misaligned_inputs_raise() -> None:
    with pytest.raises(ValueError, match="aligned"):
        kpis.self_consumption([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="floor_area_m2 must be positive"):
        kpis.final_energy([1.0], floor_area_m2=0.0)


def test_data_completeness() -> None:
    got = kpis.data_completeness([96, 50, 100, 0], [96, 100, 96, 0])
    assert_allclose(got, [1.0, 0.5, 1.0, NAN])
    with pytest.raises(ValueError, match="must not be negative"):
        kpis.data_completeness([-1], [1])


ENERGY = st.one_of(st.floats(0.0, 1e4, allow_subnormal=False), st.just(NAN))


@settings(max_examples=200, deadline=None, database=None)
@given(
    data=st.integers(0, 40).flatmap(
        lambda n: st.tuples(*(hnp.arrays(np.float64, n, elements=ENERGY) for _ in range(3)))
    )
)
def test_property_kpis_match_plain_loops(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    g, load, ev = data
    rows = [
        (a, b, c) for a, b, c in zip(g, load, ev, strict=True) if not (math.isnan(a) or math.isnan(b) or math.isnan(c))
    ]
    pairs = [(a, b) for a, b in zip(g, load, strict=True) if not (math.isnan(a) or math.isnan(b))]

    def ratio(x: float, y: float) -> float:
        return float(x) / float(y) if y else NAN

    sum_g, sum_l = sum(a for a, _ in pairs), sum(b for _, b in pairs)
    sum_min = sum(min(a, b) for a, b in pairs)
    for got, expected in [
        (kpis.self_consumption(g, load), ratio(sum_min, sum_g)),
        (kpis.self_sufficiency(g, load), ratio(sum_min, sum_l)),
        (kpis.self_supply_by_renewables(g, load), ratio(sum_g, sum_l)),
        (kpis.savings_percent(g, load), 100 * ratio(sum_g - sum_l, sum_g)),
        (
            kpis.ev_local_renewable_share(ev, g, load),
            ratio(sum(min(c, max(a - b, 0.0)) for a, b, c in rows), sum(c for _, _, c in rows)),
        ),
    ]:
        assert_allclose(got, expected, rtol=1e-9, atol=1e-9, equal_nan=True)
    for value in (kpis.self_consumption(g, load), kpis.self_sufficiency(g, load)):
        assert math.isnan(value) or 0.0 <= value <= 1.0

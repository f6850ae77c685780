"""CalTRACK 2.0 daily: eemeter 3.2.0's numbers on its samples, kernel vs reference, DST rules, t quantile."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from aggregation import _caltrack_kernels as K
from aggregation import caltrack_reference as ref
from aggregation import savings_cli
from aggregation._caltrack_common import HourlyTemperature, MeterSeries, _t_cdf, fit_metrics, student_t_ppf
from aggregation.caltrack_daily import (
    DailyModel,
    NoModelError,
    caltrack_daily,
    daily_periods,
    fit_daily,
    model_from_row,
)
from tests.support.eemeter import DATA, cases, run_case

DAILY_CASES = cases("caltrack-daily")
H = 3600
DAY = 86_400


# ------------------------------------------------------------------------------------ against eemeter 3.2.0


def test_fixture_covers_every_daily_sample() -> None:
    assert sorted(DAILY_CASES) == [
        "il-electricity-cdd-hdd-daily",
        "il-electricity-cdd-hdd-daily-gappy",
        "il-electricity-cdd-only-daily",
        "il-gas-hdd-only-daily",
        "il-gas-intercept-only-daily",
    ]


@pytest.mark.parametrize("name", sorted(DAILY_CASES))
def test_same_numbers_as_eemeter(name: str) -> None:
    """Model type and balance points exactly; coefficients, savings, totals, CV(RMSE), FSU to 1e-6 relative."""
    theirs = DAILY_CASES[name]["eemeter"]
    ours = run_case(DAILY_CASES[name]["case"])
    assert ours["model_type"] == theirs["model_type"]
    for key, value in theirs["params"].items():
        if key.endswith("balance_point"):
            assert ours["params"][key] == value, key
        else:
            assert ours["params"][key] == pytest.approx(value, rel=1e-6), key
    assert set(ours["params"]) == set(theirs["params"])
    assert ours["baseline_intervals"] == theirs["baseline_intervals"]
    assert ours["reporting_intervals"] == theirs["reporting_intervals"]
    for key in ("metered_savings", "counterfactual_total", "observed_total", "cv_rmse", "r_squared"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-6), key
    assert ours["fsu_error_band"] == pytest.approx(theirs["fsu_error_band"], rel=1e-6)
    assert ours["nmbe"] == pytest.approx(theirs["nmbe"], abs=1e-9)  # ~1e-5: a difference of large sums
    assert ours["fsu"] == pytest.approx(theirs["fsu_error_band"] / theirs["metered_savings"], rel=1e-6)


def test_samples_recover_the_simulated_models() -> None:
    """The IL samples were simulated with balance points 60 (heating) and 65 (cooling) and a 10 % saving:
    the selected types are what each sample's name says, except the intercept-only gas meter, where a
    near-flat HDD model at 72 degF edges out the intercept (adj. R^2 0.0011 > 0), as eemeter also finds."""
    types = {name: entry["eemeter"]["model_type"] for name, entry in DAILY_CASES.items()}
    assert types == {
        "il-electricity-cdd-hdd-daily": "cdd_hdd",
        "il-electricity-cdd-hdd-daily-gappy": "cdd_hdd",
        "il-electricity-cdd-only-daily": "cdd_only",
        "il-gas-hdd-only-daily": "hdd_only",
        "il-gas-intercept-only-daily": "hdd_only",
    }
    for entry in DAILY_CASES.values():
        e = entry["eemeter"]
        assert 0.04 < e["metered_savings"] / e["counterfactual_total"] < 0.11


# ------------------------------------------------------------------------------------ kernel vs reference


def synthetic_meter(
    rng: np.random.Generator, n: int, *, kind: str, nan_fraction: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Usage per day and temperature for ``n`` days of a building of the given kind."""
    day = np.arange(n)
    td = 55 + 25 * np.sin(2 * np.pi * day / 365.0) + rng.normal(0, 6, n)
    hbp, cbp = rng.integers(45, 66), rng.integers(60, 76)
    usage = {
        "heating": 5 + 0.8 * np.maximum(hbp - td, 0),
        "cooling": 5 + 1.2 * np.maximum(td - cbp, 0),
        "both": 5 + 0.8 * np.maximum(hbp - td, 0) + 1.2 * np.maximum(td - cbp, 0),
        "flat": np.full(n, 20.0),
        "inverse": 40 - 0.5 * np.maximum(60 - td, 0),  # negative slope: must be disqualified
    }[kind] + rng.normal(0, 2.0, n)
    usage[rng.random(n) < nan_fraction] = np.nan
    td[rng.random(n) < nan_fraction] = np.nan
    return usage, td


def kernel_fit(usage: np.ndarray, td: np.ndarray, fit_cdd: bool) -> np.ndarray:
    out = np.empty(K.OUT_WIDTH)
    K.daily_grid_search(usage, td, fit_cdd, 10, 20.0, out)
    return out


def assert_same_selection(out: np.ndarray, best: ref.Candidate | None) -> None:
    model = model_from_row(out)
    if best is None:
        assert model is None
        return
    assert model is not None
    assert (model.model_type, model.heating_balance_point, model.cooling_balance_point) == (
        best.model_type,
        best.hbp,
        best.cbp,
    )
    expected = [best.coef[0]]
    got = [model.intercept]
    if best.hbp is not None:
        expected.append(best.coef[1])
        got.append(model.beta_hdd)
    if best.cbp is not None:
        expected.append(best.coef[-1])
        got.append(model.beta_cdd)
    assert_allclose(got, expected, rtol=1e-8, atol=1e-10)
    assert model.r_squared_adj == pytest.approx(best.r2_adj, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("kind", ["heating", "cooling", "both", "flat", "inverse"])
@pytest.mark.parametrize("fit_cdd", [True, False], ids=["electricity", "gas"])
@pytest.mark.parametrize(("n", "nan_fraction"), [(365, 0.0), (365, 0.2), (60, 0.1), (12, 0.0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_grid_search_matches_reference(kind: str, fit_cdd: bool, n: int, nan_fraction: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    usage, td = synthetic_meter(rng, n, kind=kind, nan_fraction=nan_fraction)
    best, candidates = ref.daily_grid_search(usage, td, fit_cdd=fit_cdd)
    assert_same_selection(kernel_fit(usage, td, fit_cdd), best)
    if n == 365 and nan_fraction == 0.0 and kind == "both" and fit_cdd:
        assert len(candidates) > 1000  # the full grid was searched (2014 when every column qualifies)


def test_inverse_slope_is_disqualified() -> None:
    usage, td = synthetic_meter(np.random.default_rng(3), 365, kind="inverse")
    out = kernel_fit(usage, td, True)
    model = model_from_row(out)
    assert model is not None
    assert model.model_type in {"intercept_only", "cdd_only"}  # never a negative heating slope
    assert not (model.beta_hdd < 0)


@pytest.mark.parametrize(
    ("usage", "td", "expected"),
    [
        ([], [], None),  # empty
        ([np.nan] * 5, [50.0] * 5, None),  # all missing
        ([3.0], [40.0], "intercept_only"),  # one day: only the intercept can be fitted
        ([-1.0, -2.0, -3.0], [40.0, 50.0, 60.0], None),  # negative mean: intercept-only disqualified too
        ([5.0] * 30, [40.0] * 30, "intercept_only"),  # constant HDD columns are collinear with the intercept
    ],
    ids=["empty", "all_nan", "single", "negative", "constant_temperature"],
)
def test_edge_inputs(usage: list[float], td: list[float], expected: str | None) -> None:
    u = np.asarray(usage, dtype=np.float64)
    t = np.asarray(td, dtype=np.float64)
    out = kernel_fit(u, t, True)
    model = model_from_row(out)
    assert (None if model is None else model.model_type) == expected
    best, _ = ref.daily_grid_search(u, t, fit_cdd=True)
    assert (None if best is None else best.model_type) == expected
    assert out[K.OUT_N] == np.count_nonzero(np.isfinite(u) & np.isfinite(t))


def test_exact_heating_model_is_recovered() -> None:
    """Noise-free heating load with balance point 58: slope, intercept and balance point come back exactly."""
    td = np.linspace(10.0, 95.0, 400) + 0.37
    usage = 12.0 + 1.5 * np.maximum(58.0 - td, 0.0) + np.sin(np.arange(400)) * 1e-3  # tiny noise breaks ties
    model = model_from_row(kernel_fit(usage, td, False))
    assert model is not None
    assert (model.model_type, model.heating_balance_point) == ("hdd_only", 58)
    assert model.beta_hdd == pytest.approx(1.5, rel=1e-4)
    assert model.intercept == pytest.approx(12.0, rel=1e-4)


def test_many_meters_kernel_matches_single() -> None:
    rng = np.random.default_rng(7)
    meters = [synthetic_meter(rng, 365, kind=k, nan_fraction=0.05) for k in ["heating", "cooling", "both", "flat"]]
    usage = np.stack([m[0] for m in meters])
    td = np.stack([m[1] for m in meters])
    out = np.empty((4, K.OUT_WIDTH))
    K.daily_grid_search_many(usage, td, True, 10, 20.0, out)
    for m in range(4):
        assert_allclose(out[m], kernel_fit(usage[m], td[m], True), rtol=0, atol=0, equal_nan=True)


# ------------------------------------------------------------------------------------ temperature of a day


@pytest.mark.parametrize("seed", range(5))
def test_temperature_features_match_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    temps = rng.normal(50, 20, 2000)
    temps[rng.random(2000) < 0.25] = np.nan
    temps[300:330] = np.nan  # a long hole
    lengths = rng.choice([0, 1, 12, 13, 23, 24, 25], size=150)
    first = np.cumsum(np.concatenate([[-5], lengths[:-1]])).astype(np.int64)  # starts before the grid too
    end = first + lengths
    end[-1] = 2010  # past the grid's end
    td = np.empty(first.size)
    dd_days = np.empty(first.size)
    K.daily_temperature_features(first, end, temps, td, dd_days)
    for i in range(first.size):
        hours = temps[max(first[i], 0) : max(min(end[i], temps.size), 0)]
        exp_td, exp_days = ref.daily_temperature(list(hours))
        assert_allclose([td[i], dd_days[i]], [exp_td, exp_days], rtol=1e-12, equal_nan=True, err_msg=f"period {i}")


def test_temperature_rules_by_hand() -> None:
    nan = math.nan
    cases = {
        "12 hours: too short": ([1.0] * 12, (nan, 1.0)),
        "13 hours": ([1.0] * 12 + [14.0], (2.0, 1.0)),
        "24 hours, 1 present": ([nan] * 23 + [7.0], (7.0, 1.0)),  # eemeter counts the slots, not the values
        "24 hours, none": ([nan] * 24, (nan, 1.0)),
        "23 hours": ([float(i) for i in range(23)], (11.0, 1.0)),  # mean of 23, not rescaled
        "25 hours": ([0.0] * 24 + [100.0], (0.0, 2.0)),  # first 24 only; degree days x2 in prediction
        "25 hours, 22 present": ([nan] * 3 + [1.0] * 22, (nan, 2.0)),  # below 90 % of 25
        "25 hours, 23 present": ([nan] * 2 + [1.0] * 23, (1.0, 2.0)),
    }
    for name, (hours, expected) in cases.items():
        assert_allclose(ref.daily_temperature(hours), expected, equal_nan=True, err_msg=name)
        a = np.array([0], dtype=np.int64)
        b = np.array([len(hours)], dtype=np.int64)
        td = np.empty(1)
        dd = np.empty(1)
        K.daily_temperature_features(a, b, np.asarray(hours, dtype=np.float64), td, dd)
        assert_allclose([td[0], dd[0]], expected, equal_nan=True, err_msg=name)


# ------------------------------------------------------------------------------------ daylight saving, periods


def dst_fixture() -> tuple[MeterSeries, HourlyTemperature]:
    """Five local days around a 25-hour day (offset -05:00 -> -06:00 on day 2) then a 23-hour day."""
    starts = np.array([0, 24 * H, 48 * H, 73 * H, 96 * H], dtype=np.int64)  # day 2 lasts 25 h, day 3 23 h
    offsets = np.array([-5 * H, -5 * H, -6 * H, -6 * H, -5 * H], dtype=np.int64)
    usage = MeterSeries(starts, offsets, np.array([24.0, 24.0, 25.0, 23.0, 0.0]))
    temps = np.full(130, 50.0)
    temps[48:72] = 40.0  # first 24 hours of the 25-hour day
    temps[72] = 90.0  # its 25th hour: ignored for degree days
    temps[73:96] = 30.0  # the 23-hour day
    return usage, HourlyTemperature(0, temps)


def test_daylight_saving_days_as_eemeter() -> None:
    usage, temps = dst_fixture()
    p = daily_periods(usage, temps, 0, 120 * H, "electricity")
    assert_allclose(p.days, [1.0, 1.0, 25 / 24, 23 / 24, 1.0])
    assert_allclose(p.usage_per_day[:4], [24.0, 24.0, 24.0, 24.0])  # value / (hours / 24)
    assert np.isnan(p.observed[4])  # electricity zero = missing
    assert_allclose(p.td, [50.0, 50.0, 40.0, 30.0, 50.0])
    assert_allclose(p.dd_days, [1.0, 1.0, 2.0, 1.0, 1.0])
    model = DailyModel("hdd_only", intercept=2.0, beta_hdd=0.5, heating_balance_point=60)
    base, heating, cooling = model.counterfactual(p)
    assert_allclose(base, 2.0 * p.days)  # intercept x hours/24
    assert_allclose(heating, [5.0, 5.0, 0.5 * 20 * 2, 0.5 * 30, 5.0])  # 25-hour day counts twice
    assert_allclose(cooling, 0.0)
    assert_allclose(model.fitted_totals(p), (2.0 + 0.5 * np.maximum(60 - p.td, 0)) * p.days)
    gas = daily_periods(usage, temps, 0, 120 * H, "gas")
    assert gas.observed[4] == 0.0  # gas zeros are real


def test_period_bounds_and_gaps() -> None:
    """Half-open periods; the last row runs to END; a gap of more than 25 hours leaves the row 24 hours."""
    starts = np.array([0, DAY, 2 * DAY, 5 * DAY, 6 * DAY], dtype=np.int64)
    usage = MeterSeries(starts, np.zeros(5, dtype=np.int64), np.ones(5))
    temps = HourlyTemperature(0, np.full(24 * 8, 50.0))
    p = daily_periods(usage, temps, DAY, 6 * DAY, "gas")
    assert_allclose(p.start_s, [DAY, 2 * DAY, 5 * DAY])
    assert_allclose(p.end_s, [2 * DAY, 3 * DAY, 6 * DAY])  # 2*DAY's row is capped at 24 h, not 3 days
    q = daily_periods(usage, temps, 0, 5 * DAY + 12 * H, "gas")
    assert q.end_s[-1] == 5 * DAY + 12 * H
    assert q.days[-1] == 0.5
    assert np.isnan(q.td[-1])  # 12 hours of temperature are not a day: more than 12 are needed


def test_no_model_raises() -> None:
    usage, temps = dst_fixture()
    with pytest.raises(NoModelError, match="no CalTRACK daily model"):
        caltrack_daily(
            MeterSeries(usage.start_s, usage.offset_s, np.full(5, np.nan)), temps, (0, 120 * H), (0, 120 * H), "gas"
        )


def test_fit_daily_on_sample_periods_matches_reference() -> None:
    """The whole baseline of the cdd-hdd sample through the reference gives the kernel's (and eemeter's) model."""
    args = savings_cli.parse(
        [
            "--usage", str(DATA / "il-electricity-cdd-hdd-daily.csv"),
            "--temperature", str(DATA / "il-tempF.csv.gz"),
            "--baseline", "2015-12-26T00:00:00-06:00", "2016-12-26T00:00:00-06:00",
            "--reporting", "2017-01-04T00:00:00-06:00", "2018-01-04T00:00:00-06:00",
            "--method", "caltrack-daily", "--fuel", "electricity",
        ]
    )  # fmt: skip
    rows = savings_cli.read_series(args.usage)
    usage = MeterSeries(rows.start_s, rows.offset_s, rows.value)
    temps = savings_cli.hourly_temperature(savings_cli.read_series(args.temperature), "F")
    p = daily_periods(usage, temps, *savings_cli._period(args.baseline, usage, "--baseline"), "electricity")
    model = fit_daily(p, "electricity")
    best, candidates = ref.daily_grid_search(p.usage_per_day, p.td, fit_cdd=True)
    assert best is not None
    assert model is not None
    assert (model.heating_balance_point, model.cooling_balance_point) == (best.hbp, best.cbp) == (53, 67)
    assert model.r_squared_adj == pytest.approx(best.r2_adj, rel=1e-12)
    assert 1000 < len(candidates) <= 2014  # columns at extreme balance points fail the degree-day minimums


# ------------------------------------------------------------------------------------ metrics, t quantile


SCIPY_T_PPF = {  # scipy.stats.t.ppf(p, df), scipy 1.11.2
    (0.95, 1): 6.313751514800932,
    (0.95, 2): 2.919985580355516,
    (0.95, 3): 2.3533634348018264,
    (0.95, 5): 2.015048372669157,
    (0.95, 10): 1.8124611228107335,
    (0.95, 30): 1.6972608943617378,
    (0.95, 100): 1.66023432606575,
    (0.95, 364): 1.6490505451718542,
    (0.95, 365): 1.6490390173681255,
    (0.95, 8000): 1.6450441202875103,
    (0.95, 2.5): 2.5582186141360017,
    (0.975, 1): 12.706204736432095,
    (0.975, 10): 2.2281388519649385,
    (0.975, 1000): 1.9623390808264074,
}


@pytest.mark.parametrize(("p", "df"), list(SCIPY_T_PPF))
def test_student_t_ppf_matches_scipy(p: float, df: float) -> None:
    # scipy's own quantile is only good to about 5e-9 (boost's inverse): at df=30 scipy's t.cdf of scipy's
    # t.ppf(0.95) is 0.95 + 7.4e-10, and at df=1 the exact tan(0.45 pi) is 6.313751514675041, not ...800932.
    assert student_t_ppf(p, df) == pytest.approx(SCIPY_T_PPF[(p, df)], rel=1e-8)
    assert student_t_ppf(1 - p, df) == pytest.approx(-SCIPY_T_PPF[(p, df)], rel=1e-8)
    assert _t_cdf(student_t_ppf(p, df), df) == pytest.approx(p, abs=1e-13)


def test_student_t_ppf_closed_forms() -> None:
    assert student_t_ppf(0.95, 1) == pytest.approx(math.tan(0.45 * math.pi), rel=1e-13)  # Cauchy
    assert student_t_ppf(0.95, 2) == pytest.approx(0.9 / math.sqrt(2 * 0.95 * 0.05), rel=1e-13)


def test_student_t_ppf_undefined() -> None:
    assert math.isnan(student_t_ppf(0.95, 0))
    assert math.isnan(student_t_ppf(1.0, 10))


def test_fit_metrics_by_hand() -> None:
    observed = np.array([10.0, 12.0, np.nan, 8.0, 10.0])
    predicted = np.array([11.0, 11.0, 5.0, 9.0, np.nan])
    m = fit_metrics(observed, predicted, 1)
    resid = np.array([1.0, -1.0, 1.0])  # predicted - observed on the 3 rows with both
    assert m.n == 3
    assert m.observed_mean == pytest.approx(10.0)
    assert m.rmse_adj == pytest.approx(math.sqrt(3.0 / 2.0))
    assert m.cv_rmse == pytest.approx(math.sqrt(1.5) / 10.0)
    assert m.nmbe == pytest.approx(1.0 / 30.0)
    assert m.autocorr_resid == pytest.approx(float(np.corrcoef(resid[1:], resid[:-1])[0, 1]))
    assert m.observed_variance == pytest.approx(np.var([10.0, 12.0, 8.0]))

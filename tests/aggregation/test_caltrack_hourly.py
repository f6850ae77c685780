"""CalTRACK 2.0 hourly: eemeter 3.2.0's numbers on its samples, kernel vs dense reference, calendar, hours."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from aggregation import _caltrack_kernels as K
from aggregation import caltrack_reference as ref
from aggregation._caltrack_common import HourlyTemperature, MeterSeries
from aggregation.caltrack_hourly import SEGMENT_NAMES, fit_hourly, hourly_period, local_calendar
from tests.support.eemeter import cases, run_case

HOURLY_CASES = cases("caltrack-hourly")
H = 3600


def test_fixture_covers_every_hourly_sample() -> None:
    assert sorted(HOURLY_CASES) == [
        "il-electricity-cdd-hdd-hourly",
        "il-electricity-cdd-only-hourly",
        "il-gas-hdd-only-hourly",
        "il-gas-intercept-only-hourly",
    ]


@pytest.mark.parametrize("name", sorted(HOURLY_CASES))
def test_same_numbers_as_eemeter(name: str) -> None:
    """The issue asks for 0.1 %; the port agrees to about 1e-12, so 1e-6 is asserted."""
    theirs = HOURLY_CASES[name]["eemeter"]
    ours = run_case(HOURLY_CASES[name]["case"])
    assert ours["params"] == theirs["params"]  # occupancy of every hour of week, kept bins, per segment
    assert ours["baseline_intervals"] == theirs["baseline_intervals"]
    assert ours["reporting_intervals"] == theirs["reporting_intervals"]
    for key in ("metered_savings", "counterfactual_total", "observed_total", "cv_rmse", "nmbe", "r_squared"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-6), key
    assert ours["fsu"] is None
    assert theirs["fsu_error_band"] is None  # eemeter 3.2.0 has no FSU for hourly models


def synthetic_hours(
    rng: np.random.Generator, n_days: int, *, nan_fraction: float = 0.0, start_month: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An office-like meter: busy weekday daytime, heating below 50 degF and cooling above 68 degF."""
    n = 24 * n_days
    day = np.arange(n) // 24
    hour = np.arange(n) % 24
    how = ((day % 7) * 24 + hour).astype(np.int64)
    month = ((start_month - 1 + (day * 12) // 365) % 12 + 1).astype(np.int64)
    temp = 55 - 25 * np.cos(2 * np.pi * (day + 30 * (start_month - 1)) / 365) + 8 * np.sin(2 * np.pi * hour / 24)
    temp += rng.normal(0, 4, n)
    busy = (how < 120) & (hour >= 8) & (hour < 18)
    usage = 1 + 3 * busy + 0.08 * np.maximum(50 - temp, 0) + 0.12 * np.maximum(temp - 68, 0) * (1 + busy)
    usage += rng.normal(0, 0.3, n)
    usage[rng.random(n) < nan_fraction] = np.nan
    return usage, temp, how, month


def fit_kernel(usage: np.ndarray, temp: np.ndarray, how: np.ndarray, month: np.ndarray) -> tuple[Any, Any, Any]:
    occupied = np.zeros((12, 168), dtype=np.bool_)
    keep = np.zeros((12, 2, 6), dtype=np.bool_)
    coef = np.empty((12, K.N_COEF))
    K.hourly_fit(usage, temp, how, month, occupied, keep, coef)
    return occupied, keep, coef


@pytest.mark.parametrize(
    ("n_days", "nan_fraction", "start_month"),
    [(365, 0.0, 1), (366, 0.1, 7), (75, 0.05, 3)],
    ids=["year", "year_nan_laced", "ten_weeks_most_segments_empty"],
)
def test_hourly_fit_matches_dense_reference(n_days: int, nan_fraction: float, start_month: int) -> None:
    usage, temp, how, month = synthetic_hours(np.random.default_rng(n_days), n_days, nan_fraction=nan_fraction,
                                              start_month=start_month)  # fmt: skip
    occupied, keep, coef = fit_kernel(usage, temp, how, month)
    ref_occ, ref_bins, ref_coefs = ref.hourly_fit(usage, temp, how, month)
    assert_array_equal(occupied, ref_occ)
    edges = np.asarray(K.DEFAULT_BINS)
    for s in range(12):
        assert [list(edges[keep[s, 0]]), list(edges[keep[s, 1]])] == [list(map(float, e)) for e in ref_bins[s]]
        how_coef, occ_coef, unocc_coef = ref_coefs[s]
        n_o = occ_coef.size
        expected = np.concatenate([how_coef, occ_coef, unocc_coef])
        assert_allclose(
            coef[s, : expected.size], expected, rtol=1e-7, atol=1e-9, equal_nan=True, err_msg=SEGMENT_NAMES[s]
        )
        assert np.isnan(coef[s, 168 + n_o + unocc_coef.size :]).all()
    if n_days == 75:
        assert np.isnan(coef).all(axis=1).sum() == 7  # data in Mar-May: segments Feb..Jun only, 7 without model


def test_all_hours_occupied_gives_zero_unoccupied_slopes() -> None:
    """When no hour is unoccupied the unoccupied-bin columns are all zero: pinv gives them 0, as statsmodels."""
    rng = np.random.default_rng(5)
    usage, temp, how, month = synthetic_hours(rng, 365)
    usage = np.where(np.arange(usage.size) % 7 == 0, usage - 50.0, usage + 0.0)  # a few very low hours
    occupied, keep, coef = fit_kernel(usage, temp, how, month)
    ref_occ, _, ref_coefs = ref.hourly_fit(usage, temp, how, month)
    assert_array_equal(occupied, ref_occ)
    for s in range(12):
        if occupied[s].all():
            n_o = int(keep[s, 0].sum()) + 1
            assert_allclose(coef[s, 168 + n_o :][~np.isnan(coef[s, 168 + n_o :])], 0.0, atol=1e-12)
        assert_allclose(coef[s, :168], ref_coefs[s][0], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("rank", [1, 3, 7, 14])
def test_sym_pinv_solve_matches_numpy_pinv(rank: int) -> None:
    rng = np.random.default_rng(rank)
    x = rng.normal(size=(40, 14))
    x[:, rank:] = 0.0  # zero columns, as bins without rows
    a = x.T @ x
    b = x.T @ rng.normal(size=40)
    out = np.empty(14)
    K.sym_pinv_solve(a, b, out)
    assert_allclose(out, np.linalg.pinv(a) @ b, rtol=1e-9, atol=1e-12)


def test_bin_features_sum_to_temperature() -> None:
    edges = np.array([30.0, 45.0, 55.0, 0, 0, 0])
    out = np.empty(4)
    for t in [-10.0, 30.0, 31.0, 50.0, 55.0, 99.0]:
        K.bin_features(t, edges, 3, out)
        assert_allclose(out, ref.bin_features(np.array([t]), [30.0, 45.0, 55.0])[0])
        assert out.sum() == pytest.approx(t)


def test_local_calendar_follows_each_rows_offset() -> None:
    stamps = {  # UTC epoch s, offset s -> (hour of week, month)
        (1704067200, 0): (0, 1),  # 2024-01-01 00:00 UTC, a Monday
        (1478412000, -5 * H): (145, 11),  # 2016-11-06 01:00 CDT, Sunday
        (1478415600, -6 * H): (145, 11),  # 2016-11-06 01:00 CST: the repeated hour, same hour of week
        (1457856000, -6 * H): (146, 3),  # 2016-03-13 02:00 ... is 01:00 CST + 1 h = 03:00 CDT at -5 h
        (1483250400, -6 * H): (144, 1),  # 2017-01-01 00:00 CST, Sunday
    }
    start = np.array([k[0] for k in stamps], dtype=np.int64)
    offset = np.array([k[1] for k in stamps], dtype=np.int64)
    how, month = local_calendar(start, offset)
    assert list(zip(how.tolist(), month.tolist(), strict=True)) == list(stamps.values())


def test_hours_from_rows() -> None:
    """Finer rows are summed into hours; electricity zeros and empty rows are missing; a missing row too."""
    starts = np.array([0, 900, 1800, 2700, H, H + 1800, 3 * H], dtype=np.int64)
    values = np.array([1.0, 2.0, 0.0, np.nan, 5.0, 0.0, 7.0])
    usage = MeterSeries(starts, np.zeros(7, dtype=np.int64), values)
    temps = HourlyTemperature(0, np.array([40.0, 41.0, 42.0, 43.0]))
    p = hourly_period(usage, temps, 0, 4 * H, "electricity")
    assert_allclose(p.observed, [3.0, 5.0, np.nan, 7.0])
    assert_allclose(p.temp, [40.0, 41.0, 42.0, 43.0])
    g = hourly_period(usage, temps, 0, 4 * H, "gas")
    assert_allclose(g.observed, [3.0, 5.0, np.nan, 7.0])  # zeros add nothing, but count as data for gas
    only_zero = MeterSeries(np.array([0], dtype=np.int64), np.zeros(1, dtype=np.int64), np.array([0.0]))
    assert hourly_period(only_zero, temps, 0, H, "gas").observed[0] == 0.0
    assert np.isnan(hourly_period(only_zero, temps, 0, H, "electricity").observed[0])


def test_fit_hourly_wrapper_predicts_nan_without_temperature() -> None:
    usage, temp, _, _ = synthetic_hours(np.random.default_rng(2), 365)
    starts = np.arange(usage.size, dtype=np.int64) * H
    series = MeterSeries(starts, np.zeros(usage.size, dtype=np.int64), usage)
    grid = temp.copy()
    grid[100] = np.nan
    p = hourly_period(series, HourlyTemperature(0, grid), 0, usage.size * H, "gas")
    model = fit_hourly(p)
    pred = model.predict(p)
    assert np.isnan(pred[100])
    assert np.isfinite(np.delete(pred, 100)).all()
    assert abs(np.nanmean(pred - usage)) < 0.01  # in-sample WLS: unbiased on average

"""Bucket edges from an IANA zone (DST-correct local days and hours) and resampling into them with coverage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from aggregation import _bucket_kernels, interval_energy, interval_energy_grouped, reference
from aggregation.resample import bin_edges, resample_energy, resample_interval_energy, resample_mean

H = 3_600_000
NAN = np.nan


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


# ---------------------------------------------------------------------------------------------- edges


def test_local_days_around_both_dst_changes_in_helsinki() -> None:
    edges = bin_edges(ms("2024-03-30T12:00+02:00"), ms("2024-04-01T12:00+03:00"), "1d", "Europe/Helsinki")
    assert_array_equal(
        edges,
        [ms("2024-03-30T00:00+02:00"), ms("2024-03-31T00:00+02:00"), ms("2024-04-01T00:00+03:00"),
         ms("2024-04-02T00:00+03:00")],
    )  # fmt: skip
    assert_array_equal(np.diff(edges) / H, [24, 23, 24])
    autumn = bin_edges(ms("2024-10-27T00:00+03:00"), ms("2024-10-27T23:00+02:00"), "1d", "Europe/Helsinki")
    assert_array_equal(np.diff(autumn) / H, [25])


def test_hours_on_a_23_and_a_25_hour_day() -> None:
    spring = bin_edges(ms("2024-03-31T00:00+02:00"), ms("2024-04-01T00:00+03:00"), "1h", "Europe/Helsinki")
    assert spring.shape[0] - 1 == 23
    autumn = bin_edges(ms("2024-10-27T00:00+03:00"), ms("2024-10-28T00:00+02:00"), "1h", "Europe/Helsinki")
    assert autumn.shape[0] - 1 == 25
    assert (np.diff(autumn) == H).all()
    quarters = bin_edges(ms("2024-10-27T00:00+03:00"), ms("2024-10-28T00:00+02:00"), "15min", "Europe/Helsinki")
    assert quarters.shape[0] - 1 == 100


def test_bin_edges_midnight_dst() -> None:
    # America/Santiago: 2024-09-08 has no 00:00 (clocks jump from 00:00 -04 to 01:00 -03); the day starts then.
    edges = bin_edges(ms("2024-09-07T12:00-04:00"), ms("2024-09-08T12:00-03:00"), "1d", "America/Santiago")
    assert_array_equal(
        edges, [ms("2024-09-07T00:00-04:00"), ms("2024-09-08T01:00-03:00"), ms("2024-09-09T00:00-03:00")]
    )
    hours = bin_edges(ms("2024-09-08T02:00-03:00"), ms("2024-09-08T03:00-03:00"), "1h", "America/Santiago")
    assert_array_equal(hours, [ms("2024-09-08T02:00-03:00"), ms("2024-09-08T03:00-03:00")])


def test_half_hour_zone_hours_follow_the_local_clock() -> None:
    edges = bin_edges(ms("2024-01-01T10:10+05:30"), ms("2024-01-01T12:00+05:30"), "1h", "Asia/Kolkata")
    assert_array_equal(
        edges, [ms("2024-01-01T10:00+05:30"), ms("2024-01-01T11:00+05:30"), ms("2024-01-01T12:00+05:30")]
    )


def test_clock_change_that_is_not_whole_buckets_raises() -> None:
    with pytest.raises(ValueError, match=r"Australia/Lord_Howe: the local day 2024-04-07 lasts 24.5 h"):
        bin_edges(ms("2024-04-06T12:00+11:00"), ms("2024-04-08T12:00+10:30"), "1h", "Australia/Lord_Howe")
    half_hours = bin_edges(ms("2024-04-06T12:00+11:00"), ms("2024-04-08T12:00+10:30"), "30min", "Australia/Lord_Howe")
    assert half_hours.shape[0] > 2


def test_edges_at_exact_boundaries_and_empty_span() -> None:
    assert_array_equal(bin_edges(0, H, "1h"), [0, H])
    assert_array_equal(bin_edges(0, 0, "1h"), [0, H])  # one bucket even for an empty span
    assert_array_equal(bin_edges(H - 1, H + 1, "1h"), [0, H, 2 * H])
    with pytest.raises(ValueError, match="freq must be one of"):
        bin_edges(0, 1, "2h")
    with pytest.raises(ValueError, match="must not be before"):
        bin_edges(5, 4, "1h")


@pytest.mark.parametrize("tz", ["UTC", "Europe/Helsinki", "America/New_York", "Asia/Kolkata", "Australia/Sydney"])
@pytest.mark.parametrize("freq", ["15min", "1h", "1d"])
def test_edges_match_pandas(tz: str, freq: str) -> None:
    rng = np.random.default_rng(abs(hash((tz, freq))) % 2**32)
    for _ in range(40):
        start = int(rng.integers(ms("2023-01-01T00:00+00:00"), ms("2025-12-01T00:00+00:00")))
        end = start + int(rng.integers(0, 40 * 24 * H if freq == "1d" else 3 * 24 * H))
        assert_array_equal(bin_edges(start, end, freq, tz), reference.bin_edges(start, end, freq, tz))


# ---------------------------------------------------------------------------------------------- spreading


def test_register_over_a_dst_day_resampled_to_local_days_and_hours() -> None:
    # Hourly readings of a 1 kW load from 2024-03-30 00:00 to 2024-04-01 00:00 local: the 23-hour day has 23 kWh.
    edges = bin_edges(ms("2024-03-30T00:00+02:00"), ms("2024-03-31T23:00+03:00"), "1d", "Europe/Helsinki")
    ts = np.arange(edges[0], edges[-1] + 1, H)
    register = 100.0 + np.arange(ts.shape[0], dtype=np.float64)
    result = interval_energy(ts, register, max_power_w=1500.0)
    daily = resample_interval_energy(ts, result, edges)
    assert_array_equal(daily.values, [24.0, 23.0])
    assert_array_equal(daily.coverage, [1.0, 1.0])


def test_coverage_with_a_gap_and_a_glitch() -> None:
    # Readings every 15 min; 00:30 is missing (00:15-00:45 still measured: the interval spans the gap), and the
    # register is unknown from 01:00 to 01:30 because the 01:30 reading is a reset whose energy is implausible.
    ts = np.array([0, 15, 45, 60, 90, 105, 120]) * 60_000
    register = np.array([10.0, 10.25, 10.75, 11.0, 0.75, 1.0, 1.25])
    result = interval_energy(ts, register, max_power_w=1000.0)
    assert_array_equal(result.events, [0, 0, 0, 0, 2, 0, 0])
    hourly = resample_interval_energy(ts, result, [0, H, 2 * H])
    assert_allclose(hourly.values, [1.0, 0.5])
    assert_allclose(hourly.coverage, [1.0, 0.5])


def test_spread_inside_one_bucket_is_exact() -> None:
    got = resample_energy([10, 20], [20, 30], [0.1, 0.7], [0, 100])
    assert got.values[0] == 0.1 + 0.7
    assert got.coverage[0] == 0.2


def test_spread_skips_nan_and_empty_intervals() -> None:
    got = resample_energy([0, 50, 60], [50, 50, 100], [NAN, 3.0, 2.0], [0, 50, 100])
    assert_array_equal(got.values, [NAN, 2.0])
    assert_array_equal(got.coverage, [0.0, 0.8])


def test_spread_clips_to_the_edges() -> None:
    # 4 kWh over [0, 40): the edges [10, 20, 30] keep 1 kWh each; the part outside is not counted anywhere.
    got = resample_energy([0, 50], [40, 60], [4.0, 9.0], [10, 20, 30])
    assert_array_equal(got.values, [1.0, 1.0])
    assert_array_equal(got.coverage, [1.0, 1.0])


def test_grouped_resample_matches_series_by_series() -> None:
    labels = np.array([2, 2, 2, 2, 2, 3, 3, 3, 3])  # labels 0 and 1 have no readings: empty rows
    ts = np.array([0, 20, 40, 60, 80, 10, 30, 50, 70]) * 60_000
    register = np.array([1.0, 1.5, NAN, 2.5, 3.0, 7.0, 7.1, 7.3, 7.6])
    result = interval_energy_grouped(labels, ts, register)
    got = resample_interval_energy(ts, result, [0, H, 2 * H], labels=labels)
    assert got.values.shape == (4, 2)
    assert_array_equal(got.values[:2], NAN)
    assert_array_equal(got.coverage[:2], 0.0)
    for label in (2, 3):
        mine = labels == label
        one = resample_interval_energy(ts[mine], interval_energy(ts[mine], register[mine]), [0, H, 2 * H])
        assert_allclose(got.values[label], one.values)
        assert_allclose(got.coverage[label], one.coverage)
    assert_allclose(got.values[2], [1.5, 0.5])  # 1.0 -> 2.5 over 00:00-01:00, 2.5 -> 3.0 over 01:00-01:20


def test_resample_mean_holds_values_up_to_the_gap() -> None:
    # 10 W from 00:00, 20 W from 00:30 held until 00:50 (max gap 20 min), then nothing until 01:00.
    got = resample_mean([0, 30 * 60_000], [10.0, 20.0], [0, H], max_gap_ms=40 * 60_000)
    assert_allclose(got.values, [(10.0 * 30 + 20.0 * 30) / 60])
    got = resample_mean([0, 30 * 60_000], [10.0, 20.0], [0, H], max_gap_ms=20 * 60_000)
    assert_allclose(got.values, [(10.0 * 20 + 20.0 * 20) / 40])
    assert_allclose(got.coverage, [40 / 60])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: resample_energy([0, 5], [10, 20], [1.0, 1.0], [0, 100]), "interval 1 starts before 0 ends"),
        (lambda: resample_energy([10], [5], [1.0], [0, 100]), r"interval 0 ends before it starts: 5 < 10"),
        (lambda: resample_energy([0], [5], [1.0, 2.0], [0, 100]), "same length"),
        (lambda: resample_energy([0], [5], [1.0], [0]), "at least 2 values"),
        (lambda: resample_energy([0], [5], [1.0], [0, 10, 10]), "strictly increasing"),
        (lambda: resample_energy([0], [5], [1.0], [0, 10], labels=[0, 0]), "one entry per interval"),
        (lambda: resample_energy([0], [5], [1.0], [0, 10], labels=[3], n_series=2), "below n_series|below n_labels"),
        (lambda: resample_mean([0, 0], [1.0, 1.0], [0, 10], max_gap_ms=5), "strictly increasing within each"),
        (lambda: resample_mean([0], [1.0], [0, 10], max_gap_ms=0), "max_gap_ms must be positive"),
    ],
    ids=["overlap", "backwards", "length", "one_edge", "edges_repeat", "labels_length", "n_series", "mean_ts", "gap"],
)
def test_resample_validation(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_overlap_check_ignores_series_boundaries() -> None:
    got = resample_energy([0, 0], [10, 10], [1.0, 2.0], [0, 10], labels=[0, 1])
    assert_array_equal(got.values, [[1.0], [2.0]])


@st.composite
def interval_series(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(0, 30))
    lengths = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 500)))
    gaps = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 300)))
    end = np.cumsum(lengths + gaps)
    values = draw(hnp.arrays(np.float64, n, elements=st.one_of(st.floats(0, 1e6), st.just(NAN))))
    cuts = draw(hnp.arrays(np.int64, st.integers(2, 12), elements=st.integers(-100, 16_000), unique=True))
    return end - lengths, end, values, np.sort(cuts)


@settings(max_examples=200, deadline=None, database=None)
@given(series=interval_series())
def test_property_spread_matches_reference_and_conserves(series: tuple[np.ndarray, ...]) -> None:
    start, end, values, edges = series
    got = resample_energy(start, end, values, edges)
    ref_values, ref_coverage = reference.resample_energy(start, end, values, edges)
    assert_allclose(got.values, ref_values, rtol=1e-12, atol=1e-9, equal_nan=True)
    assert_allclose(got.coverage, ref_coverage, rtol=1e-12, atol=1e-15)
    assert ((got.coverage >= 0) & (got.coverage <= 1)).all()
    inside = (start >= edges[0]) & (end <= edges[-1]) & (end > start) & np.isfinite(values)
    outside = ((end <= edges[0]) | (start >= edges[-1])) | (end == start) | ~np.isfinite(values)
    if (inside | outside).all():  # nothing straddles the outer edges: every kWh lands in exactly one place
        assert_allclose(np.nansum(got.values), values[inside].sum(), rtol=1e-12, atol=1e-9)


def test_kernel_adds_into_its_outputs() -> None:
    out = np.ones((1, 2))
    covered = np.ones((1, 2), dtype=np.int64)
    offsets = np.array([0, 1], dtype=np.int64)
    start, end = np.array([0], dtype=np.int64), np.array([3], dtype=np.int64)
    _bucket_kernels.spread_intervals(offsets, start, end, np.array([3.0]), np.array([0, 2, 4]), out, covered)
    assert_allclose(out, [[3.0, 2.0]])
    assert_array_equal(covered, [[3, 2]])

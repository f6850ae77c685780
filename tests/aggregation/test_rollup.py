"""Rollups per bucket and group, peak demand and load factor: hand-written cases, pandas reference, validation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from aggregation import _bucket_kernels, reference
from aggregation.rollup import group_rows, load_factor, peak_demand_kw, registry_groups, rollup
from devices import Registry

H = 3_600_000
NAN = np.nan


def test_two_devices_into_one_building_row() -> None:
    # Device A: readings at 0, 10, 20 (min); device B: 5, 65. Hourly edges [0, 1h, 2h].
    m = 60_000
    ts = np.array([0, 10, 20, 5, 65]) * m
    values = np.array([1.0, 2.0, NAN, 4.0, 8.0])
    result = rollup(ts, values, [0, H, 2 * H], offsets=[0, 3, 5], groups=[0, 0])
    assert_array_equal(result.sums, [[7.0, 8.0]])
    assert_array_equal(result.counts, [[3, 1]])
    assert_array_equal(result.means(), [[7.0 / 3, 8.0]])


def test_rollup_closed_right_puts_end_stamped_energy_in_the_hour_it_measures() -> None:
    ts = np.array([H // 2, H, H + H // 2, 2 * H])
    values = np.array([1.0, 2.0, 3.0, 4.0])
    left = rollup(ts, values, [0, H, 2 * H])
    right = rollup(ts, values, [0, H, 2 * H], closed="right")
    assert_array_equal(left.sums, [[1.0, 5.0]])  # 2h is outside [0, 2h)
    assert_array_equal(right.sums, [[3.0, 7.0]])


def test_rollup_clips_to_the_edges() -> None:
    result = rollup([-5, 0, 9, 10, 11], [1.0, 2.0, 3.0, 4.0, 5.0], [0, 5, 10])
    assert_array_equal(result.sums, [[2.0, 3.0]])
    assert_array_equal(result.counts, [[1, 1]])


def test_rollup_skips_runs_without_a_group() -> None:
    result = rollup([0, 1, 2], [1.0, 2.0, 4.0], [0, 10], offsets=[0, 1, 2, 3], groups=[1, -1, 1], n_groups=3)
    assert_array_equal(result.sums, [[0.0], [5.0], [0.0]])


def test_rollup_empty_and_single() -> None:
    empty = rollup([], [], [0, 10])
    assert empty.sums.shape == (1, 1)  # one (empty) series by default
    assert_array_equal(empty.sums, [[0.0]])
    assert_array_equal(empty.means(), [[NAN]])
    single = rollup([3], [2.5], [0, 10, 20])
    assert_array_equal(single.sums, [[2.5, 0.0]])
    assert_array_equal(single.counts, [[1, 0]])
    no_series = rollup([], [], [0, 10], offsets=[0], groups=[])
    assert no_series.sums.shape == (0, 1)


def test_rollup_skips_empty_buckets_in_one_step() -> None:
    edges = np.arange(0, 1001, 10)
    result = rollup([5, 995], [1.0, 2.0], edges)
    expected = np.zeros((1, 100))
    expected[0, 0], expected[0, 99] = 1.0, 2.0
    assert_array_equal(result.sums, expected)


def test_duplicate_timestamps_and_ties_on_edges() -> None:
    result = rollup([10, 10, 10, 20], [1.0, 1.0, 1.0, 5.0], [0, 10, 20, 30])
    assert_array_equal(result.sums, [[0.0, 3.0, 5.0]])


def test_group_rows_and_registry_groups(make_registry: Callable[[str], Registry]) -> None:
    rows, names = group_rows(["b2", "b1", "b2"])
    assert_array_equal(rows, [1, 0, 1])
    assert names == ["b1", "b2"]
    registry = make_registry("dx")
    devices = ["dx-em", "dx-hm", "dx-ev"]
    rows, names = registry_groups(registry, devices, "kind")
    assert names == sorted({str(registry.devices[d].kind) for d in devices})
    rows, names = registry_groups(registry, devices, "building")
    assert_array_equal(rows, [0, 0, 0])
    assert names == ["dx-b1"]
    with pytest.raises(ValueError, match="not in the registry"):
        registry_groups(registry, ["nope"], "district")
    with pytest.raises(ValueError, match="by must be"):
        registry_groups(registry, devices, "gateway")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ts_ms": [0, 1], "values": [1.0]}, "same length"),
        ({"edges": [0]}, "at least 2"),
        ({"edges": [0, 5, 5]}, "strictly increasing"),
        ({"offsets": [0, 1]}, "end at the number of readings"),
        ({"offsets": [0, 2, 1, 3]}, "non-decreasing"),
        ({"groups": [0, 1]}, r"one entry per series \(1\)"),
        ({"groups": [-2]}, ">= -1"),
        ({"groups": [3], "n_groups": 2}, "must exceed every group"),
        ({"closed": "both"}, "closed must be"),
    ],
    ids=[
        "length",
        "edges",
        "edges_repeat",
        "offsets_end",
        "offsets_order",
        "groups_len",
        "groups_neg",
        "n_groups",
        "closed",
    ],
)
def test_rollup_validation(kwargs: dict[str, Any], message: str) -> None:
    call: dict[str, Any] = {"ts_ms": [0, 1, 2], "values": [1.0, 2.0, 3.0], "edges": [0, 10]} | kwargs
    with pytest.raises(ValueError, match=message):
        rollup(**call)


def test_new_series_may_start_earlier_and_order_does_not_matter() -> None:
    result = rollup([5, 6, 1, 2], [1.0, 1.0, 1.0, 1.0], [0, 10], offsets=[0, 2, 4], groups=[0, 0])
    assert_array_equal(result.counts, [[4]])
    shuffled = rollup([25, 3, 15, -1, 7, 30, 12], [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0], [0, 10, 20, 30])
    assert_array_equal(shuffled.sums, [[18.0, 68.0, 1.0]])
    assert_array_equal(shuffled.counts, [[2, 2, 1]])


@st.composite
def runs(draw: st.DrawFn) -> dict[str, Any]:
    n_runs = draw(st.integers(0, 5))
    sizes = draw(st.lists(st.integers(0, 20), min_size=n_runs, max_size=n_runs))
    sort = draw(st.booleans())  # the kernel is correct for any order, fast for sorted runs
    parts = [draw(hnp.arrays(np.int64, s, elements=st.integers(-50, 250))) for s in sizes]
    ts = np.concatenate([np.sort(p) if sort else p for p in parts] or [np.empty(0, np.int64)])
    values = draw(hnp.arrays(np.float64, ts.shape[0], elements=st.one_of(st.floats(-1e3, 1e3), st.just(NAN))))
    edges = np.sort(draw(hnp.arrays(np.int64, st.integers(2, 8), elements=st.integers(-20, 220), unique=True)))
    groups = np.array(draw(st.lists(st.integers(-1, 2), min_size=n_runs, max_size=n_runs)), dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    return {"ts_ms": ts, "values": values, "edges": edges, "offsets": offsets, "groups": groups, "n_groups": 3}


@settings(max_examples=300, deadline=None, database=None)
@given(inputs=runs(), closed=st.sampled_from(["left", "right"]))
def test_property_rollup_matches_pandas(inputs: dict[str, Any], closed: str) -> None:
    got = rollup(**inputs, closed="right" if closed == "right" else "left")
    sums, counts = reference.rollup(**inputs, closed=closed)
    assert_allclose(got.sums, sums, rtol=1e-12, atol=1e-9)
    assert_array_equal(got.counts, counts)


def test_kernel_adds_into_its_outputs() -> None:
    sums = np.full((1, 1), 10.0)
    counts = np.full((1, 1), 1, dtype=np.int64)
    one = np.array([0, 1], dtype=np.int64)
    _bucket_kernels.bucket_sum(one, one[:1], one[:1], np.array([2.0]), np.array([0, 5]), sums, counts)
    assert_array_equal(sums, [[12.0]])
    assert_array_equal(counts, [[2]])


# ---------------------------------------------------------------------------------------------- peak, load factor


def test_peak_demand_and_load_factor() -> None:
    # Quarter hours (kWh): 1, 2, NaN, 1 -> powers 4, 8, -, 4 kW; mean power 16/3 kW over the known 45 minutes.
    edges = np.arange(5) * 900_000
    energy = np.array([[1.0, 2.0, NAN, 1.0], [NAN, NAN, NAN, NAN], [0.0, 0.0, 0.0, 0.0]])
    assert_array_equal(peak_demand_kw(energy, edges), [8.0, NAN, 0.0])
    assert_allclose(load_factor(energy, edges), [(4.0 / 0.75) / 8.0, NAN, NAN])
    # Unequal buckets (a 23-hour day beside a 24-hour one): power per bucket uses each bucket's own length.
    days = np.array([0, 23 * H, 47 * H])
    assert_allclose(peak_demand_kw([23.0, 48.0], days), 2.0)
    assert_allclose(load_factor([23.0, 48.0], days), (71.0 / 47.0) / 2.0)
    with pytest.raises(ValueError, match="one value per bucket"):
        peak_demand_kw([1.0], days)

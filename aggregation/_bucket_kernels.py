"""Numba kernels that put readings into time buckets: plain loops writing into caller-allocated arrays.

Both kernels walk readings grouped in runs (run ``r`` owns ``offsets[r]:offsets[r + 1]``, sorted by time
within the run: the layout of one InfluxDB series per device) and track the current bucket's edges instead
of computing a bucket index per reading: an integer division per reading costs ~4.6x in this loop
(``measured_limits.md``: 377M readings/s/core with edge tracking, 80M with ``//``). The wrappers in
``aggregation.resample`` and ``aggregation.rollup`` validate and allocate; the specs are in
``aggregation.reference``; edge cases name their tests in ``tests/aggregation/test_resample.py`` and
``test_rollup.py``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numpy.typing import NDArray


@numba.njit(nogil=True, cache=True)
def spread_intervals(
    offsets: NDArray[np.int64],
    start_ms: NDArray[np.int64],
    end_ms: NDArray[np.int64],
    values: NDArray[np.float64],
    edges: NDArray[np.int64],
    out: NDArray[np.float64],
    covered_ms: NDArray[np.int64],
) -> None:
    """Spread each interval's value over the buckets it overlaps, in proportion to the overlap.

    ``out[r, b]`` and ``covered_ms[r, b]`` (zeroed by the caller) receive the share of run ``r``'s values and
    the milliseconds of bucket ``b`` covered by intervals with a finite value. Within a run the intervals are
    sorted and do not overlap (``start <= end <= next start``, not checked here).
    """
    n_bins = edges.shape[0] - 1
    first = edges[0]
    last = edges[n_bins]
    for r in range(offsets.shape[0] - 1):
        b = 0
        for i in range(offsets[r], offsets[r + 1]):
            value = values[i]
            s = start_ms[i]
            e = end_ms[i]
            # NaN value or empty interval: nothing to spread: test_spread_skips_nan_and_empty_intervals.
            # Entirely outside the edges: test_spread_clips_to_the_edges.
            if not math.isfinite(value) or e <= s or e <= first or s >= last:
                continue
            while edges[b + 1] <= s:
                b += 1
            length = e - s
            k = b
            while k < n_bins and edges[k] < e:
                lo = s if s > edges[k] else edges[k]
                hi = e if e < edges[k + 1] else edges[k + 1]
                # An interval inside one bucket adds its value exactly (hi - lo == length):
                # test_spread_inside_one_bucket_is_exact.
                out[r, k] += value * ((hi - lo) / length)
                covered_ms[r, k] += hi - lo
                k += 1


@numba.njit(nogil=True, cache=True)
def bucket_sum(
    offsets: NDArray[np.int64],
    row_of_run: NDArray[np.int64],
    ts_ms: NDArray[np.int64],
    values: NDArray[np.float64],
    edges: NDArray[np.int64],
    out_sum: NDArray[np.float64],
    out_count: NDArray[np.int64],
) -> None:
    """Sum and count the non-NaN values of each run into ``out_*[row_of_run[r], b]`` by timestamp bucket.

    Reading ``i`` belongs to bucket ``b`` when ``edges[b] <= ts_ms[i] < edges[b + 1]``; readings outside
    ``[edges[0], edges[-1])`` and runs with ``row_of_run[r] < 0`` are skipped. Outputs are zeroed by the
    caller; several runs may add into one row. Any order is correct; time-sorted runs are fast, because the
    bucket only changes (a binary search) when a reading leaves the current one.
    """
    n_bins = edges.shape[0] - 1
    first = edges[0]
    last = edges[n_bins]
    for r in range(offsets.shape[0] - 1):
        row = row_of_run[r]
        if row < 0:  # test_rollup_skips_runs_without_a_group
            continue
        b = -1  # no current bucket: the first reading always "leaves" it
        lower = 1
        upper = 0
        total = 0.0
        count = 0
        for i in range(offsets[r], offsets[r + 1]):
            t = ts_ms[i]
            if t >= upper or t < lower:
                if b >= 0:
                    out_sum[row, b] += total
                    out_count[row, b] += count
                total = 0.0
                count = 0
                if t < first or t >= last:
                    # Outside the edges: test_rollup_clips_to_the_edges. Stay without a bucket.
                    b = -1
                    lower = 1
                    upper = 0
                    continue
                # Next bucket, possibly far away or earlier (unsorted input):
                # test_rollup_skips_empty_buckets_in_one_step, test_property_rollup_matches_pandas.
                b = np.searchsorted(edges, t, side="right") - 1
                lower = edges[b]
                upper = edges[b + 1]
            value = values[i]
            # NaN is no reading: test_matches_reference[rollup_*] (NaN-laced). Branch-free (a select, not a
            # jump), which keeps the loop near memory speed.
            present = value == value
            total += value if present else 0.0
            count += present
        if b >= 0:
            out_sum[row, b] += total
            out_count[row, b] += count

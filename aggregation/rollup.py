"""Rollups: readings summed per time bucket and per group (device, building, district, kind); peak demand and
load factor from the bucketed energy.

The input is one run of (ideally time-sorted) readings per series (``offsets``: series ``r`` owns
``offsets[r]:offsets[r + 1]``), which is what a query grouped by device returns, and ``groups`` maps each
series to an output row, so a building's total is its devices' series added into one row without re-sorting
the readings. The kernel (``aggregation._bucket_kernels.bucket_sum``) walks the readings once and tracks the
bucket edges; bucket edges come from ``aggregation.resample.bin_edges`` (DST-correct local days).

Interval energies computed from registers are stamped at the *end* of their interval: sum them with
``closed="right"`` (a reading at 01:00 belongs to 00:00-01:00), or spread them exactly with
``aggregation.resample.resample_energy`` first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from aggregation import _bucket_kernels
from aggregation.energy import as_float64, as_int64
from devices import Registry

__all__ = ["Rollup", "group_rows", "load_factor", "peak_demand_kw", "registry_groups", "rollup"]

MS_PER_HOUR = 3_600_000.0


class Rollup(NamedTuple):
    """Per group row and bucket: sum and count of the non-NaN readings (sum 0.0 where count is 0)."""

    edges: NDArray[np.int64]
    sums: NDArray[np.float64]
    counts: NDArray[np.int64]

    def means(self) -> NDArray[np.float64]:
        """Mean per bucket (NaN where there was no reading)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.sums / self.counts, np.nan)


def _offsets(offsets: ArrayLike | None, n: int) -> NDArray[np.int64]:
    if offsets is None:
        return np.array([0, n], dtype=np.int64)
    off = as_int64("offsets", offsets)
    if off.shape[0] < 1 or off[0] != 0 or off[-1] != n:
        raise ValueError(f"offsets must start at 0 and end at the number of readings ({n})")
    if (off[1:] < off[:-1]).any():
        raise ValueError("offsets must be non-decreasing")
    return off


def rollup(
    ts_ms: ArrayLike,
    values: ArrayLike,
    edges: ArrayLike,
    *,
    offsets: ArrayLike | None = None,
    groups: ArrayLike | None = None,
    n_groups: int | None = None,
    closed: Literal["left", "right"] = "left",
) -> Rollup:
    """Sum and count of the non-NaN ``values`` per bucket of ``edges`` and per group.

    ``offsets``: series boundaries (default: one series); ``ts_ms`` in any order, fastest when time-sorted
    within each series (the kernel changes bucket only when a reading leaves the current one). ``groups``: the
    output row of each series (-1: leave it out; default: one row per series); ``n_groups``: number of rows
    (default ``max(groups) + 1``). ``closed="left"``: a reading at ``t`` is in ``[edges[b], edges[b + 1])``;
    ``"right"``: in ``(edges[b], edges[b + 1]]``. Readings outside the edges are left out. NaN is no reading.
    """
    ts = as_int64("ts_ms", ts_ms)
    vals = as_float64("values", values)
    if ts.shape[0] != vals.shape[0]:
        raise ValueError(f"ts_ms and values must have the same length, got {ts.shape[0]} and {vals.shape[0]}")
    bins = as_int64("edges", edges)
    if bins.shape[0] < 2 or (bins[1:] <= bins[:-1]).any():
        raise ValueError("edges must be strictly increasing with at least 2 values")
    if closed not in ("left", "right"):
        raise ValueError(f"closed must be 'left' or 'right', got {closed!r}")
    off = _offsets(offsets, ts.shape[0])
    n_runs = off.shape[0] - 1
    rows = np.arange(n_runs, dtype=np.int64) if groups is None else as_int64("groups", groups)
    if rows.shape[0] != n_runs:
        raise ValueError(f"groups must have one entry per series ({n_runs}), got {rows.shape[0]}")
    if rows.size and int(rows.min()) < -1:
        raise ValueError("groups must be >= -1 (-1 leaves a series out)")
    needed = int(rows.max()) + 1 if rows.size else 0
    if n_groups is None:
        n_groups = needed
    elif n_groups < needed:
        raise ValueError(f"n_groups ({n_groups}) must exceed every group ({needed - 1})")

    sums = np.zeros((n_groups, bins.shape[0] - 1))
    counts = np.zeros((n_groups, bins.shape[0] - 1), dtype=np.int64)
    # For integer ms, (e0, e1] is [e0 + 1, e1 + 1): the kernel only knows left-closed buckets.
    kernel_edges = bins + 1 if closed == "right" else bins
    if ts.shape[0] and n_groups:
        _bucket_kernels.bucket_sum(off, rows, ts, vals, kernel_edges, sums, counts)
    return Rollup(bins, sums, counts)


def group_rows(keys: Sequence[str]) -> tuple[NDArray[np.int64], list[str]]:
    """Row of each series for ``groups=`` and the row names: one row per distinct key, in sorted order."""
    names, rows = np.unique(np.asarray(list(keys), dtype=object), return_inverse=True)
    return rows.astype(np.int64), [str(name) for name in names]


def registry_groups(
    registry: Registry, device_ids: Sequence[str], by: Literal["building", "district", "kind"]
) -> tuple[NDArray[np.int64], list[str]]:
    """:func:`group_rows` keyed by each device's building, district or kind from the registry."""
    if by not in ("building", "district", "kind"):
        raise ValueError(f"by must be 'building', 'district' or 'kind', got {by!r}")
    unknown = [d for d in device_ids if d not in registry.devices]
    if unknown:
        raise ValueError(f"devices not in the registry: {unknown[:5]}")
    return group_rows([str(getattr(registry.devices[d], by)) for d in device_ids])


def _hours(edges: ArrayLike) -> NDArray[np.float64]:
    bins = as_int64("edges", edges)
    if bins.shape[0] < 2 or (bins[1:] <= bins[:-1]).any():
        raise ValueError("edges must be strictly increasing with at least 2 values")
    return np.diff(bins) / MS_PER_HOUR


def peak_demand_kw(energy_kwh: ArrayLike, edges: ArrayLike) -> NDArray[np.float64]:
    """Peak demand (kW) along the last axis: ``max_b E_b / hours_b`` over buckets with a finite energy
    (kpis.md §5 #10: P_peak = max_t I(t)/Δt). NaN for a row without any finite bucket."""
    energy = np.asarray(energy_kwh, dtype=np.float64)
    hours = _hours(edges)
    if energy.shape[-1:] != hours.shape:
        raise ValueError(f"energy_kwh must have one value per bucket ({hours.shape[0]}) on its last axis")
    power = energy / hours
    has_any = np.isfinite(power).any(axis=-1)
    peak = np.max(np.where(np.isfinite(power), power, -np.inf), axis=-1, initial=-np.inf)
    return np.where(has_any, peak, np.nan)


def load_factor(energy_kwh: ArrayLike, edges: ArrayLike) -> NDArray[np.float64]:
    """Load factor along the last axis: mean power over the buckets with a finite energy divided by the peak
    (kpis.md §5 #10: load factor = mean/peak). NaN when there is no data or the peak is not positive."""
    energy = np.asarray(energy_kwh, dtype=np.float64)
    hours = _hours(edges)
    peak = peak_demand_kw(energy, edges)
    known = np.isfinite(energy)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(known, energy, 0.0).sum(axis=-1) / np.where(known, hours, 0.0).sum(axis=-1)
        return np.where(peak > 0, mean / peak, np.nan)

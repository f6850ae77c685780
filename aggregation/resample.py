"""Irregular readings -> fixed intervals (15 min, hour, local day) with the coverage of each interval.

Bucket edges come from :func:`bin_edges`, in UTC milliseconds, computed from the district's IANA time zone so
that a local day is 23 or 25 hours long on daylight-saving days and hours follow the local clock (field
lessons §4: "local time only for day/tariff boundaries (DST-correct)"). Every later step (rollups, KPIs)
works on such edges and never on wall-clock arithmetic.

:func:`resample_energy` spreads the energy of each interval between two register readings over the buckets
it overlaps, in proportion to time (constant power within an interval, i.e. linear interpolation of the
register); the coverage of a bucket is the fraction of its duration covered by intervals of known energy.
:func:`resample_mean` does the same for instantaneous values (power, temperature) held until the next
reading, at most ``max_gap_ms``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import ArrayLike, NDArray

from aggregation import _bucket_kernels
from aggregation.energy import IntervalEnergy, as_float64, as_int64, interval_starts, offsets_from_labels

__all__ = ["FREQUENCIES", "Resampled", "bin_edges", "resample_energy", "resample_interval_energy", "resample_mean"]

MS_PER_DAY = 86_400_000
FREQUENCIES: dict[str, int] = {
    "15min": 900_000,
    "30min": 1_800_000,
    "1h": 3_600_000,
    "1d": MS_PER_DAY,
}
"""Supported bucket sizes (ms); ``1d`` is a local calendar day, the others divide it."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Resampled(NamedTuple):
    """Per bucket (last axis; one row per device when labels were given): value and coverage in [0, 1].

    ``values`` is NaN where nothing covers a bucket; a partly covered bucket holds only what was measured
    (scale by ``1 / coverage`` to estimate, or filter on coverage: the choice is the caller's).
    """

    edges: NDArray[np.int64]
    values: NDArray[np.float64]
    coverage: NDArray[np.float64]


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _local_midnight(day: date, zone: ZoneInfo) -> int:
    # fold=0: a midnight that does not exist (DST starting at 00:00, e.g. America/Santiago) maps to the
    # transition instant, which is when that local day starts: test_bin_edges_midnight_dst.
    return _ms(datetime.combine(day, time(0), tzinfo=zone))


def bin_edges(start_ms: int, end_ms: int, freq: str, tz: str = "UTC") -> NDArray[np.int64]:
    """Bucket edges (UTC ms) of ``freq`` in local time ``tz`` covering ``[start_ms, end_ms)``.

    The first edge is the last bucket start at or before ``start_ms``, the last edge the first bucket end at or
    after ``end_ms`` (one bucket's worth of edges when they are equal). ``freq`` is one of :data:`FREQUENCIES`.
    Sub-day buckets start at local midnight and step in elapsed time, so a 23-hour day has 23 hours; a zone
    whose clock change is not a whole number of buckets (Australia/Lord_Howe's 30 minutes with hourly
    buckets) raises ``ValueError``.
    """
    if freq not in FREQUENCIES:
        raise ValueError(f"freq must be one of {sorted(FREQUENCIES)}, got {freq!r}")
    if end_ms < start_ms:
        raise ValueError(f"end_ms ({end_ms}) must not be before start_ms ({start_ms})")
    zone = ZoneInfo(tz)
    step = FREQUENCIES[freq]
    day = (_EPOCH + timedelta(milliseconds=start_ms)).astimezone(zone).date()
    if _local_midnight(day, zone) > start_ms:  # the local day started at a transition after this instant
        day -= timedelta(days=1)
    edges: list[int] = []
    begin = _local_midnight(day, zone)
    while True:
        finish = _local_midnight(day + timedelta(days=1), zone)
        if freq == "1d":
            edges.append(begin)
        else:
            if (finish - begin) % step:
                raise ValueError(
                    f"{tz}: the local day {day} lasts {(finish - begin) / 3_600_000} h, not a whole number of {freq}"
                )
            edges.extend(range(begin, finish, step))
        if finish >= end_ms and finish > start_ms:
            edges.append(finish)
            break
        day += timedelta(days=1)
        begin = finish
    all_edges = np.array(edges, dtype=np.int64)
    lo = int(np.searchsorted(all_edges, start_ms, side="right")) - 1
    hi = max(int(np.searchsorted(all_edges, end_ms, side="left")), lo + 1)
    return all_edges[lo : hi + 1]


def _check_edges(edges: ArrayLike) -> NDArray[np.int64]:
    array = as_int64("edges", edges)
    if array.shape[0] < 2:
        raise ValueError(f"edges must hold at least 2 values (one bucket), got {array.shape[0]}")
    if (array[1:] <= array[:-1]).any():
        raise ValueError("edges must be strictly increasing")
    return array


def _runs(labels: ArrayLike | None, n: int, n_series: int | None = None) -> NDArray[np.int64]:
    if labels is None:
        return np.array([0, n], dtype=np.int64)
    offsets, _ = offsets_from_labels(labels, n_series)
    if offsets[-1] != n:
        raise ValueError(f"labels must have one entry per interval ({n}), got {int(offsets[-1])}")
    return offsets


def _spread(
    offsets: NDArray[np.int64],
    start: NDArray[np.int64],
    end: NDArray[np.int64],
    values: NDArray[np.float64],
    edges: NDArray[np.int64],
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    n_runs = offsets.shape[0] - 1
    out = np.zeros((n_runs, edges.shape[0] - 1))
    covered = np.zeros((n_runs, edges.shape[0] - 1), dtype=np.int64)
    if start.shape[0]:
        _bucket_kernels.spread_intervals(offsets, start, end, values, edges, out, covered)
    return out, covered


def _intervals(
    start_ms: ArrayLike, end_ms: ArrayLike, values: ArrayLike, labels: ArrayLike | None, n_series: int | None
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    start = as_int64("start_ms", start_ms)
    end = as_int64("end_ms", end_ms)
    vals = as_float64("values", values)
    if not start.shape[0] == end.shape[0] == vals.shape[0]:
        raise ValueError(
            f"start_ms, end_ms and values must have the same length, got {start.shape[0]},"
            f" {end.shape[0]} and {vals.shape[0]}"
        )
    offsets = _runs(labels, start.shape[0], n_series)
    backwards = np.flatnonzero(end < start)
    if backwards.size:
        i = int(backwards[0])
        raise ValueError(f"interval {i} ends before it starts: {end[i]} < {start[i]}")
    same_run = np.ones(max(start.shape[0] - 1, 0), dtype=np.bool_)
    same_run[offsets[1:-1][(offsets[1:-1] > 0) & (offsets[1:-1] < start.shape[0])] - 1] = False
    overlap = np.flatnonzero((start[1:] < end[:-1]) & same_run)
    if overlap.size:
        i = int(overlap[0]) + 1
        raise ValueError(f"intervals must be sorted and not overlap: interval {i} starts before {i - 1} ends")
    return offsets, start, end, vals


def _squeeze(array: NDArray[np.float64], labels: ArrayLike | None) -> NDArray[np.float64]:
    return array[0] if labels is None else array


def resample_energy(
    start_ms: ArrayLike,
    end_ms: ArrayLike,
    energy_kwh: ArrayLike,
    edges: ArrayLike,
    *,
    labels: ArrayLike | None = None,
    n_series: int | None = None,
) -> Resampled:
    """Energy per bucket from the energy of intervals ``[start_ms, end_ms)`` (NaN energy: not measured).

    Without ``labels``: one series, 1-D results. With ``labels`` (series per interval, sorted): one row per
    label ``0..n_series - 1`` (default ``max(labels) + 1``). Intervals of one series are sorted and do not
    overlap.
    """
    offsets, start, end, vals = _intervals(start_ms, end_ms, energy_kwh, labels, n_series)
    bins = _check_edges(edges)
    out, covered = _spread(offsets, start, end, vals, bins)
    coverage = covered / np.diff(bins).astype(np.float64)
    out[covered == 0] = np.nan
    return Resampled(bins, _squeeze(out, labels), _squeeze(coverage, labels))


def resample_interval_energy(
    ts_ms: ArrayLike, result: IntervalEnergy, edges: ArrayLike, *, labels: ArrayLike | None = None
) -> Resampled:
    """:func:`resample_energy` of the output of ``interval_energy`` (or ``interval_energy_grouped`` with the
    same ``labels``: one row per label ``0..max(labels)``): each reading's energy covers the time since the
    previous accepted reading; readings without an energy (first, missing, glitch, jump) cover nothing."""
    ts = as_int64("ts_ms", ts_ms)
    if result.energy_kwh.shape != ts.shape:
        raise ValueError(
            f"ts_ms and the result must have the same length, got {ts.shape} and {result.energy_kwh.shape}"
        )
    starts = interval_starts(ts, result.events)
    known = np.isfinite(result.energy_kwh) & (starts >= 0)
    if labels is None:
        return resample_energy(starts[known], ts[known], result.energy_kwh[known], edges)
    lab = as_int64("labels", labels)
    if lab.shape != ts.shape:
        raise ValueError(f"labels and ts_ms must have the same length, got {lab.shape} and {ts.shape}")
    _, n_series = offsets_from_labels(lab)
    return resample_energy(
        starts[known], ts[known], result.energy_kwh[known], edges, labels=lab[known], n_series=n_series
    )


def resample_mean(
    ts_ms: ArrayLike,
    values: ArrayLike,
    edges: ArrayLike,
    *,
    max_gap_ms: int,
    labels: ArrayLike | None = None,
    n_series: int | None = None,
) -> Resampled:
    """Time-weighted mean per bucket of instantaneous readings (power, temperature).

    Each finite reading holds from its timestamp until the next reading of its series, or for at most
    ``max_gap_ms`` (a gateway that stopped reporting does not smear its last value over hours); NaN readings
    hold nothing. Coverage is the fraction of the bucket with a held value; the mean is over that part only.
    ``labels`` and ``n_series`` as for :func:`resample_energy`.
    """
    if max_gap_ms <= 0:
        raise ValueError(f"max_gap_ms must be positive, got {max_gap_ms}")
    ts = as_int64("ts_ms", ts_ms)
    vals = as_float64("values", values)
    if ts.shape[0] != vals.shape[0]:
        raise ValueError(f"ts_ms and values must have the same length, got {ts.shape[0]} and {vals.shape[0]}")
    offsets = _runs(labels, ts.shape[0], n_series)
    following = np.full_like(ts, np.iinfo(np.int64).max)  # the last reading of a run holds for max_gap_ms
    following[:-1] = ts[1:]
    ends_of_runs = offsets[1:][offsets[1:] > 0] - 1
    following[ends_of_runs] = np.iinfo(np.int64).max
    if (following <= ts).any():
        raise ValueError("ts_ms must be strictly increasing within each series")
    end = np.minimum(following, ts + max_gap_ms)
    duration = (end - ts).astype(np.float64)
    bins = _check_edges(edges)
    integral, covered = _spread(offsets, ts, end, vals * duration, bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = integral / covered
    mean[covered == 0] = np.nan
    coverage = covered / np.diff(bins).astype(np.float64)
    return Resampled(bins, _squeeze(mean, labels), _squeeze(coverage, labels))

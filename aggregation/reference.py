"""Reference implementations: the readable spec each numba kernel is tested against.

Written independently of ``aggregation._kernels`` (never calls it), for clarity rather than speed: plain Python
for the register logic, pandas or numpy for the bucketing, so that a shared misunderstanding of an index
would have to be made twice in two different styles.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from numpy.typing import ArrayLike, NDArray

from aggregation.energy import DEFAULT_LOOKAHEAD, EnergyEvent


def _switched_on(parameter: float | None) -> bool:
    """A register width or maximum power counts only when it is a positive, finite number."""
    return parameter is not None and math.isfinite(parameter) and parameter > 0


def interval_energy(
    ts_ms: ArrayLike,
    register: ArrayLike,
    *,
    rollover: float | None = None,
    max_power_w: float | None = None,
    lookahead: int = DEFAULT_LOOKAHEAD,
) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
    """Interval energy (kWh) and event code of each reading of a cumulative energy register.

    Spec. Only finite readings take part (a non-finite one is MISSING, NaN). Walk the finite readings in order
    with ``j`` the last accepted one; ``plausible(e, a, b)`` means ``0 <= e <= max_power_w * hours(b - a) / 1000``
    (no upper bound without a maximum power). For the next finite reading ``i``:

    * no ``j`` yet: ``i`` is accepted, NONE, NaN energy;
    * ``plausible(r[i] - r[j], j, i)``: NONE, energy ``r[i] - r[j]``, accepted;
    * otherwise, if one of the next ``lookahead`` finite readings ``k`` has ``plausible(r[k] - r[j], j, k)``,
      the readings from ``i`` up to (not including) the first such ``k`` are an excursion: NaN, GLITCH where
      the register is below ``r[j]``, JUMP where above; none is accepted, and the walk goes on at ``k``;
    * otherwise a rise (``r[i] >= r[j]``) is a RESET (accepted; energy ``r[i]`` if ``plausible(r[i], j, i)``
      else NaN) when ``lookahead > 0`` and the next finite reading ``m`` has ``plausible(r[m] - r[i], i, m)``,
      else a JUMP (NaN, not accepted);
    * otherwise (a drop) a ROLLOVER with energy ``r[i] + rollover - r[j]`` if a width is set and that is
      plausible, else a RESET with energy ``r[i]`` if plausible, else NaN; accepted either way.

    A dip longer than the look-ahead: after a drop RESET at ``s`` (with ``d`` the accepted reading before it),
    and as long as no accepted reading has risen since (a ROLLOVER or a rise RESET forgets it too; a further
    drop keeps the first ``d`` and ``s``), the first finite reading ``i`` with ``r[i] > r[j]`` is checked first:
    if ``plausible(r[i] - r[d], d, i)``, every finite reading from ``s`` up to ``i`` (excluded) becomes an
    excursion (NaN; GLITCH below ``r[d]``, JUMP above) and ``i`` is NONE with energy ``r[i] - r[d]``, accepted;
    otherwise the rule is forgotten and ``i`` goes through the rules above.
    """
    times: Sequence[int] = np.asarray(ts_ms, dtype=np.int64).tolist()
    values: Sequence[float] = np.asarray(register, dtype=np.float64).tolist()
    width = rollover if rollover is not None and _switched_on(rollover) else None
    power_w = max_power_w if max_power_w is not None and _switched_on(max_power_w) else None

    def plausible(kwh: float, start: int, end: int) -> bool:
        limit = math.inf if power_w is None else power_w * ((times[end] - times[start]) / 3_600_000.0) / 1000.0
        return 0.0 <= kwh <= limit

    energy = [math.nan] * len(values)
    events = [EnergyEvent.MISSING if not math.isfinite(v) else EnergyEvent.NONE for v in values]
    finite = [i for i, v in enumerate(values) if math.isfinite(v)]
    j: int | None = None  # index of the last accepted reading
    dip: tuple[int, int] | None = None  # (d, s) of a drop RESET the register has not risen since
    pos = 0  # position in `finite`
    while pos < len(finite):
        i = finite[pos]
        if j is None:
            j = i
            pos += 1
            continue
        if dip is not None and values[i] > values[j]:
            d, s = dip
            dip = None
            if plausible(values[i] - values[d], d, i):
                for m in finite[bisect.bisect_left(finite, s) : pos]:
                    energy[m] = math.nan
                    events[m] = EnergyEvent.GLITCH if values[m] < values[d] else EnergyEvent.JUMP
                energy[i] = values[i] - values[d]
                events[i] = EnergyEvent.NONE
                j = i
                pos += 1
                continue
        if plausible(values[i] - values[j], j, i):
            energy[i] = values[i] - values[j]
            j = i
            pos += 1
            continue
        ahead = finite[pos + 1 : pos + 1 + lookahead]
        back = next((k for k in ahead if plausible(values[k] - values[j], j, k)), None)
        if back is not None:
            back_pos = bisect.bisect_left(finite, back)
            for m in finite[pos:back_pos]:
                events[m] = EnergyEvent.GLITCH if values[m] < values[j] else EnergyEvent.JUMP
            pos = back_pos
            continue
        if values[i] >= values[j]:
            following = finite[pos + 1] if pos + 1 < len(finite) and lookahead > 0 else None
            if following is not None and plausible(values[following] - values[i], i, following):
                events[i] = EnergyEvent.RESET
                energy[i] = values[i] if plausible(values[i], j, i) else math.nan
                j = i
                dip = None
            else:
                events[i] = EnergyEvent.JUMP
            pos += 1
            continue
        if width is not None and plausible(values[i] + width - values[j], j, i):
            energy[i] = values[i] + width - values[j]
            events[i] = EnergyEvent.ROLLOVER
            dip = None
        else:
            dip = dip if dip is not None else (j, i)
            events[i] = EnergyEvent.RESET
            energy[i] = values[i] if plausible(values[i], j, i) else math.nan
        j = i
        pos += 1

    return np.array(energy, dtype=np.float64), np.array(events, dtype=np.int8)


# ---------------------------------------------------------------------------------------------- buckets


def bin_edges(start_ms: int, end_ms: int, freq: str, tz: str = "UTC") -> NDArray[np.int64]:
    """Spec of ``resample.bin_edges`` with pandas: calendar days from ``date_range(freq="D")`` in the zone,
    sub-day buckets as fixed steps from a local midnight; then the edges around ``[start_ms, end_ms)``.
    (pandas refuses a local midnight that does not exist: such zones are tested by hand.)"""
    step = {"15min": "15min", "30min": "30min", "1h": "h", "1d": "D"}[freq]
    start = pd.Timestamp(start_ms, unit="ms", tz="UTC").tz_convert(tz)
    end = pd.Timestamp(end_ms, unit="ms", tz="UTC").tz_convert(tz)
    first_day = pd.Timestamp(start.date() - pd.Timedelta(days=1)).tz_localize(tz)
    last_day = pd.Timestamp(end.date() + pd.Timedelta(days=2)).tz_localize(tz)
    edges = pd.date_range(first_day, last_day, freq=step)
    ms = np.asarray(edges.as_unit("ms").asi8, dtype=np.int64)
    lo = int(np.flatnonzero(ms <= start_ms)[-1])
    hi = max(int(np.flatnonzero(ms >= end_ms)[0]), lo + 1)
    return ms[lo : hi + 1]


def spread(
    start_ms: ArrayLike, end_ms: ArrayLike, values: ArrayLike, edges: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Spec of the interval spreading for one series: (amount per bucket, covered ms per bucket).

    Every (interval, bucket) pair that overlaps is listed explicitly (``searchsorted`` for the first and last
    bucket, ``np.repeat`` to enumerate), its share is ``value * overlap / length``, and ``np.bincount`` adds the
    shares per bucket. Intervals with a NaN value or no length cover nothing."""
    start = np.asarray(start_ms, dtype=np.int64)
    end = np.asarray(end_ms, dtype=np.int64)
    vals = np.asarray(values, dtype=np.float64)
    bins = np.asarray(edges, dtype=np.int64)
    n_bins = bins.shape[0] - 1
    keep = np.isfinite(vals) & (end > start)
    start, end, vals = start[keep], end[keep], vals[keep]
    first = np.clip(np.searchsorted(bins, start, side="right") - 1, 0, n_bins)
    stop = np.clip(np.searchsorted(bins, end, side="left"), 0, n_bins)
    per_interval = np.maximum(stop - first, 0)
    which = np.repeat(np.arange(start.shape[0]), per_interval)
    position = np.arange(which.shape[0]) - np.repeat(np.cumsum(per_interval) - per_interval, per_interval)
    bucket = first[which] + position
    overlap = np.minimum(end[which], bins[bucket + 1]) - np.maximum(start[which], bins[bucket])
    overlap = np.maximum(overlap, 0)
    share = vals[which] * (overlap / (end[which] - start[which]))
    amount = np.bincount(bucket, weights=share, minlength=n_bins).astype(np.float64)
    covered = np.bincount(bucket, weights=overlap.astype(np.float64), minlength=n_bins).astype(np.float64)
    return amount, covered


def resample_energy(
    start_ms: ArrayLike, end_ms: ArrayLike, energy_kwh: ArrayLike, edges: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Spec of ``resample.resample_energy`` for one series: (energy per bucket, NaN where uncovered; coverage)."""
    amount, covered = spread(start_ms, end_ms, energy_kwh, edges)
    lengths = np.diff(np.asarray(edges, dtype=np.int64)).astype(np.float64)
    return np.where(covered > 0, amount, np.nan), covered / lengths


def resample_mean(
    ts_ms: ArrayLike, values: ArrayLike, edges: ArrayLike, *, max_gap_ms: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Spec of ``resample.resample_mean`` for one series: each reading held until the next or for
    ``max_gap_ms``, integrated per bucket and divided by the held time."""
    ts = np.asarray(ts_ms, dtype=np.int64)
    vals = np.asarray(values, dtype=np.float64)
    following = np.append(ts[1:], np.iinfo(np.int64).max)
    end = np.minimum(following, ts + max_gap_ms)
    integral, covered = spread(ts, end, vals * (end - ts), edges)
    lengths = np.diff(np.asarray(edges, dtype=np.int64)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(covered > 0, integral / covered, np.nan), covered / lengths


def rollup(
    ts_ms: ArrayLike,
    values: ArrayLike,
    edges: ArrayLike,
    *,
    offsets: ArrayLike,
    groups: ArrayLike,
    n_groups: int,
    closed: str = "left",
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Spec of ``rollup.rollup`` with pandas: ``pd.cut`` into buckets, ``groupby([row, bucket])`` sum and count
    of the non-NaN values."""
    bins = np.asarray(edges, dtype=np.int64)
    n_bins = bins.shape[0] - 1
    bounds = np.asarray(offsets, dtype=np.int64)
    rows = np.repeat(np.asarray(groups, dtype=np.int64), bounds[1:] - bounds[:-1])
    frame = pd.DataFrame(
        {
            "row": rows,
            "bucket": pd.cut(np.asarray(ts_ms, dtype=np.int64), bins=bins, right=closed == "right", labels=False),
            "value": np.asarray(values, dtype=np.float64),
        }
    )
    frame = frame[(frame["row"] >= 0) & frame["bucket"].notna()]
    table = frame.groupby(["row", "bucket"])["value"].agg(["sum", "count"])
    sums = np.zeros((n_groups, n_bins))
    counts = np.zeros((n_groups, n_bins), dtype=np.int64)
    row_index = table.index.get_level_values("row").to_numpy(dtype=np.int64)
    bucket_index = table.index.get_level_values("bucket").to_numpy(dtype=np.int64)
    sums[row_index, bucket_index] = table["sum"].to_numpy(dtype=np.float64)
    counts[row_index, bucket_index] = table["count"].to_numpy(dtype=np.int64)
    return sums, counts

"""Reference CalTRACK daily: the readable spec the numba kernels are tested against.

Written independently of ``aggregation._caltrack_kernels`` (never calls it): each candidate model is an
explicit design matrix solved with ``numpy.linalg.lstsq`` (no running sums, no closed form), and the
temperature rules are transcribed from eemeter 3.2.0 ``features._degree_day_columns`` (hourly slots grouped
24 at a time). numpy only: no pandas or statsmodels, so it runs wherever the package does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["Candidate", "daily_grid_search", "daily_temperature"]

FloatArray = NDArray[np.float64]
BALANCE_POINTS = range(30, 91)
TIE = 1e-10
"""Adjusted R^2 values closer than this are a tie, won by the earlier candidate (rounding must not decide)."""


def daily_temperature(hours: Sequence[float]) -> tuple[float, float]:
    """(degree-day temperature, degree-day multiplier in prediction) of one period from its hourly slots.

    eemeter 3.2.0, daily degree-day method, ``percent_hourly_coverage_per_day=0.5``,
    ``percent_hourly_coverage_per_billing_period=0.9``: a period of more than 24 slots is cut into groups of
    24 (the last may be shorter); if fewer than 90 % of all slots have a value nothing is kept, else each
    group with more than 12 values is kept; the degree days are the mean over kept groups of each group's
    degree days, times the number of groups in prediction. A period of 24 slots or fewer counts when it has
    more than 12 slots (missing ones included) and uses the mean of its values. With a single kept group the
    mean of degree days is the degree days of that group's mean, so one temperature describes the day.
    """
    n = len(hours)
    values = np.asarray(hours, dtype=np.float64)
    if n <= 24:
        present = values[~np.isnan(values)]
        if n > 12 and present.size:
            return float(present.sum() / present.size), 1.0
        return math.nan, 1.0
    groups = [values[i : i + 24] for i in range(0, n, 24)]
    if np.count_nonzero(~np.isnan(values)) < 0.9 * n:
        return math.nan, float(len(groups))
    kept = [g[~np.isnan(g)] for g in groups if np.count_nonzero(~np.isnan(g)) > 12]
    if not kept:
        return math.nan, float(len(groups))
    if len(kept) > 1:  # cannot happen for periods of at most 25 hours (48 needed), which is all the CLI makes
        raise NotImplementedError("periods with two or more complete days are not single-temperature days")
    return float(kept[0].sum() / kept[0].size), float(len(groups))


class Candidate:
    """One fitted candidate: model type, balance points, coefficients, adjusted R^2 and qualification."""

    def __init__(
        self,
        model_type: str,
        hbp: int | None,
        cbp: int | None,
        coef: FloatArray,
        r2_adj: float,
        qualified: bool,
    ) -> None:
        self.model_type = model_type
        self.hbp = hbp
        self.cbp = cbp
        self.coef = coef  # [intercept, (beta_hdd), (beta_cdd)] in that order
        self.r2_adj = r2_adj
        self.qualified = qualified

    def __repr__(self) -> str:
        return f"Candidate({self.model_type}, h={self.hbp}, c={self.cbp}, r2_adj={self.r2_adj:.6f})"


def _fit(y: FloatArray, columns: list[FloatArray]) -> tuple[FloatArray, float]:
    x = np.column_stack([np.ones_like(y), *columns])
    coef = np.asarray(np.linalg.lstsq(x, y, rcond=None)[0], dtype=np.float64)
    resid = y - x @ coef
    ssr = float(resid @ resid)
    tss = float(((y - y.mean()) ** 2).sum())
    n, p = x.shape
    r2_adj = 1.0 - (n - 1) / (n - p) * ssr / tss if tss > 0 and n > p else math.nan
    return coef, float(r2_adj)


def daily_grid_search(
    usage_per_day: FloatArray,
    td: FloatArray,
    *,
    fit_cdd: bool,
    min_nonzero: int = 10,
    min_total: float = 20.0,
) -> tuple[Candidate | None, list[Candidate]]:
    """The selected candidate (None if none qualifies) and every candidate that was fitted, in order."""
    ok = np.isfinite(usage_per_day) & np.isfinite(td)
    y = usage_per_day[ok]
    t = td[ok]
    if y.size == 0:
        return None, []
    hdd = {bp: np.maximum(bp - t, 0.0) for bp in BALANCE_POINTS}
    cdd = {bp: np.maximum(t - bp, 0.0) for bp in BALANCE_POINTS}

    def enough(column: FloatArray) -> bool:
        return int(np.count_nonzero(column > 0)) >= min_nonzero and float(column.sum()) >= min_total

    candidates = [Candidate("intercept_only", None, None, np.array([y.mean()]), 0.0, bool(y.mean() >= 0))]
    for bp in BALANCE_POINTS:
        if enough(hdd[bp]):
            coef, r2 = _fit(y, [hdd[bp]])
            candidates.append(Candidate("hdd_only", bp, None, coef, r2, bool((coef >= 0).all())))
    if fit_cdd:
        for bp in BALANCE_POINTS:
            if enough(cdd[bp]):
                coef, r2 = _fit(y, [cdd[bp]])
                candidates.append(Candidate("cdd_only", None, bp, coef, r2, bool((coef >= 0).all())))
        for c in BALANCE_POINTS:
            for h in BALANCE_POINTS:
                if h <= c and enough(hdd[h]) and enough(cdd[c]):
                    coef, r2 = _fit(y, [hdd[h], cdd[c]])
                    candidates.append(Candidate("cdd_hdd", h, c, coef, r2, bool((coef >= 0).all())))
    best: Candidate | None = None
    for cand in candidates:
        if cand.qualified and (best is None or cand.r2_adj > best.r2_adj + TIE):
            best = cand
    return best, candidates


# ------------------------------------------------------------------------------------------------ hourly

DEFAULT_BINS = (30, 45, 55, 65, 75, 90)


def segment_weights(month: NDArray[np.int64]) -> FloatArray:
    """(12, n) weights: segment s weighs month s+1 by 1 and its two neighbours by 0.5 (cyclic)."""
    w = np.zeros((12, month.shape[0]))
    for s in range(12):
        centre = s + 1
        before = 12 if centre == 1 else centre - 1
        after = 1 if centre == 12 else centre + 1
        w[s, month == centre] = 1.0
        w[s, (month == before) | (month == after)] = 0.5
    return w


def _wls(x: FloatArray, y: FloatArray, w: FloatArray) -> FloatArray:
    """Minimum-norm weighted least squares (what statsmodels' pinv gives for dependent columns)."""
    sw = np.sqrt(w)
    return np.asarray(np.linalg.lstsq(x * sw[:, None], y * sw, rcond=None)[0], dtype=np.float64)


def fit_bins(temps: FloatArray) -> list[int]:
    """eemeter 3.2.0 ``_fit_temperature_bins``, transcribed with sets as eemeter writes it."""
    kept = set(DEFAULT_BINS)
    while True:
        edges = sorted(kept)
        bounds = [-math.inf, *edges, math.inf]
        counts = [int(np.count_nonzero((temps > lo) & (temps <= hi))) for lo, hi in itertools.pairwise(bounds)]
        if len(counts) == 1:
            return edges
        remove = set()
        if counts[0] < 20:
            remove.add(edges[0])
        if counts[-1] < 20:
            remove.add(edges[-1])
        if not remove:
            remove = {edges[i] for i in range(len(counts) - 2) if counts[i + 1] < 20}
        if not remove:
            return edges
        kept -= remove


def bin_features(temps: FloatArray, edges: Sequence[float]) -> FloatArray:
    """(n, len(edges) + 1) features whose row sums are the temperatures (eemeter's bin features)."""
    bounds = [-math.inf, *edges, math.inf]
    cols = []
    for j, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        if j == 0:
            cols.append(np.minimum(temps, hi))
        else:
            cols.append(np.clip(temps - lo, 0.0, hi - lo))
    return np.column_stack(cols)


def hourly_fit(
    usage: FloatArray, temp: FloatArray, how: NDArray[np.int64], month: NDArray[np.int64]
) -> tuple[NDArray[np.bool_], list[tuple[list[int], list[int]]], list[tuple[FloatArray, FloatArray, FloatArray]]]:
    """Occupancy (12, 168), kept bin edges per segment (occupied, unoccupied) and coefficients per segment
    (168 hour-of-week intercepts, occupied-bin slopes, unoccupied-bin slopes), from dense design matrices."""
    ok = np.isfinite(usage) & np.isfinite(temp)
    weights = segment_weights(month)
    occupancy = np.zeros((12, 168), dtype=np.bool_)
    bins: list[tuple[list[int], list[int]]] = []
    coefs: list[tuple[FloatArray, FloatArray, FloatArray]] = []
    for s in range(12):
        rows = ok & (weights[s] > 0)
        y, t, h, w = usage[rows], temp[rows], how[rows], weights[s][rows]
        if not rows.any():  # no data: every hour "occupied" (eemeter's NaN -> True), one bin, no model
            occupancy[s] = True
            bins.append(([], []))
            coefs.append((np.full(168, np.nan), np.full(1, np.nan), np.full(1, np.nan)))
            continue
        x = np.column_stack([np.ones_like(t), np.maximum(t - 65, 0), np.maximum(50 - t, 0)])
        resid = y - x @ _wls(x, y, w)
        for hour in range(168):
            mine = resid[h == hour]
            occupancy[s, hour] = True if mine.size == 0 else np.count_nonzero(mine > 0) / mine.size > 0.65
        occ = occupancy[s][h]
        edges_o, edges_u = fit_bins(t[occ]), fit_bins(t[~occ])
        f_o = bin_features(t, edges_o) * occ[:, None]
        f_u = bin_features(t, edges_u) * (~occ)[:, None]
        dummies = (h[:, None] == np.arange(168)[None, :]).astype(np.float64)
        coef = _wls(np.hstack([dummies, f_o, f_u]), y, w)
        bins.append((edges_o, edges_u))
        coefs.append((coef[:168], coef[168 : 168 + f_o.shape[1]], coef[168 + f_o.shape[1] :]))
    return occupancy, bins, coefs

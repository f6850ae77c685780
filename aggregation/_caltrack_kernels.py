"""Numba kernels of the CalTRACK methods: plain loops writing into caller-allocated ``out`` arrays.

No validation and no allocation of results here: the wrappers in ``aggregation.caltrack_daily`` check and
allocate. Each kernel has an independent spec in ``aggregation.caltrack_reference`` (built with
``numpy.linalg.lstsq`` per candidate rather than running sums) that ``tests/aggregation/test_caltrack_daily.py``
compares against.

The daily grid search: every whole-degF balance point 30..90 gives one HDD and one CDD column. Instead of
refitting 2014 regressions, one pass per balance point accumulates the sums a closed-form OLS needs
(sum x, sum x^2, sum x*y over the valid days, y centred once), then each candidate is a 2x2 (or 1x1) solve.
The cross term sum(HDD_h * CDD_c) is zero for every h <= c because a day has one temperature, so it cannot
be both below h and above c: combined models need no extra pass.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numpy.typing import NDArray

# Model codes in ``out[0]`` (floats in ``out``); ``aggregation.caltrack_daily.MODEL_TYPES`` names them.
MODEL_NONE = -1
MODEL_INTERCEPT_ONLY = 0
MODEL_HDD_ONLY = 1
MODEL_CDD_ONLY = 2
MODEL_CDD_HDD = 3

BP_MIN = 30
N_BP = 61  # whole degF 30..90

# Layout of one meter's result row.
OUT_MODEL = 0
OUT_HBP = 1
OUT_CBP = 2
OUT_INTERCEPT = 3
OUT_BETA_HDD = 4
OUT_BETA_CDD = 5
OUT_R2_ADJ = 6
OUT_N = 7
OUT_WIDTH = 8

# A 2x2 normal-equation determinant this small relative to its diagonal means collinear columns: the
# candidate is skipped (statsmodels would return a pseudo-inverse fit; it never happens with >= 10 non-zero
# degree days on real temperatures).
_SINGULAR = 1e-12
# Adjusted R^2 values closer than this are a tie, which goes to the earlier candidate. Exact ties are real:
# when every day is warmer than both c and c+1, CDD_c and CDD_c+1 differ by a constant and fit equally well;
# rounding (1e-16) must not pick among them. Mirrored in ``aggregation.caltrack_reference.TIE``.
TIE = 1e-10


@numba.njit(nogil=True, cache=True)
def daily_temperature_features(
    first_hour: NDArray[np.int64],
    end_hour: NDArray[np.int64],
    temps: NDArray[np.float64],
    td: NDArray[np.float64],
    dd_days: NDArray[np.float64],
) -> None:
    """Degree-day temperature of each period, as eemeter 3.2.0 ``compute_temperature_features`` (daily method).

    Period ``i`` covers the grid hours ``first_hour[i] <= k < end_hour[i]`` (clipped to the grid); ``n`` of
    them. ``n <= 12``: NaN. ``12 < n <= 24``: the mean of the non-missing hours (NaN if none); ``n > 24`` (a
    25-hour day): the mean of its first 24 hours if more than 12 of them exist and at least 90 % of all n do,
    else NaN; ``dd_days`` is the number of 24-hour groups (2 for 25 hours), by which eemeter multiplies the
    degree days in prediction but not in the fit.
    """
    n_grid = temps.shape[0]
    for i in range(first_hour.shape[0]):
        a = max(first_hour[i], 0)
        b = min(end_hour[i], n_grid)
        n = b - a if b > a else 0
        dd_days[i] = 1.0
        td[i] = np.nan
        if n <= 12:
            continue
        if n <= 24:
            total = 0.0
            count = 0
            for k in range(a, b):
                if not math.isnan(temps[k]):
                    total += temps[k]
                    count += 1
            if count > 0:
                td[i] = total / count
            continue
        dd_days[i] = float((n + 23) // 24)
        count_all = 0
        for k in range(a, b):
            if not math.isnan(temps[k]):
                count_all += 1
        if count_all < 0.9 * n:
            continue
        total = 0.0
        count = 0
        for k in range(a, a + 24):
            if not math.isnan(temps[k]):
                total += temps[k]
                count += 1
        if count > 12:
            td[i] = total / count


@numba.njit(nogil=True, cache=True)
def daily_grid_search(
    usage: NDArray[np.float64],
    td: NDArray[np.float64],
    fit_cdd: bool,
    min_nonzero: int,
    min_total: float,
    out: NDArray[np.float64],
) -> None:
    """CalTRACK 2.0 daily model selection for one meter, written into ``out[:OUT_WIDTH]``.

    ``usage``: usage per day, ``td``: degree-day temperature (degF); a day counts when both are finite.
    Candidates in eemeter's order: intercept-only, HDD 30..90, CDD 30..90, then CDD c x HDD h with h <= c
    (c outer). A degree-day column qualifies with >= ``min_nonzero`` non-zero days and a total >=
    ``min_total``; a negative intercept or slope disqualifies; the highest adjusted R^2 wins, the first on
    ties within ``TIE`` (intercept-only counts as 0). ``fit_cdd`` False (gas) keeps intercept-only and HDD only.
    """
    n_rows = usage.shape[0]
    n = 0
    y_sum = 0.0
    for i in range(n_rows):
        if math.isfinite(usage[i]) and math.isfinite(td[i]):
            n += 1
            y_sum += usage[i]
    for j in range(OUT_WIDTH):
        out[j] = np.nan
    out[OUT_MODEL] = MODEL_NONE
    out[OUT_N] = n
    if n == 0:
        return
    y_mean = y_sum / n
    syy = 0.0
    for i in range(n_rows):
        if math.isfinite(usage[i]) and math.isfinite(td[i]):
            d = usage[i] - y_mean
            syy += d * d

    # Per balance point: sum x, sum x^2, sum x*(y - mean), non-zero count; index 0 = HDD, 1 = CDD.
    sx = np.zeros((2, N_BP))
    sxx = np.zeros((2, N_BP))
    sxy = np.zeros((2, N_BP))
    nz = np.zeros((2, N_BP), dtype=np.int64)
    for i in range(n_rows):
        if not (math.isfinite(usage[i]) and math.isfinite(td[i])):
            continue
        t = td[i]
        yc = usage[i] - y_mean
        for k in range(N_BP):
            bp = BP_MIN + k
            h = bp - t
            if h > 0.0:
                sx[0, k] += h
                sxx[0, k] += h * h
                sxy[0, k] += h * yc
                nz[0, k] += 1
            c = t - bp
            if c > 0.0:
                sx[1, k] += c
                sxx[1, k] += c * c
                sxy[1, k] += c * yc
                nz[1, k] += 1

    qualified = np.zeros((2, N_BP), dtype=np.bool_)
    var = np.zeros((2, N_BP))  # centred sum of squares
    for s in range(2):
        for k in range(N_BP):
            var[s, k] = sxx[s, k] - sx[s, k] * sx[s, k] / n
            qualified[s, k] = nz[s, k] >= min_nonzero and sx[s, k] >= min_total and var[s, k] > 0.0

    best = -np.inf
    # Intercept-only: adjusted R^2 is 0 by definition; disqualified if the mean is negative.
    if y_mean >= 0.0:
        best = 0.0
        out[OUT_MODEL] = MODEL_INTERCEPT_ONLY
        out[OUT_INTERCEPT] = y_mean
        out[OUT_R2_ADJ] = 0.0
    # Single degree-day models: HDD (s = 0) then CDD (s = 1).
    n_kinds = 2 if fit_cdd else 1
    for s in range(n_kinds):
        for k in range(N_BP):
            if not qualified[s, k] or n <= 2:
                continue
            beta = sxy[s, k] / var[s, k]
            intercept = y_mean - beta * sx[s, k] / n
            if beta < 0.0 or intercept < 0.0:
                continue
            ssr = syy - beta * sxy[s, k]
            r2_adj = 1.0 - ssr / syy * (n - 1) / (n - 2)
            if r2_adj > best + TIE:
                best = r2_adj
                out[OUT_MODEL] = MODEL_HDD_ONLY if s == 0 else MODEL_CDD_ONLY
                out[OUT_HBP] = BP_MIN + k if s == 0 else np.nan
                out[OUT_CBP] = BP_MIN + k if s == 1 else np.nan
                out[OUT_INTERCEPT] = intercept
                out[OUT_BETA_HDD] = beta if s == 0 else np.nan
                out[OUT_BETA_CDD] = beta if s == 1 else np.nan
                out[OUT_R2_ADJ] = r2_adj
    if not fit_cdd or n <= 3:
        return
    # Combined: cooling balance point outer, heating inner, heating <= cooling.
    for kc in range(N_BP):
        if not qualified[1, kc]:
            continue
        for kh in range(kc + 1):
            if not qualified[0, kh]:
                continue
            s11 = var[0, kh]
            s22 = var[1, kc]
            s12 = -sx[0, kh] * sx[1, kc] / n  # sum(HDD*CDD) = 0 for h <= c
            det = s11 * s22 - s12 * s12
            if det <= _SINGULAR * s11 * s22:
                continue
            beta_h = (sxy[0, kh] * s22 - sxy[1, kc] * s12) / det
            beta_c = (sxy[1, kc] * s11 - sxy[0, kh] * s12) / det
            intercept = y_mean - beta_h * sx[0, kh] / n - beta_c * sx[1, kc] / n
            if beta_h < 0.0 or beta_c < 0.0 or intercept < 0.0:
                continue
            ssr = syy - beta_h * sxy[0, kh] - beta_c * sxy[1, kc]
            r2_adj = 1.0 - ssr / syy * (n - 1) / (n - 3)
            if r2_adj > best + TIE:
                best = r2_adj
                out[OUT_MODEL] = MODEL_CDD_HDD
                out[OUT_HBP] = BP_MIN + kh
                out[OUT_CBP] = BP_MIN + kc
                out[OUT_INTERCEPT] = intercept
                out[OUT_BETA_HDD] = beta_h
                out[OUT_BETA_CDD] = beta_c
                out[OUT_R2_ADJ] = r2_adj


@numba.njit(nogil=True, cache=True)
def daily_grid_search_many(
    usage: NDArray[np.float64],
    td: NDArray[np.float64],
    fit_cdd: bool,
    min_nonzero: int,
    min_total: float,
    out: NDArray[np.float64],
) -> None:
    """:func:`daily_grid_search` for each row of 2-D ``usage``/``td`` (one meter per row) into ``out[m]``."""
    for m in range(usage.shape[0]):
        daily_grid_search(usage[m], td[m], fit_cdd, min_nonzero, min_total, out[m])


# ------------------------------------------------------------------------------------------------ hourly
# CalTRACK 2.0 hourly (eemeter 3.2.0 ``caltrack/hourly.py``): 12 segments, one per month, each weighting
# its month 1 and the neighbouring months 0.5 ("three_month_weighted"). Per segment: occupancy of each of
# the 168 hours of the week from a WLS usage ~ 1 + CDD65 + HDD50, temperature bins from the default
# endpoints, then a WLS usage ~ hour-of-week dummies + occupied-bin + unoccupied-bin features.

N_SEGMENTS = 12
N_HOW = 168
DEFAULT_BINS = (30.0, 45.0, 55.0, 65.0, 75.0, 90.0)
N_EDGES = 6
MAX_BIN_FEATURES = N_EDGES + 1
N_COEF = N_HOW + 2 * MAX_BIN_FEATURES
OCCUPANCY_THRESHOLD = 0.65
"""An hour of the week is occupied when more than 65 % of its residuals are positive (eemeter's code)."""
MIN_BIN_COUNT = 20


# Eigenvalues of a normal-equation matrix below this fraction of the largest are treated as zero. statsmodels
# fits with pinv(X), which drops singular values of X below 1e-15 of the largest; the eigenvalues of X'X are
# their squares, so this keeps what pinv keeps and drops what it drops (in practice: columns of zeros).
_PINV_RCOND = 1e-24


@numba.njit(nogil=True, cache=True)
def sym_pinv_solve(a: NDArray[np.float64], b: NDArray[np.float64], x: NDArray[np.float64]) -> None:
    """x = pinv(a) @ b for a small symmetric positive semi-definite ``a`` (cyclic Jacobi eigenvalues).

    numba's ``np.linalg.pinv`` needs scipy, which the server install does not have; a 14 x 14 Jacobi
    converges in a handful of sweeps to full precision.
    """
    n = a.shape[0]
    m = a.copy()
    v = np.eye(n)
    for _sweep in range(100):
        off = 0.0
        diag = 0.0
        for p in range(n):
            diag += m[p, p] * m[p, p]
            for q in range(p + 1, n):
                off += m[p, q] * m[p, q]
        if off <= 1e-32 * diag or off == 0.0:
            break
        for p in range(n - 1):
            for q in range(p + 1, n):
                if m[p, q] == 0.0:
                    continue
                theta = (m[q, q] - m[p, p]) / (2.0 * m[p, q])
                t = (1.0 if theta >= 0 else -1.0) / (abs(theta) + math.sqrt(theta * theta + 1.0))
                c = 1.0 / math.sqrt(t * t + 1.0)
                s = t * c
                for k in range(n):  # rotate columns p, q
                    mkp = m[k, p]
                    mkq = m[k, q]
                    m[k, p] = c * mkp - s * mkq
                    m[k, q] = s * mkp + c * mkq
                for k in range(n):  # rotate rows p, q
                    mpk = m[p, k]
                    mqk = m[q, k]
                    m[p, k] = c * mpk - s * mqk
                    m[q, k] = s * mpk + c * mqk
                for k in range(n):
                    vkp = v[k, p]
                    vkq = v[k, q]
                    v[k, p] = c * vkp - s * vkq
                    v[k, q] = s * vkp + c * vkq
    largest = 0.0
    for p in range(n):
        largest = max(largest, abs(m[p, p]))
    for i in range(n):
        x[i] = 0.0
    for p in range(n):
        lam = m[p, p]
        if lam <= _PINV_RCOND * largest or lam <= 0.0:
            continue
        proj = 0.0
        for k in range(n):
            proj += v[k, p] * b[k]
        proj /= lam
        for i in range(n):
            x[i] += v[i, p] * proj


@numba.njit(nogil=True, cache=True)
def segment_weight(segment: int, month: int) -> float:
    """Weight of a row of ``month`` (1..12) in ``segment`` (0..11, centred on month segment + 1)."""
    centre = segment + 1
    if month == centre:
        return 1.0
    if month == centre % 12 + 1 or month == (centre + 10) % 12 + 1:
        return 0.5
    return 0.0


@numba.njit(nogil=True, cache=True)
def bin_features(t: float, edges: NDArray[np.float64], n_edges: int, out: NDArray[np.float64]) -> None:
    """eemeter ``compute_temperature_bin_features`` for one temperature and sorted kept ``edges[:n_edges]``:
    bin 0 is ``min(t, e1)``; bin j is the part of t inside (e_j, e_j+1] (0 below, the width above)."""
    for j in range(n_edges + 1):
        left = -np.inf if j == 0 else edges[j - 1]
        right = np.inf if j == n_edges else edges[j]
        if j == 0:
            out[j] = t if t <= right else right
        elif t <= left:
            out[j] = 0.0
        elif t <= right:
            out[j] = t - left
        else:
            out[j] = right - left


@numba.njit(nogil=True, cache=True)
def _fit_bins(temps: NDArray[np.float64], n: int, keep: NDArray[np.bool_]) -> None:
    """eemeter ``_fit_temperature_bins``: drop endpoints, outside in, while a bin holds < 20 temperatures."""
    for j in range(N_EDGES):
        keep[j] = True
    edges = np.empty(N_EDGES)
    counts = np.empty(N_EDGES + 1, dtype=np.int64)
    remove = np.zeros(N_EDGES, dtype=np.bool_)
    while True:
        m = 0
        for j in range(N_EDGES):
            if keep[j]:
                edges[m] = DEFAULT_BINS[j]
                m += 1
        if m == 0:
            return  # one bin left: nothing to remove
        for j in range(m + 1):
            counts[j] = 0
        for i in range(n):
            t = temps[i]
            b = 0
            while b < m and t > edges[b]:  # bins are right-closed: (e_b-1, e_b]
                b += 1
            counts[b] += 1
        for j in range(N_EDGES):
            remove[j] = False
        any_removed = False
        if counts[0] < MIN_BIN_COUNT:
            remove_edge = edges[0]
            for j in range(N_EDGES):
                if DEFAULT_BINS[j] == remove_edge:
                    remove[j] = True
            any_removed = True
        if counts[m] < MIN_BIN_COUNT:
            remove_edge = edges[m - 1]
            for j in range(N_EDGES):
                if DEFAULT_BINS[j] == remove_edge:
                    remove[j] = True
            any_removed = True
        if not any_removed:
            for b in range(1, m):
                if counts[b] < MIN_BIN_COUNT:
                    for j in range(N_EDGES):
                        if DEFAULT_BINS[j] == edges[b]:
                            remove[j] = True
                    any_removed = True
        if not any_removed:
            return
        for j in range(N_EDGES):
            if remove[j]:
                keep[j] = False


@numba.njit(nogil=True, cache=True)
def _kept_edges(keep: NDArray[np.bool_], edges: NDArray[np.float64]) -> int:
    m = 0
    for j in range(N_EDGES):
        if keep[j]:
            edges[m] = DEFAULT_BINS[j]
            m += 1
    return m


@numba.njit(nogil=True, cache=True)
def hourly_fit(
    usage: NDArray[np.float64],
    temp: NDArray[np.float64],
    how: NDArray[np.int64],
    month: NDArray[np.int64],
    occupied: NDArray[np.bool_],
    keep_bins: NDArray[np.bool_],
    coef: NDArray[np.float64],
) -> None:
    """Fit the 12 segment models of one meter's baseline hours.

    An hour counts when usage and temperature are finite. Out: ``occupied[s, h]``; ``keep_bins[s, o, j]``
    (o = 0 occupied, 1 unoccupied; j over ``DEFAULT_BINS``); ``coef[s]`` = 168 hour-of-week intercepts then
    the occupied-bin and the unoccupied-bin slopes (``n_kept + 1`` each, packed), NaN after; all NaN for a
    segment without data (eemeter fits no model there). A coefficient
    that the data cannot determine (a column of zeros: no row of that kind) is 0, as statsmodels' pinv gives.
    """
    n = usage.shape[0]
    valid = np.empty(n, dtype=np.bool_)
    cdd = np.empty(n)
    hdd = np.empty(n)
    for i in range(n):
        valid[i] = math.isfinite(usage[i]) and math.isfinite(temp[i]) and how[i] >= 0
        cdd[i] = max(temp[i] - 65.0, 0.0)
        hdd[i] = max(50.0 - temp[i], 0.0)
    temps_buf = np.empty(n)
    edges_o = np.empty(N_EDGES)
    edges_u = np.empty(N_EDGES)
    feat = np.empty(2 * MAX_BIN_FEATURES)
    for s in range(N_SEGMENTS):
        # 1. occupancy: WLS usage ~ 1 + cdd65 + hdd50, sign of residuals per hour of week
        a = np.zeros((3, 3))
        rhs = np.zeros(3)
        x = np.empty(3)
        for i in range(n):
            w = segment_weight(s, month[i])
            if w == 0.0 or not valid[i]:
                continue
            x[0] = 1.0
            x[1] = cdd[i]
            x[2] = hdd[i]
            for p in range(3):
                rhs[p] += w * x[p] * usage[i]
                for q in range(3):
                    a[p, q] += w * x[p] * x[q]
        beta = np.empty(3)
        sym_pinv_solve(a, rhs, beta)
        positive = np.zeros(N_HOW)
        total = np.zeros(N_HOW)
        for i in range(n):
            if segment_weight(s, month[i]) == 0.0 or not valid[i]:
                continue
            resid = usage[i] - (beta[0] + beta[1] * cdd[i] + beta[2] * hdd[i])
            total[how[i]] += 1.0
            if resid > 0.0:
                positive[how[i]] += 1.0
        for h in range(N_HOW):
            # an hour of the week without data is occupied: eemeter's NaN -> astype(bool) is True
            occupied[s, h] = True if total[h] == 0.0 else positive[h] / total[h] > OCCUPANCY_THRESHOLD
        # 2. temperature bins, separately for occupied and unoccupied hours
        for o in range(2):
            m = 0
            for i in range(n):
                if segment_weight(s, month[i]) == 0.0 or not valid[i]:
                    continue
                if occupied[s, how[i]] == (o == 0):
                    temps_buf[m] = temp[i]
                    m += 1
            _fit_bins(temps_buf, m, keep_bins[s, o])
        n_o = _kept_edges(keep_bins[s, 0], edges_o)
        n_u = _kept_edges(keep_bins[s, 1], edges_u)
        k_o = n_o + 1
        k = k_o + n_u + 1
        # 3. WLS usage ~ hour-of-week dummies + bin features, by the Schur complement of the dummy block
        d = np.zeros(N_HOW)
        r = np.zeros(N_HOW)
        bh = np.zeros((N_HOW, k))
        c = np.zeros((k, k))
        sv = np.zeros(k)
        for i in range(n):
            w = segment_weight(s, month[i])
            if w == 0.0 or not valid[i]:
                continue
            h = how[i]
            for j in range(k):
                feat[j] = 0.0
            if occupied[s, h]:
                bin_features(temp[i], edges_o, n_o, feat[:k_o])
            else:
                bin_features(temp[i], edges_u, n_u, feat[k_o:k])
            y = usage[i]
            d[h] += w
            r[h] += w * y
            for p in range(k):
                fp = w * feat[p]
                if fp == 0.0:
                    continue
                bh[h, p] += fp
                sv[p] += fp * y
                for q in range(k):
                    c[p, q] += fp * feat[q]
        schur = c.copy()
        tv = sv.copy()
        for h in range(N_HOW):
            if d[h] == 0.0:
                continue
            for p in range(k):
                if bh[h, p] == 0.0:
                    continue
                tv[p] -= bh[h, p] * r[h] / d[h]
                for q in range(k):
                    schur[p, q] -= bh[h, p] * bh[h, q] / d[h]
        b = np.empty(k)
        sym_pinv_solve(schur, tv, b)
        for j in range(N_COEF):
            coef[s, j] = np.nan
        if d.sum() == 0.0:
            continue  # no data in the segment: no model (eemeter skips it), NaN predictions for its month
        for h in range(N_HOW):
            if d[h] == 0.0:
                coef[s, h] = 0.0
                continue
            acc = r[h]
            for p in range(k):
                acc -= bh[h, p] * b[p]
            coef[s, h] = acc / d[h]
        for p in range(k):
            coef[s, N_HOW + p] = b[p]


@numba.njit(nogil=True, cache=True)
def hourly_predict(
    temp: NDArray[np.float64],
    how: NDArray[np.int64],
    month: NDArray[np.int64],
    occupied: NDArray[np.bool_],
    keep_bins: NDArray[np.bool_],
    coef: NDArray[np.float64],
    out: NDArray[np.float64],
) -> None:
    """Prediction of each hour by the segment centred on its month (NaN without temperature)."""
    edges_o = np.empty(N_EDGES)
    edges_u = np.empty(N_EDGES)
    feat = np.empty(MAX_BIN_FEATURES)
    for i in range(temp.shape[0]):
        if not math.isfinite(temp[i]) or how[i] < 0 or month[i] < 1:
            out[i] = np.nan
            continue
        s = month[i] - 1
        h = how[i]
        n_o = _kept_edges(keep_bins[s, 0], edges_o)
        n_u = _kept_edges(keep_bins[s, 1], edges_u)
        value = coef[s, h]
        if occupied[s, h]:
            bin_features(temp[i], edges_o, n_o, feat)
            for p in range(n_o + 1):
                value += coef[s, N_HOW + p] * feat[p]
        else:
            bin_features(temp[i], edges_u, n_u, feat)
            for p in range(n_u + 1):
                value += coef[s, N_HOW + n_o + 1 + p] * feat[p]
        out[i] = value

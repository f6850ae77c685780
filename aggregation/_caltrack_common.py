"""What CalTRACK daily and hourly share: the input series, fit metrics, the Student t quantile and the FSU.

Both methods follow ``eemeter==3.2.0`` (the CalTRACK 2.0 reference implementation) formula for formula, so
the names here are eemeter's: ``cvrmse_adj`` divides by ``n - p`` where ``p`` counts the slopes but not the
intercept, and NMBE is ``sum(predicted - observed) / sum(observed)`` (eemeter's sign: positive = the model
over-predicts). See ``/work/shared/reference/kpis.md`` sections 1.1 and 1.6.

scipy is not a dependency of the server extra, so the Student t quantile for the ASHRAE Guideline 14
uncertainty is computed here from the regularised incomplete beta function (continued fraction, about
1e-15 relative), checked against ``scipy.stats.t.ppf`` in the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CONFIDENCE_LEVEL",
    "FitMetrics",
    "Fuel",
    "HourlyTemperature",
    "MeterSeries",
    "fit_metrics",
    "fsu_error_band",
    "student_t_ppf",
]

Fuel = Literal["electricity", "gas"]
CONFIDENCE_LEVEL = 0.9
"""eemeter's default: the FSU band is two-sided 90 % (t at 0.95)."""

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class MeterSeries:
    """Usage rows as read from a CSV: interval start (UTC epoch seconds), the row's own UTC offset (seconds,
    which gives its local wall-clock time) and the value (NaN = missing). Starts are strictly increasing."""

    start_s: NDArray[np.int64]
    offset_s: NDArray[np.int64]
    value: FloatArray

    def __post_init__(self) -> None:
        n = self.start_s.shape[0]
        if self.offset_s.shape[0] != n or self.value.shape[0] != n:
            raise ValueError("start_s, offset_s and value must have the same length")
        if n > 1 and not bool(np.all(np.diff(self.start_s) > 0)):
            raise ValueError("start_s must be strictly increasing")


@dataclass(frozen=True)
class HourlyTemperature:
    """Outdoor temperature in degF on a regular hourly grid: ``degf[k]`` is the hour starting at
    ``t0_s + 3600 k`` (UTC epoch seconds); NaN marks a missing hour."""

    t0_s: int
    degf: FloatArray

    def hour_index(self, t_s: NDArray[np.int64]) -> NDArray[np.int64]:
        """Index of the first grid hour starting at or after each instant (``ceil``), possibly outside the grid."""
        return -((self.t0_s - t_s) // 3600)


@dataclass(frozen=True)
class FitMetrics:
    """Goodness of fit of a baseline model on its own data (eemeter ``ModelMetrics`` of the totals)."""

    n: int
    """Observations (days or hours) with both observed and predicted values."""
    num_parameters: int
    """Slopes, not counting the intercept (eemeter's convention: cdd_hdd 2, hdd/cdd 1, intercept 0)."""
    observed_mean: float
    """Mean of |observed|."""
    observed_variance: float
    """Population variance (ddof 0) of observed."""
    rmse_adj: float
    """sqrt(sum(residual^2) / (n - num_parameters))."""
    cv_rmse: float
    """rmse_adj / observed_mean (eemeter ``cvrmse_adj``)."""
    nmbe: float
    """sum(predicted - observed) / sum(observed)."""
    r_squared: float
    """Squared Pearson correlation of predicted and observed."""
    autocorr_resid: float
    """Lag-1 autocorrelation of the residuals in row order (gaps skipped, as pandas ``Series.autocorr``)."""


def _pearson(a: FloatArray, b: FloatArray) -> float:
    if a.shape[0] < 2:
        return math.nan
    da = a - a.mean()
    db = b - b.mean()
    denom = math.sqrt(float(np.dot(da, da)) * float(np.dot(db, db)))
    return float(np.dot(da, db)) / denom if denom > 0 else math.nan


def fit_metrics(observed: FloatArray, predicted: FloatArray, num_parameters: int) -> FitMetrics:
    """Metrics over the rows where both are finite, in row order."""
    both = np.isfinite(observed) & np.isfinite(predicted)
    obs = observed[both]
    pred = predicted[both]
    n = int(obs.shape[0])
    resid = pred - obs
    observed_mean = float(np.abs(obs).mean()) if n else math.nan
    rmse_adj = math.sqrt(float(np.dot(resid, resid)) / (n - num_parameters)) if n > num_parameters else math.nan
    total = float(obs.sum())
    return FitMetrics(
        n=n,
        num_parameters=num_parameters,
        observed_mean=observed_mean,
        observed_variance=float(obs.var()) if n else math.nan,
        rmse_adj=rmse_adj,
        cv_rmse=rmse_adj / observed_mean if observed_mean else math.nan,
        nmbe=float(resid.sum()) / total if total else math.nan,
        r_squared=_pearson(pred, obs) ** 2,
        autocorr_resid=_pearson(resid[1:], resid[:-1]),
    )


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _t_cdf(t: float, df: float) -> float:
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def student_t_ppf(p: float, df: float) -> float:
    """Quantile of Student's t with ``df`` degrees of freedom (``scipy.stats.t.ppf``), NaN if ``df <= 0``."""
    if not (0.0 < p < 1.0) or not df > 0:
        return math.nan
    if p < 0.5:
        return -student_t_ppf(1.0 - p, df)
    x = NormalDist().inv_cdf(p)
    lo, hi = 0.0, max(2.0 * x, 1.0)
    while _t_cdf(hi, df) < p:  # heavy tails (df < 1) need a wide bracket
        lo, hi = hi, hi * 2.0
    x = min(max(x, lo), hi)
    for _ in range(200):  # Newton from the normal quantile, kept inside the bracket by bisection
        f = _t_cdf(x, df) - p
        if f > 0:
            hi = x
        else:
            lo = x
        log_pdf = (
            math.lgamma((df + 1) / 2)
            - math.lgamma(df / 2)
            - 0.5 * math.log(df * math.pi)
            - (df + 1) / 2 * math.log1p(x * x / df)
        )
        step = f / math.exp(log_pdf)
        nxt = x - step
        if not lo < nxt < hi:
            nxt = 0.5 * (lo + hi)
        if abs(nxt - x) <= 1e-15 * max(1.0, abs(x)):
            return nxt
        x = nxt
    return x


def fsu_error_band(
    metrics: FitMetrics,
    post_obs: int,
    *,
    billing: bool = False,
    confidence_level: float = CONFIDENCE_LEVEL,
) -> float:
    """ASHRAE Guideline 14 fractional savings uncertainty band (energy units), as eemeter 3.2.0
    ``_compute_fsu_error`` computes it from the baseline totals metrics and the number of reporting
    observations: ``E_base * t * (a m^2 + b m + c) * CV * sqrt(n/n' * (1 + 2/n') / m_post)``, with
    ``n' = n (1 - rho) / (1 + rho)`` and ``m`` reporting months (``post_obs / 30`` for daily data).
    NaN where eemeter returns no band (no reporting data, |rho| = 1, zero baseline mean or variance)."""
    n = float(metrics.n)
    rho = metrics.autocorr_resid
    if (
        post_obs == 0
        or not math.isfinite(rho)
        or abs(rho) == 1.0
        or n == 0
        or metrics.observed_mean == 0
        or metrics.observed_variance == 0
    ):
        return math.nan
    t_stat = student_t_ppf(1.0 - (1.0 - confidence_level) / 2.0, n - metrics.num_parameters)
    n_prime = n * (1.0 - rho) / (1.0 + rho)
    if billing:
        a, b, c, months = -0.00022, 0.03306, 0.94054, float(post_obs)
    else:
        a, b, c, months = -0.00024, 0.03535, 1.00286, post_obs / 30.0
    total_base_energy = metrics.observed_mean * n
    band: float = total_base_energy * (
        t_stat
        * (a * months**2 + b * months + c)
        * (metrics.rmse_adj / metrics.observed_mean)
        * (n / n_prime * (1.0 + 2.0 / n_prime) * (1.0 / post_obs)) ** 0.5
    )
    return band

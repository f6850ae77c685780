"""CalTRACK 2.0 daily: baseline HDD/CDD model, counterfactual, metered savings and their uncertainty.

Same numbers as ``eemeter==3.2.0`` (``create_caltrack_daily_design_matrix`` ->
``fit_caltrack_usage_per_day_model`` -> ``metered_savings``) on the sample meters that package ships
(checked by ``tests/aggregation/test_caltrack_daily.py`` against a recorded fixture and live by
``scripts/verify_caltrack.py``).

How the usage rows become days (the ``districtpulse savings`` CSV semantics):

* A row runs from its timestamp until the next row's timestamp; the last row of a period runs until the
  period's END; a row followed by a gap of more than 25 hours covers 24 hours and the gap is missing data.
  Periods are half-open ``[START, END)`` and take the rows that start inside them.
* Usage per day = value / (hours / 24), so a 23-hour or 25-hour daylight-saving day is scaled to 24 hours.
  Electricity zeros are missing (CalTRACK 2.2.1.4); gas zeros are real.
* A day's temperature covers the hourly temperatures in [day start, next day start), as eemeter 3.2.0 does:
  a 25-hour day takes its degree days from its first 24 hours (and needs >= 90 % of its 25 hours), and in
  the counterfactual its degree-day terms count twice (eemeter multiplies by the number of 24-hour groups)
  while its base load is intercept x 25/24; a 23-hour day uses the mean of its 23 hours, not rescaled.
  A day with more than 12 hours of temperature is otherwise valid (eemeter's test is on the hours in the
  period, not on the non-missing ones).

The grid search runs in the numba kernel ``aggregation._caltrack_kernels.daily_grid_search``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from aggregation import _caltrack_kernels as K
from aggregation._caltrack_common import (
    FitMetrics,
    Fuel,
    HourlyTemperature,
    MeterSeries,
    fit_metrics,
    fsu_error_band,
)

__all__ = [
    "MODEL_TYPES",
    "DailyModel",
    "DailyPeriods",
    "NoModelError",
    "SavingsResult",
    "caltrack_daily",
    "daily_periods",
    "fit_daily",
    "model_from_row",
]

FloatArray = NDArray[np.float64]

MODEL_TYPES: dict[int, str] = {
    K.MODEL_INTERCEPT_ONLY: "intercept_only",
    K.MODEL_HDD_ONLY: "hdd_only",
    K.MODEL_CDD_ONLY: "cdd_only",
    K.MODEL_CDD_HDD: "cdd_hdd",
}
MIN_NONZERO_DAYS = 10
"""A degree-day column needs this many days with a non-zero value (CalTRACK daily)."""
MIN_TOTAL_DEGREE_DAYS = 20.0
"""... and this many degree days in total."""
HOUR_S = 3600
DAY_S = 86_400
MAX_DAY_S = 25 * HOUR_S
"""Longest local day (the day daylight-saving time ends); a longer gap to the next row is missing data."""


@dataclass(frozen=True)
class DailyPeriods:
    """The days (rows) of one period with everything the model needs, one entry per usage row."""

    start_s: NDArray[np.int64]
    end_s: NDArray[np.int64]
    observed: FloatArray
    """The row's value (NaN: missing, and electricity zeros)."""
    days: FloatArray
    """Row length in days (hours / 24)."""
    td: FloatArray
    """Degree-day temperature (degF), NaN when the day's temperature is not valid."""
    dd_days: FloatArray
    """Multiplier of the degree-day terms in prediction (2 for a 25-hour day, else 1)."""

    @property
    def usage_per_day(self) -> FloatArray:
        return self.observed / self.days


@dataclass(frozen=True)
class DailyModel:
    """A selected CalTRACK daily model. Slopes of absent terms are NaN, their balance points None."""

    model_type: str
    intercept: float
    beta_hdd: float = math.nan
    beta_cdd: float = math.nan
    heating_balance_point: int | None = None
    cooling_balance_point: int | None = None
    r_squared_adj: float = math.nan

    def params(self) -> dict[str, float | int | None]:
        """eemeter's ``model_params`` keys (absent terms omitted) plus ``r_squared_adj``."""
        out: dict[str, float | int | None] = {"intercept": self.intercept}
        if self.heating_balance_point is not None:
            out["beta_hdd"] = self.beta_hdd
            out["heating_balance_point"] = self.heating_balance_point
        if self.cooling_balance_point is not None:
            out["beta_cdd"] = self.beta_cdd
            out["cooling_balance_point"] = self.cooling_balance_point
        return out

    def _loads(self, td: FloatArray) -> tuple[FloatArray, FloatArray]:
        heating = np.zeros_like(td)
        cooling = np.zeros_like(td)
        if self.heating_balance_point is not None:
            heating = self.beta_hdd * np.maximum(self.heating_balance_point - td, 0.0)
        if self.cooling_balance_point is not None:
            cooling = self.beta_cdd * np.maximum(td - self.cooling_balance_point, 0.0)
        return heating, cooling

    def fitted_totals(self, periods: DailyPeriods) -> FloatArray:
        """Baseline fit per row in energy units: (intercept + slopes x daily degree days) x days."""
        heating, cooling = self._loads(periods.td)
        return (self.intercept + heating + cooling) * periods.days

    def counterfactual(self, periods: DailyPeriods) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Base, heating and cooling load per row (NaN where the temperature is not valid), as eemeter's
        ``caltrack_usage_per_day_predict``: base = intercept x days, degree-day terms x ``dd_days``."""
        heating, cooling = self._loads(periods.td)
        valid = np.isfinite(periods.td)
        base = np.where(valid, self.intercept * periods.days, np.nan)
        return (
            base,
            np.where(valid, heating * periods.dd_days, np.nan),
            np.where(valid, cooling * periods.dd_days, np.nan),
        )


@dataclass(frozen=True)
class SavingsResult:
    """Everything the ``savings`` command reports, for one meter."""

    method: str
    fuel: Fuel
    model_type: str
    params: dict[str, Any]
    """Daily: coefficients and balance points; hourly: occupancy and temperature bins per segment."""
    metrics: FitMetrics
    metered_savings: float
    """Sum over reporting intervals with both values of counterfactual - observed (positive = saved)."""
    counterfactual_total: float
    observed_total: float
    reporting_n: int
    fsu_error_band: float
    """ASHRAE G14 uncertainty of the metered savings at 90 % confidence (energy units); NaN if undefined."""
    baseline_start_s: NDArray[np.int64] = field(repr=False)
    baseline_observed: FloatArray = field(repr=False)
    baseline_fitted: FloatArray = field(repr=False)
    reporting_start_s: NDArray[np.int64] = field(repr=False)
    reporting_observed: FloatArray = field(repr=False)
    reporting_counterfactual: FloatArray = field(repr=False)
    baseline_td: FloatArray | None = field(default=None, repr=False)

    @property
    def fsu(self) -> float:
        """Fractional savings uncertainty: the band over the metered savings (NaN if either is undefined)."""
        return abs(self.fsu_error_band / self.metered_savings) if self.metered_savings else math.nan

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object; NaN becomes null."""

        def num(x: float) -> float | None:
            return None if x is None or not math.isfinite(x) else float(x)

        return {
            "method": self.method,
            "fuel": self.fuel,
            "model_type": self.model_type,
            "params": {k: (num(v) if isinstance(v, float) else v) for k, v in self.params.items()},
            "metered_savings": num(self.metered_savings),
            "counterfactual_total": num(self.counterfactual_total),
            "observed_total": num(self.observed_total),
            "reporting_intervals": self.reporting_n,
            "baseline_intervals": self.metrics.n,
            "cv_rmse": num(self.metrics.cv_rmse),
            "nmbe": num(self.metrics.nmbe),
            "r_squared": num(self.metrics.r_squared),
            "fsu": num(self.fsu),
            "fsu_error_band": num(self.fsu_error_band),
            "confidence_level": 0.9,
        }


def _period_rows(usage: MeterSeries, start_s: int, end_s: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Indices of the rows starting in [start_s, end_s) and where each one ends."""
    idx = np.flatnonzero((usage.start_s >= start_s) & (usage.start_s < end_s))
    nxt = np.append(usage.start_s[1:], np.int64(end_s))[idx]
    begin = usage.start_s[idx]
    ends = np.where(nxt - begin > MAX_DAY_S, begin + DAY_S, nxt)
    return idx, np.minimum(ends, end_s)


def daily_periods(
    usage: MeterSeries, temperature: HourlyTemperature, start_s: int, end_s: int, fuel: Fuel
) -> DailyPeriods:
    """The daily rows of ``usage`` in [start_s, end_s) with their day lengths and degree-day temperatures."""
    idx, ends = _period_rows(usage, start_s, end_s)
    begin = usage.start_s[idx]
    observed = usage.value[idx].astype(np.float64, copy=True)
    if fuel == "electricity":
        observed[observed == 0.0] = np.nan
    td = np.empty(idx.shape[0])
    dd_days = np.empty(idx.shape[0])
    K.daily_temperature_features(
        temperature.hour_index(begin), temperature.hour_index(ends), temperature.degf, td, dd_days
    )
    days = (ends - begin) / DAY_S
    return DailyPeriods(begin, ends, observed, days, td, dd_days)


def fit_daily(periods: DailyPeriods, fuel: Fuel) -> DailyModel | None:
    """Select the CalTRACK daily model of a baseline (None when no candidate qualifies)."""
    out = np.empty(K.OUT_WIDTH)
    K.daily_grid_search(
        np.ascontiguousarray(periods.usage_per_day),
        np.ascontiguousarray(periods.td),
        fuel == "electricity",
        MIN_NONZERO_DAYS,
        MIN_TOTAL_DEGREE_DAYS,
        out,
    )
    return model_from_row(out)


def model_from_row(out: FloatArray) -> DailyModel | None:
    """The :class:`DailyModel` encoded in one kernel result row."""
    code = int(out[K.OUT_MODEL])
    if code == K.MODEL_NONE:
        return None
    hbp = out[K.OUT_HBP]
    cbp = out[K.OUT_CBP]
    return DailyModel(
        model_type=MODEL_TYPES[code],
        intercept=float(out[K.OUT_INTERCEPT]),
        beta_hdd=float(out[K.OUT_BETA_HDD]),
        beta_cdd=float(out[K.OUT_BETA_CDD]),
        heating_balance_point=int(hbp) if math.isfinite(hbp) else None,
        cooling_balance_point=int(cbp) if math.isfinite(cbp) else None,
        r_squared_adj=float(out[K.OUT_R2_ADJ]),
    )


def num_parameters(model_type: str) -> int:
    """eemeter's parameter count for the metrics: the slopes only."""
    return {"cdd_hdd": 2, "hdd_only": 1, "cdd_only": 1}.get(model_type, 0)


class NoModelError(ValueError):
    """No candidate model qualified on the baseline (too few valid days, or every fit disqualified)."""


def caltrack_daily(
    usage: MeterSeries,
    temperature: HourlyTemperature,
    baseline: tuple[int, int],
    reporting: tuple[int, int],
    fuel: Fuel,
) -> SavingsResult:
    """Fit the baseline, predict the reporting period, and report metered savings with their uncertainty.

    ``baseline`` and ``reporting`` are ``(start_s, end_s)`` UTC epoch seconds, half-open. Raises
    :class:`NoModelError` when no model qualifies.
    """
    base = daily_periods(usage, temperature, baseline[0], baseline[1], fuel)
    model = fit_daily(base, fuel)
    if model is None:
        n_valid = int(np.count_nonzero(np.isfinite(base.usage_per_day) & np.isfinite(base.td)))
        raise NoModelError(f"no CalTRACK daily model qualifies on the baseline ({n_valid} valid days)")
    fitted = model.fitted_totals(base)
    observed_base = base.usage_per_day * base.days  # as eemeter: usage per day x days
    metrics = fit_metrics(
        np.where(np.isfinite(base.td), observed_base, np.nan), fitted, num_parameters(model.model_type)
    )
    rep = daily_periods(usage, temperature, reporting[0], reporting[1], fuel)
    b, h, c = model.counterfactual(rep)
    counterfactual = b + h + c
    both = np.isfinite(counterfactual) & np.isfinite(rep.observed)
    post_obs = int(np.count_nonzero(both))
    cf_total = float(counterfactual[both].sum())
    obs_total = float(rep.observed[both].sum())
    return SavingsResult(
        method="caltrack-daily",
        fuel=fuel,
        model_type=model.model_type,
        params={**model.params(), "r_squared_adj": model.r_squared_adj},
        metrics=metrics,
        metered_savings=float((counterfactual[both] - rep.observed[both]).sum()),
        counterfactual_total=cf_total,
        observed_total=obs_total,
        reporting_n=post_obs,
        fsu_error_band=fsu_error_band(metrics, post_obs),
        baseline_start_s=base.start_s,
        baseline_observed=observed_base,
        baseline_fitted=fitted,
        reporting_start_s=rep.start_s,
        reporting_observed=rep.observed,
        reporting_counterfactual=counterfactual,
        baseline_td=base.td,
    )

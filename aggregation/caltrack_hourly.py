"""CalTRACK 2.0 hourly: time-of-week and temperature model with occupancy and three-month weighted segments.

Same numbers as ``eemeter==3.2.0`` (``create_caltrack_hourly_preliminary_design_matrix`` ->
``segment_time_series(..., "three_month_weighted")`` -> ``estimate_hour_of_week_occupancy`` ->
``fit_temperature_bins`` -> ``fit_caltrack_hourly_model`` -> ``metered_savings``) within 0.1 % on the sample
meters, checked by ``tests/aggregation/test_caltrack_hourly.py`` and ``scripts/verify_caltrack.py``. The
fit is the numba kernel ``aggregation._caltrack_kernels.hourly_fit``: each segment's weighted least squares
is solved through the Schur complement of its 168 hour-of-week dummies (a 14 x 14 system at most) instead of
a dense 182-column regression.

How the usage rows become hours: rows are put in the UTC hour they start in and summed (finer data); an hour
without a row, or whose rows are all empty, is missing; electricity zeros are missing (CalTRACK 2.2.1.4)
before the sum. Hour of week and month come from each row's own UTC offset (its local wall-clock time), so
daylight-saving time moves them as it moves the building's schedule. An hour's temperature is the TEMP.csv
value of that hour.

eemeter 3.2.0 computes no whole-model metrics and no FSU for hourly models: CV(RMSE), NMBE and R^2 here are
computed from the in-sample prediction over the baseline hours with no parameter count (``n - 0``), and the
FSU is not reported (NaN; ASHRAE G14's approximation is calibrated for daily and monthly data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from aggregation import _caltrack_kernels as K
from aggregation._caltrack_common import Fuel, HourlyTemperature, MeterSeries, fit_metrics
from aggregation.caltrack_daily import NoModelError, SavingsResult

__all__ = ["SEGMENT_NAMES", "HourlyModel", "HourlyPeriod", "caltrack_hourly", "fit_hourly", "hourly_period"]

FloatArray = NDArray[np.float64]
HOUR_S = 3600
SEGMENT_NAMES = (
    "dec-jan-feb-weighted",
    "jan-feb-mar-weighted",
    "feb-mar-apr-weighted",
    "mar-apr-may-weighted",
    "apr-may-jun-weighted",
    "may-jun-jul-weighted",
    "jun-jul-aug-weighted",
    "jul-aug-sep-weighted",
    "aug-sep-oct-weighted",
    "sep-oct-nov-weighted",
    "oct-nov-dec-weighted",
    "nov-dec-jan-weighted",
)
"""eemeter's segment names; segment ``s`` is centred on month ``s + 1``."""


@dataclass(frozen=True)
class HourlyPeriod:
    """The hours of one period: start, observed usage, temperature, local hour of week (0 = Monday 0-1 h)
    and local month (1..12)."""

    start_s: NDArray[np.int64]
    observed: FloatArray
    temp: FloatArray
    how: NDArray[np.int64]
    month: NDArray[np.int64]


@dataclass(frozen=True)
class HourlyModel:
    """The 12 fitted segments (arrays as ``aggregation._caltrack_kernels.hourly_fit`` writes them)."""

    occupied: NDArray[np.bool_]
    keep_bins: NDArray[np.bool_]
    coef: FloatArray

    def predict(self, period: HourlyPeriod) -> FloatArray:
        out = np.empty(period.temp.shape[0])
        K.hourly_predict(period.temp, period.how, period.month, self.occupied, self.keep_bins, self.coef, out)
        return out

    def params(self) -> dict[str, dict[str, list[int]]]:
        """Occupancy (168 flags) and kept bin endpoints (degF) per segment, keyed by eemeter's names."""
        edges = np.asarray(K.DEFAULT_BINS)
        return {
            "occupancy": {n: [int(x) for x in self.occupied[s]] for s, n in enumerate(SEGMENT_NAMES)},
            "occupied_bins": {n: [int(e) for e in edges[self.keep_bins[s, 0]]] for s, n in enumerate(SEGMENT_NAMES)},
            "unoccupied_bins": {n: [int(e) for e in edges[self.keep_bins[s, 1]]] for s, n in enumerate(SEGMENT_NAMES)},
        }


def local_calendar(
    start_s: NDArray[np.int64], offset_s: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Hour of week (Monday 00:00 = 0) and month (1..12) of instants at the given UTC offsets."""
    local = start_s + offset_s
    days = local // 86_400
    hour = (local % 86_400) // HOUR_S
    how = ((days + 3) % 7) * 24 + hour  # 1970-01-01 was a Thursday (Monday = 0)
    month = local.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64) % 12 + 1
    return how.astype(np.int64), month.astype(np.int64)


def hourly_period(
    usage: MeterSeries, temperature: HourlyTemperature, start_s: int, end_s: int, fuel: Fuel
) -> HourlyPeriod:
    """The UTC hours starting in [start_s, end_s) with summed usage, temperature and local calendar."""
    first = -(-start_s // HOUR_S)
    last = -(-end_s // HOUR_S)
    hours = np.arange(first, last, dtype=np.int64)
    starts = hours * HOUR_S
    values = usage.value.astype(np.float64, copy=True)
    if fuel == "electricity":
        values[values == 0.0] = np.nan
    bucket = usage.start_s // HOUR_S - first
    inside = (bucket >= 0) & (bucket < hours.shape[0]) & np.isfinite(values)
    total = np.zeros(hours.shape[0])
    count = np.zeros(hours.shape[0])
    np.add.at(total, bucket[inside], values[inside])
    np.add.at(count, bucket[inside], 1.0)
    observed = np.where(count > 0, total, np.nan)
    # The local offset of an hour is that of the last row starting before the hour ends.
    row = np.searchsorted(usage.start_s, starts + HOUR_S - 1, side="right") - 1
    offsets = usage.offset_s[np.clip(row, 0, usage.offset_s.shape[0] - 1)]
    how, month = local_calendar(starts, offsets)
    k = (starts - temperature.t0_s) // HOUR_S
    in_grid = (k >= 0) & (k < temperature.degf.shape[0])
    temp = np.full(hours.shape[0], np.nan)
    temp[in_grid] = temperature.degf[k[in_grid]]
    return HourlyPeriod(starts, observed, temp, how, month)


def fit_hourly(period: HourlyPeriod) -> HourlyModel:
    """Fit the 12 segment models on the baseline hours."""
    occupied = np.zeros((K.N_SEGMENTS, K.N_HOW), dtype=np.bool_)
    keep_bins = np.zeros((K.N_SEGMENTS, 2, K.N_EDGES), dtype=np.bool_)
    coef = np.empty((K.N_SEGMENTS, K.N_COEF))
    K.hourly_fit(period.observed, period.temp, period.how, period.month, occupied, keep_bins, coef)
    return HourlyModel(occupied, keep_bins, coef)


def caltrack_hourly(
    usage: MeterSeries,
    temperature: HourlyTemperature,
    baseline: tuple[int, int],
    reporting: tuple[int, int],
    fuel: Fuel,
) -> SavingsResult:
    """Fit the baseline, predict the reporting period, report metered savings (``fsu_error_band`` NaN)."""
    base = hourly_period(usage, temperature, baseline[0], baseline[1], fuel)
    valid = np.isfinite(base.observed) & np.isfinite(base.temp)
    seen = np.zeros(K.N_HOW, dtype=np.bool_)
    seen[base.how[valid]] = True
    if not valid.any():
        raise NoModelError("no CalTRACK hourly model: the baseline has no hour with usage and temperature")
    model = fit_hourly(base)
    fitted = model.predict(base)
    fitted[~seen[base.how]] = np.nan  # eemeter has no coefficient for an hour of week never seen in the baseline
    metrics = fit_metrics(np.where(valid, base.observed, np.nan), fitted, 0)
    rep = hourly_period(usage, temperature, reporting[0], reporting[1], fuel)
    counterfactual = model.predict(rep)
    counterfactual[~seen[rep.how]] = np.nan
    both = np.isfinite(counterfactual) & np.isfinite(rep.observed)
    return SavingsResult(
        method="caltrack-hourly",
        fuel=fuel,
        model_type="caltrack_hourly",
        params=dict(model.params()),
        metrics=metrics,
        metered_savings=float((counterfactual[both] - rep.observed[both]).sum()),
        counterfactual_total=float(counterfactual[both].sum()),
        observed_total=float(rep.observed[both].sum()),
        reporting_n=int(np.count_nonzero(both)),
        fsu_error_band=math.nan,
        baseline_start_s=base.start_s,
        baseline_observed=np.where(valid, base.observed, np.nan),
        baseline_fitted=fitted,
        reporting_start_s=rep.start_s,
        reporting_observed=rep.observed,
        reporting_counterfactual=counterfactual,
    )

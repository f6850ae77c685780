"""Daily shapes by building use: electricity demand, occupancy, domestic hot water, EV arrivals.

Each shape is 24 hourly knots (the value at hh:30), interpolated smoothly. Electricity shapes are normalised
so that a week (5 weekdays + 2 weekend days) averages 1: the annual intensity parameter then sets the energy.
Shapes follow the usual published patterns: residential morning and evening peaks, offices and schools
occupied on weekday working hours, hot water drawn in the morning and evening.
"""

from __future__ import annotations

import numpy as np

from simulators.models.base import FloatArray, IntArray, profile

Knots = tuple[float, ...]


def _k(*parts: str) -> Knots:
    """24 knots from whitespace-separated strings; `x*n` repeats a value n times."""
    out: list[float] = []
    for token in " ".join(parts).split():
        value, _, times = token.partition("*")
        out.extend([float(value)] * int(times or 1))
    if len(out) != 24:
        raise ValueError(f"a daily shape needs 24 knots, got {len(out)}")
    return tuple(out)


_ELECTRICITY: dict[str, tuple[Knots, Knots]] = {
    "residential": (
        _k(
            "0.55 0.48 0.45 0.44 0.45 0.55 0.85 1.15 1.05 0.85 0.8 0.85",
            "0.9 0.85 0.85 0.95 1.2 1.5 1.65 1.6 1.5 1.35 1.05 0.75",
        ),
        _k(
            "0.6 0.5 0.47 0.45 0.45 0.5 0.6 0.8 1.05 1.2 1.2 1.15",
            "1.15 1.05 1.0 1.05 1.2 1.45 1.6 1.55 1.45 1.3 1.05 0.8",
        ),
    ),
    "commercial": (
        _k("0.4*6 0.6 1.1 1.6 1.75 1.8 1.8 1.75 1.8 1.75 1.65 1.4 1.0 0.7 0.5 0.45 0.42 0.4 0.4"),
        _k("0.4*9 0.45 0.5 0.5 0.5 0.5 0.45 0.4*9"),
    ),
    "education": (
        _k("0.3*6 0.5 1.3 2.0 2.1 2.1 2.0 1.9 1.8 1.4 1.0 0.7 0.5 0.45 0.4 0.35 0.3 0.3 0.3"),
        _k("0.3*24"),
    ),
}

_OCCUPANCY: dict[str, tuple[Knots, Knots]] = {
    "residential": (
        _k("0.95*6 0.9 0.7 0.4 0.3 0.3 0.3 0.35 0.3 0.3 0.4 0.6 0.8 0.9 0.9 0.9 0.95 0.95 0.95"),
        _k("0.95*8 0.8 0.6 0.5 0.5 0.5 0.5 0.5 0.6 0.7 0.8 0.9 0.9 0.95 0.95 0.95 0.95"),
    ),
    "commercial": (_k("0*7 0.2 0.6 0.8 0.8 0.6 0.7 0.8 0.75 0.6 0.3 0.1 0.02*6"), _k("0.02*24")),
    "education": (_k("0*7 0.3 0.9 0.95 0.9 0.6 0.9 0.9 0.6 0.2 0.1 0.05 0*6"), _k("0*24")),
}

_HOT_WATER = _k("0.3 0.2 0.2 0.2 0.3 0.8 1.8 2.2 1.6 1.0 0.8 0.8 0.9 0.8 0.7 0.8 1.0 1.3 1.6 1.7 1.6 1.3 0.9 0.5")

#: EV arrivals: relative intensity of session starts in each hour (residential: home charging after work;
#: workplace: arrivals in the morning).
_EV_ARRIVALS: dict[str, Knots] = {
    "residential": _k(
        "0.3 0.2 0.1 0.1 0.1 0.2 0.4 0.6 0.6 0.6 0.7 0.8 0.9 1.0 1.2 1.6 2.2 2.6 2.5 2.1 1.6 1.2 0.8 0.5"
    ),
    "workplace": _k("0.05*4 0.1 0.4 2.0 4.5 4.5 2.5 1.2 0.8 0.9 0.9 0.7 0.5 0.4 0.3 0.3 0.25 0.2 0.15 0.1 0.05"),
}


def use_of(use: str) -> str:
    """Map a registry building use to a known profile family (unknown uses behave as commercial)."""
    return use if use in _ELECTRICITY else "commercial"


def _weekly_mean(weekday: Knots, weekend: Knots) -> float:
    return (5 * float(np.mean(weekday)) + 2 * float(np.mean(weekend))) / 7


def electricity_shape(use: str, hour: FloatArray, weekday: IntArray) -> FloatArray:
    """Relative electricity demand (weekly mean 1)."""
    wd, we = _ELECTRICITY[use_of(use)]
    scale = _weekly_mean(wd, we)
    result: FloatArray = np.where(weekday < 5, profile(wd, hour), profile(we, hour)) / scale
    return result


def occupancy_fraction(use: str, hour: FloatArray, weekday: IntArray) -> FloatArray:
    """Share of a zone's capacity present."""
    wd, we = _OCCUPANCY[use_of(use)]
    result: FloatArray = np.where(weekday < 5, profile(wd, hour), profile(we, hour))
    return result


def hot_water_shape(use: str, hour: FloatArray, weekday: IntArray) -> FloatArray:
    """Relative domestic hot water draw (daily mean 1 for homes; offices follow their occupancy)."""
    if use_of(use) == "residential":
        result: FloatArray = profile(_HOT_WATER, hour) / float(np.mean(_HOT_WATER))
        return result
    return electricity_shape(use, hour, weekday)


def ev_arrival_shape(site: str, hour: float) -> float:
    """Relative EV arrival intensity (daily mean 1) at a local hour for a site type."""
    knots = _EV_ARRIVALS[site]
    return float(profile(knots, np.array([hour]))[0]) / float(np.mean(knots))


def ev_arrival_peak(site: str) -> float:
    return max(_EV_ARRIVALS[site]) / float(np.mean(_EV_ARRIVALS[site]))

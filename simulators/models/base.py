"""What every device-group model shares: the chunk of sample times it is asked for, and what it returns.

A model simulates all devices of one kind at once (arrays of shape devices x samples), one chunk of time
(one hour) after the other, carrying its state (registers, noise processes, EV sessions) between chunks.
Memory is therefore bounded by one chunk, however long the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from simulators.weather import WeatherSample

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MS_PER_HOUR = 3_600_000
J_PER_KWH = 3.6e6


@dataclass(frozen=True, slots=True)
class Chunk:
    """Sample times of one group for one chunk, with their local-time features and the weather."""

    t_ms: IntArray
    dt_s: int
    hour: FloatArray  # local hour of day, 0..24
    weekday: IntArray  # local weekday, 0 = Monday
    day: IntArray  # index of the local day within the run
    weather: WeatherSample

    @property
    def n(self) -> int:
        return int(self.t_ms.size)


@dataclass(slots=True)
class GroupOutput:
    """Values per metric (devices x samples) and energy per step for the truth.

    `energy[metric]` is the energy (kWh) a cumulative metric adds during [t_k, t_k + dt): the register at
    t_k plus it is the register at t_(k+1). `counterfactual[metric]` is the same without the interventions,
    present only for devices an intervention touches (rows listed in `counterfactual_rows`).
    """

    values: dict[str, FloatArray]
    strings: dict[str, list[list[str]]] = field(default_factory=dict)
    energy: dict[str, FloatArray] = field(default_factory=dict)
    counterfactual: dict[str, FloatArray] = field(default_factory=dict)
    counterfactual_rows: list[int] = field(default_factory=list)


def profile(knots: tuple[float, ...], hour: FloatArray) -> FloatArray:
    """A smooth daily shape from 24 hourly knot values (value at hh:30), periodic over the day."""
    xs = np.arange(-0.5, 25.0, 1.0)
    ys = np.array([knots[-1], *knots, knots[0]])
    result: FloatArray = np.interp(hour, xs, ys)
    return result


def lognormal_factor(z: FloatArray, sigma: FloatArray | float) -> FloatArray:
    """exp(sigma z - sigma^2/2): a positive multiplicative noise with mean 1 for standard normal z."""
    s = np.asarray(sigma, dtype=np.float64)
    result: FloatArray = np.exp(s * z - s * s / 2)
    return result

"""Interval energy from cumulative energy registers: the public wrapper around the numba kernel.

A meter reports its cumulative register (kWh) at irregular timestamps; :func:`interval_energy` turns that into
the energy of each interval and an :class:`EnergyEvent` per reading (missing, reset, rollover, glitch).
Arguments are checked here, never in the kernel.
"""

from __future__ import annotations

import math
from enum import IntEnum
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from aggregation import _kernels

__all__ = ["EnergyEvent", "IntervalEnergy", "interval_energy"]


class EnergyEvent(IntEnum):
    """What happened at a reading (stored as int8 in :attr:`IntervalEnergy.events`)."""

    NONE = _kernels.EVENT_NONE
    """A normal reading (or the first finite one, whose energy is NaN)."""
    MISSING = _kernels.EVENT_MISSING
    """The register is NaN (or infinite): energy NaN; the reading is skipped."""
    RESET = _kernels.EVENT_RESET
    """The register went down (meter replaced or reset): energy counted from zero (NaN if implausible)."""
    ROLLOVER = _kernels.EVENT_ROLLOVER
    """The register wrapped past its width (``rollover``): energy includes the wrap."""
    JUMP = _kernels.EVENT_JUMP
    """An implausible increase (above ``max_power_w``): energy NaN; the reading is ignored as a glitch."""


class IntervalEnergy(NamedTuple):
    """Energy since the previous accepted reading (kWh, NaN where unknown) and the event of each reading."""

    energy_kwh: NDArray[np.float64]
    events: NDArray[np.int8]

    def total(self) -> float:
        """Total energy (kWh), ignoring NaN; 0.0 when empty."""
        return float(np.nansum(self.energy_kwh))

    def event_counts(self) -> dict[EnergyEvent, int]:
        """How many readings had each event (every event is a key, zero counts included)."""
        counts = np.bincount(self.events, minlength=len(EnergyEvent))
        return {event: int(counts[event]) for event in EnergyEvent}


def _as_1d(name: str, values: ArrayLike) -> NDArray[np.generic]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    return array


def _timestamps(ts_ms: ArrayLike) -> NDArray[np.int64]:
    ts = _as_1d("ts_ms", ts_ms)
    if ts.size == 0:  # np.asarray([]) is float64: an empty list is fine
        return np.empty(0, dtype=np.int64)
    if ts.dtype.kind not in "iu":
        raise TypeError(f"ts_ms must be integer milliseconds, got dtype {ts.dtype}")
    if not np.can_cast(ts.dtype, np.int64) and int(ts.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"ts_ms does not fit int64: max is {int(ts.max())}")
    ts64 = np.ascontiguousarray(ts, dtype=np.int64)
    not_increasing = np.flatnonzero(ts64[1:] <= ts64[:-1])
    if not_increasing.size:
        i = int(not_increasing[0]) + 1
        raise ValueError(
            f"ts_ms must be strictly increasing: ts_ms[{i}] = {ts64[i]} <= ts_ms[{i - 1}] = {ts64[i - 1]}"
            f" (first offending index {i})"
        )
    return ts64


def _registers(register: ArrayLike) -> NDArray[np.float64]:
    values = _as_1d("register", register)
    if values.size and values.dtype.kind not in "iuf":
        raise TypeError(f"register must be real numbers, got dtype {values.dtype}")
    return np.ascontiguousarray(values, dtype=np.float64)


def _positive(name: str, value: float | None) -> float:
    """The kernel's encoding of an optional positive parameter: NaN means "off"."""
    if value is None:
        return math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number or None, got {value!r}")
    return float(value)


def interval_energy(
    ts_ms: ArrayLike,
    register: ArrayLike,
    *,
    rollover: float | None = None,
    max_power_w: float | None = None,
) -> IntervalEnergy:
    """Energy (kWh) of each interval between readings of a cumulative energy register.

    ``ts_ms``: strictly increasing timestamps (integer ms, any int dtype that fits int64).
    ``register``: cumulative register (kWh); NaN marks a missing reading.
    ``rollover``: register width (e.g. 100000.0 for a register that wraps from 99999.9 to 0), or None.
    ``max_power_w``: the meter's maximum power (W); an increase that needs more is a glitch (JUMP). None: no
    plausibility check.

    Energy of reading i is ``register[i] - register[j]`` with j the previous accepted reading; the first finite
    reading, missing readings and glitches get NaN. A register that goes down is a ROLLOVER (when ``rollover``
    is set and the wrapped increase is plausible) or else a RESET, counted from zero. Energy is never negative.

    Raises ``ValueError`` (shape, length, ordering, parameter range) or ``TypeError`` (dtype).
    """
    ts = _timestamps(ts_ms)
    values = _registers(register)
    if ts.shape[0] != values.shape[0]:
        raise ValueError(f"ts_ms and register must have the same length, got {ts.shape[0]} and {values.shape[0]}")
    width = _positive("rollover", rollover)
    power = _positive("max_power_w", max_power_w)

    out = np.empty(values.shape[0], dtype=np.float64)
    events = np.empty(values.shape[0], dtype=np.int8)
    if values.shape[0]:
        _kernels.interval_energy_1d(ts, values, width, power, out, events)
    return IntervalEnergy(out, events)

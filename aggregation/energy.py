"""Interval energy from cumulative energy registers: the public wrappers around the numba kernels.

A meter reports its cumulative register (kWh) at irregular timestamps; :func:`interval_energy` turns that into
the energy of each interval and an :class:`EnergyEvent` per reading (missing, reset, rollover, jump, glitch);
:func:`interval_energy_grouped` does the same for many devices in one pass. Arguments are checked here, never
in the kernels.

How a reading that does not plausibly continue the previous accepted one is classified (field lessons §5:
"distinguish glitch vs rollover vs replacement vs true reset"): the kernel looks ahead up to ``lookahead``
finite readings. If the register comes back to a plausible continuation of the last good reading, the readings
in between were an excursion and are ignored (GLITCH for a dip, JUMP for a spike). Otherwise a drop is a
ROLLOVER (if the wrapped increase is plausible) or a RESET (meter reset or replaced: counted from zero), and an
implausible rise is a RESET when the readings continue from the new level (meter replaced by one with a higher
register), else a JUMP. Without the look-ahead a single momentary 0 would re-base the meter to zero and, with a
maximum power, turn every later reading into a JUMP until the elapsed time could explain the old register.

A dip longer than the look-ahead (a meter that reads 0 through a long reboot): the drop is a RESET at first,
but the reading before it is remembered while the register counts nothing; when the register rises again to
plausibly continue that reading, the readings since were an excursion after all (GLITCH), and the energy is
counted from the reading before the drop. Without this (and without a maximum power) the return counted the
whole register as one interval (81,001 kWh for a reboot across which the meter counted 0.9). The daily job
gives the kernel the last reading above 0 before its look-back when a day starts inside such a dip.

The classification of the last ``lookahead`` readings of a series can change once later readings arrive: an
incremental job recomputes with that many readings of overlap.
"""

from __future__ import annotations

import math
from enum import IntEnum
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from aggregation import _kernels

__all__ = [
    "DEFAULT_LOOKAHEAD",
    "EnergyEvent",
    "IntervalEnergy",
    "interval_energy",
    "interval_energy_grouped",
    "interval_starts",
    "offsets_from_labels",
]

DEFAULT_LOOKAHEAD = 3
"""Readings a glitch may last: a dip of up to three readings (e.g. a meter that reports 0 while it reboots)."""


class EnergyEvent(IntEnum):
    """What happened at a reading (stored as int8 in :attr:`IntervalEnergy.events`)."""

    NONE = _kernels.EVENT_NONE
    """A normal reading (or the first finite one, whose energy is NaN)."""
    MISSING = _kernels.EVENT_MISSING
    """The register is NaN (or infinite): energy NaN; the reading is skipped."""
    RESET = _kernels.EVENT_RESET
    """The register was re-based (meter reset or replaced): energy counted from zero (NaN if implausible)."""
    ROLLOVER = _kernels.EVENT_ROLLOVER
    """The register wrapped past its width (``rollover``): energy includes the wrap."""
    JUMP = _kernels.EVENT_JUMP
    """An implausible increase (above ``max_power_w``): energy NaN; the reading is ignored as a spike."""
    GLITCH = _kernels.EVENT_GLITCH
    """A momentary drop: the register came back within ``lookahead`` readings; energy NaN, reading ignored."""


ACCEPTED_EVENTS = (EnergyEvent.NONE, EnergyEvent.RESET, EnergyEvent.ROLLOVER)
"""Events of the readings that become the base of the next interval (a finite first reading is NONE)."""


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


def as_int64(name: str, values: ArrayLike) -> NDArray[np.int64]:
    """A 1-D contiguous int64 copy/view of an integer array (an empty list is fine)."""
    array = _as_1d(name, values)
    if array.size == 0:  # np.asarray([]) is float64
        return np.empty(0, dtype=np.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got dtype {array.dtype}")
    if not np.can_cast(array.dtype, np.int64) and int(array.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} does not fit int64: max is {int(array.max())}")
    return np.ascontiguousarray(array, dtype=np.int64)


def _timestamps(ts_ms: ArrayLike) -> NDArray[np.int64]:
    ts = _as_1d("ts_ms", ts_ms)
    if ts.size and ts.dtype.kind not in "iu":
        raise TypeError(f"ts_ms must be integer milliseconds, got dtype {ts.dtype}")
    return as_int64("ts_ms", ts)


def _check_increasing(ts: NDArray[np.int64], labels: NDArray[np.int64] | None = None) -> None:
    """Strictly increasing timestamps (within each label's run, when labels are given)."""
    bad = np.flatnonzero(ts[1:] <= ts[:-1])  # few candidates: only the device boundaries in good data
    if labels is not None:
        bad = bad[labels[bad + 1] == labels[bad]]
    if bad.size:
        i = int(bad[0]) + 1
        raise ValueError(
            f"ts_ms must be strictly increasing{' within each device' if labels is not None else ''}:"
            f" ts_ms[{i}] = {ts[i]} <= ts_ms[{i - 1}] = {ts[i - 1]} (first offending index {i})"
        )


def as_float64(name: str, values: ArrayLike) -> NDArray[np.float64]:
    """A 1-D contiguous float64 copy/view of a real-valued array."""
    array = _as_1d(name, values)
    if array.size and array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float64)


def _positive(name: str, value: float | None) -> float:
    """The kernel's encoding of an optional positive parameter: NaN means "off"."""
    if value is None:
        return math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number or None, got {value!r}")
    return float(value)


def _lookahead(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"lookahead must be a non-negative integer, got {value!r}")
    return int(value)


def interval_energy(
    ts_ms: ArrayLike,
    register: ArrayLike,
    *,
    rollover: float | None = None,
    max_power_w: float | None = None,
    lookahead: int = DEFAULT_LOOKAHEAD,
) -> IntervalEnergy:
    """Energy (kWh) of each interval between readings of a cumulative energy register.

    ``ts_ms``: strictly increasing timestamps (integer ms, any int dtype that fits int64).
    ``register``: cumulative register (kWh); NaN marks a missing reading.
    ``rollover``: register width (e.g. 100000.0 for a register that wraps from 99999.9 to 0), or None.
    ``max_power_w``: the meter's maximum power (W); an increase that needs more is not plausible. None: no
    plausibility check (every increase is consumption).
    ``lookahead``: how many following finite readings a glitch may last (0: none; see the module docstring).

    Energy of reading i is ``register[i] - register[j]`` with j the previous accepted reading; the first finite
    reading, missing readings, glitches and jumps get NaN. Energy is never negative.

    Raises ``ValueError`` (shape, length, ordering, parameter range) or ``TypeError`` (dtype).
    """
    ts = _timestamps(ts_ms)
    values = as_float64("register", register)
    if ts.shape[0] != values.shape[0]:
        raise ValueError(f"ts_ms and register must have the same length, got {ts.shape[0]} and {values.shape[0]}")
    _check_increasing(ts)
    width = _positive("rollover", rollover)
    power = _positive("max_power_w", max_power_w)
    window = _lookahead(lookahead)

    out = np.empty(values.shape[0], dtype=np.float64)
    events = np.empty(values.shape[0], dtype=np.int8)
    if values.shape[0]:
        _kernels.interval_energy_1d(ts, values, width, power, window, out, events)
    return IntervalEnergy(out, events)


def offsets_from_labels(labels: ArrayLike, n_labels: int | None = None) -> tuple[NDArray[np.int64], int]:
    """Run offsets of non-decreasing, non-negative labels: label ``d`` owns ``offsets[d]:offsets[d + 1]``.

    Returns ``(offsets, n_labels)``; ``n_labels`` defaults to ``max(labels) + 1`` (labels absent from the data
    get empty runs). Raises ``ValueError`` when the labels are negative, not sorted, or not below ``n_labels``.
    """
    lab = as_int64("labels", labels)
    if lab.size and int(lab[0]) < 0:
        raise ValueError(f"labels must be non-negative, got {int(lab[0])}")
    down = np.flatnonzero(lab[1:] < lab[:-1])
    if down.size:
        i = int(down[0]) + 1
        raise ValueError(f"labels must be sorted (non-decreasing): labels[{i}] = {lab[i]} < labels[{i - 1}]")
    needed = int(lab[-1]) + 1 if lab.size else 0
    if n_labels is None:
        n_labels = needed
    elif n_labels < needed:
        raise ValueError(f"labels must be below n_labels = {n_labels}, got {needed - 1}")
    offsets = np.searchsorted(lab, np.arange(n_labels + 1, dtype=np.int64), side="left").astype(np.int64)
    return offsets, n_labels


def _per_device(name: str, value: float | ArrayLike | None, n_devices: int) -> NDArray[np.float64]:
    """A per-device parameter: None (off for all), one number for all, or one per device (NaN: off)."""
    if value is None:
        return np.full(n_devices, math.nan)
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        return np.full(n_devices, _positive(name, float(array)))
    if array.ndim != 1 or array.shape[0] < n_devices:
        raise ValueError(
            f"{name} must be a number or have one entry per device label (at least {n_devices}), got {array.shape}"
        )
    array = array[:n_devices]
    bad = ~np.isnan(array) & ~((array > 0) & np.isfinite(array))
    if bad.any():
        raise ValueError(f"{name}[{int(np.flatnonzero(bad)[0])}] must be positive and finite, or NaN for off")
    return np.ascontiguousarray(array)


def interval_energy_grouped(
    labels: ArrayLike,
    ts_ms: ArrayLike,
    register: ArrayLike,
    *,
    rollover: float | ArrayLike | None = None,
    max_power_w: float | ArrayLike | None = None,
    lookahead: int = DEFAULT_LOOKAHEAD,
) -> IntervalEnergy:
    """:func:`interval_energy` for many devices at once.

    ``labels``: device index of each reading, sorted (non-decreasing); within a device ``ts_ms`` is strictly
    increasing. ``rollover`` and ``max_power_w``: None, one value for every device, or an array indexed by
    label (length at least ``max(labels) + 1``, NaN = off for that device). The result is the same as calling
    :func:`interval_energy` on each device's readings and concatenating.
    """
    lab = as_int64("labels", labels)
    ts = _timestamps(ts_ms)
    values = as_float64("register", register)
    if not lab.shape[0] == ts.shape[0] == values.shape[0]:
        raise ValueError(
            f"labels, ts_ms and register must have the same length, got {lab.shape[0]}, {ts.shape[0]}"
            f" and {values.shape[0]}"
        )
    offsets, n_devices = offsets_from_labels(lab)
    _check_increasing(ts, lab)
    widths = _per_device("rollover", rollover, n_devices)
    powers = _per_device("max_power_w", max_power_w, n_devices)
    window = _lookahead(lookahead)

    out = np.empty(values.shape[0], dtype=np.float64)
    events = np.empty(values.shape[0], dtype=np.int8)
    if values.shape[0]:
        _kernels.interval_energy_grouped(offsets, ts, values, widths, powers, window, out, events)
    return IntervalEnergy(out, events)


def interval_starts(ts_ms: ArrayLike, events: ArrayLike) -> NDArray[np.int64]:
    """Start (ms) of the interval each reading's energy covers: the timestamp of the previous accepted reading.

    -1 where there is none (before the first accepted reading). With grouped results the start of a device's
    first finite-energy reading is always inside that device, because its first accepted reading has NaN energy.
    """
    ts = _timestamps(ts_ms)
    ev = np.asarray(events)
    if ev.shape != ts.shape:
        raise ValueError(f"ts_ms and events must have the same shape, got {ts.shape} and {ev.shape}")
    if ts.size == 0:
        return np.empty(0, dtype=np.int64)
    accepted = np.isin(ev, np.array(ACCEPTED_EVENTS, dtype=np.int8))
    last = np.maximum.accumulate(np.where(accepted, np.arange(ts.shape[0]), -1))
    previous = np.concatenate(([-1], last[:-1]))
    return np.where(previous >= 0, ts[np.maximum(previous, 0)], -1).astype(np.int64)

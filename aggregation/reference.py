"""Reference implementations: the readable spec each numba kernel is tested against.

Written independently of ``aggregation._kernels`` (never calls it), for clarity rather than speed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from aggregation.energy import EnergyEvent


def _switched_on(parameter: float | None) -> bool:
    """A register width or maximum power counts only when it is a positive, finite number."""
    return parameter is not None and math.isfinite(parameter) and parameter > 0


def _plausible(kwh: float, limit_kwh: float) -> bool:
    return 0.0 <= kwh <= limit_kwh


def interval_energy(
    ts_ms: ArrayLike,
    register: ArrayLike,
    *,
    rollover: float | None = None,
    max_power_w: float | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
    """Interval energy (kWh) and event code of each reading of a cumulative energy register.

    Spec, for reading ``i`` with previous accepted reading ``j``:

    * a non-finite register is MISSING: NaN energy, and ``j`` stays where it is;
    * the first finite reading has no ``j``: NaN energy, event NONE;
    * ``plausible(e)`` means ``0 <= e <= max_power_w * hours(ts[i] - ts[j]) / 1000`` (no upper bound when
      there is no maximum power);
    * register went up or stayed: energy ``register[i] - register[j]``, or, when that is not plausible, a JUMP:
      NaN energy, and ``j`` stays (a spike up and back is a glitch, not consumption);
    * register went down: a ROLLOVER with energy ``register[i] + rollover - register[j]`` if a width is set and
      that is plausible, else a RESET with energy ``register[i]`` (counted from zero), NaN if not plausible.
      Either way reading ``i`` becomes ``j``.
    """
    times: Sequence[int] = np.asarray(ts_ms, dtype=np.int64).tolist()
    values: Sequence[float] = np.asarray(register, dtype=np.float64).tolist()
    width = rollover if rollover is not None and _switched_on(rollover) else None
    power_w = max_power_w if max_power_w is not None and _switched_on(max_power_w) else None

    energy = [math.nan] * len(values)
    events = [EnergyEvent.NONE] * len(values)
    previous: int | None = None  # index of the last accepted reading

    for i, value in enumerate(values):
        if not math.isfinite(value):
            events[i] = EnergyEvent.MISSING
            continue
        if previous is None:
            previous = i
            continue

        hours = (times[i] - times[previous]) / 3_600_000.0
        limit_kwh = math.inf if power_w is None else power_w * hours / 1000.0

        increase = value - values[previous]
        if increase >= 0.0:
            if _plausible(increase, limit_kwh):
                energy[i] = increase
            else:
                events[i] = EnergyEvent.JUMP
                continue  # a glitch does not become the previous reading
        elif width is not None and _plausible(value + width - values[previous], limit_kwh):
            energy[i] = value + width - values[previous]
            events[i] = EnergyEvent.ROLLOVER
        else:
            events[i] = EnergyEvent.RESET
            if _plausible(value, limit_kwh):
                energy[i] = value
        previous = i

    return np.array(energy, dtype=np.float64), np.array(events, dtype=np.int8)

"""Numba kernels for cumulative registers: plain loops that write into caller-allocated ``out`` arrays.

Kernels never validate and never allocate; the public wrappers (``aggregation.energy``) check the
arguments, allocate the outputs and call in. Each kernel has an independent spec in
``aggregation.reference`` that the tests compare against; every edge case below names the test covering it
(in ``tests/aggregation/test_interval_energy.py``).

``cache=True`` stores the compiled machine code in ``aggregation/__pycache__`` so that a new process loads it
instead of recompiling (first call ~1 s without the cache). Nothing is compiled at import time.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numpy.typing import NDArray

# Event codes written into ``events`` (int8). ``aggregation.energy.EnergyEvent`` is the public IntEnum built
# from these; module-level ints are frozen into the kernel as compile-time constants.
EVENT_NONE = 0
EVENT_MISSING = 1
EVENT_RESET = 2
EVENT_ROLLOVER = 3
EVENT_JUMP = 4
EVENT_GLITCH = 5

MS_PER_HOUR = 3_600_000.0
W_PER_KW = 1000.0


@numba.njit(nogil=True, cache=True)
def _limit_kwh(max_power_w: float, check_power: bool, elapsed_ms: int) -> float:
    """Most energy the meter can plausibly count in ``elapsed_ms`` (inf: no plausibility check)."""
    if not check_power:
        return math.inf
    return max_power_w * (elapsed_ms / MS_PER_HOUR) / W_PER_KW


@numba.njit(nogil=True, cache=True)
def _comes_back(
    ts_ms: NDArray[np.int64],
    register: NDArray[np.float64],
    i: int,
    lookahead: int,
    prev_ts: int,
    prev_register: float,
    max_power_w: float,
    check_power: bool,
) -> int:
    """Index of the first of the next ``lookahead`` finite readings after ``i`` that plausibly continues the
    previous accepted reading (the register came back after an excursion), or -1."""
    seen = 0
    k = i + 1
    while k < register.shape[0] and seen < lookahead:
        value = register[k]
        if math.isfinite(value):
            seen += 1
            increase = value - prev_register
            if increase >= 0.0 and increase <= _limit_kwh(max_power_w, check_power, ts_ms[k] - prev_ts):
                return k
        k += 1
    return -1


@numba.njit(nogil=True, cache=True)
def _next_finite(register: NDArray[np.float64], i: int) -> int:
    k = i + 1
    while k < register.shape[0]:
        if math.isfinite(register[k]):
            return k
        k += 1
    return -1


@numba.njit(nogil=True, cache=True)
def interval_energy_1d(
    ts_ms: NDArray[np.int64],
    register: NDArray[np.float64],
    rollover: float,
    max_power_w: float,
    lookahead: int,
    out: NDArray[np.float64],
    events: NDArray[np.int8],
) -> None:
    """Interval energy (kWh) of each reading of one cumulative energy register.

    ``ts_ms`` must be strictly increasing (not checked here). ``rollover`` is the register width (off when
    not in (0, inf)); ``max_power_w`` is the meter's maximum power for the plausibility check (off when not
    in (0, inf), e.g. NaN); ``lookahead`` is how many following finite readings an excursion (glitch) may
    last (0: no look-ahead at all, which is the plain rule: every drop re-bases, every implausible rise is
    ignored).
    """
    # A NaN, zero, negative or infinite width/power switches the feature off:
    # test_kernel_switches_off_for_non_positive_or_non_finite_parameters.
    use_rollover = rollover > 0.0 and rollover < math.inf
    check_power = max_power_w > 0.0 and max_power_w < math.inf
    have_prev = False
    prev_register = 0.0
    prev_ts = 0
    excursion_end = 0  # readings before this index belong to a confirmed excursion (glitch or spike)
    # A drop re-based the register and it has not counted since: the reading before the drop, and the index of
    # the drop, in case the register comes back to continue it (a dip longer than the look-ahead).
    dip = False
    dip_register = 0.0
    dip_ts = 0
    dip_start = 0
    for i in range(register.shape[0]):
        value = register[i]
        if not math.isfinite(value):
            # Missing reading (NaN; an infinite register is no reading either): NaN out, and it does not
            # become the previous reading: test_hand_written[nan_gaps], [first_nan], [all_nan], [inf_is_missing].
            out[i] = np.nan
            events[i] = EVENT_MISSING
            continue
        if i < excursion_end:
            # Inside an excursion that comes back: ignored, a dip is a GLITCH and a spike a JUMP:
            # test_hand_written[dip_two_readings], [spike_two_readings], [dip_spike_mix].
            out[i] = np.nan
            events[i] = EVENT_GLITCH if value < prev_register else EVENT_JUMP
            continue
        if not have_prev:
            # First finite reading: nothing to subtract: test_hand_written[single], [first_nan], [normal].
            out[i] = np.nan
            events[i] = EVENT_NONE
            have_prev = True
            prev_register = value
            prev_ts = ts_ms[i]
            continue
        if dip and value > prev_register:
            # The register rises again after a drop that re-based it and counted nothing since. If the rise
            # plausibly continues the reading before the drop, the drop was a dip longer than the look-ahead
            # (a meter that read 0 through a long reboot): the readings since are an excursion after all and
            # the energy is counted from the reading before the drop, never from zero (that would count the
            # whole register): test_hand_written[long_dip_without_max_power], [dip_longer_than_lookahead].
            dip = False
            back_kwh = value - dip_register
            if back_kwh >= 0.0 and back_kwh <= _limit_kwh(max_power_w, check_power, ts_ms[i] - dip_ts):
                for m in range(dip_start, i):
                    if events[m] != EVENT_MISSING:
                        out[m] = np.nan
                        events[m] = EVENT_GLITCH if register[m] < dip_register else EVENT_JUMP
                out[i] = back_kwh
                events[i] = EVENT_NONE
                prev_register = value
                prev_ts = ts_ms[i]
                continue
        max_kwh = _limit_kwh(max_power_w, check_power, ts_ms[i] - prev_ts)
        delta = value - prev_register
        if delta >= 0.0 and delta <= max_kwh:
            # Normal operation (including an unchanged register): test_hand_written[normal], [flat],
            # [limit_is_inclusive], [nan_gap_widens_limit].
            out[i] = delta
            events[i] = EVENT_NONE
            prev_register = value
            prev_ts = ts_ms[i]
            continue
        # A drop or an implausible rise. If the register comes back to a plausible continuation of the
        # previous reading within `lookahead` readings, this was an excursion: ignore it and the readings up
        # to the return: test_hand_written[dip_and_back_is_a_glitch], [spike_up_and_back], [jump_then_long_gap].
        back = _comes_back(ts_ms, register, i, lookahead, prev_ts, prev_register, max_power_w, check_power)
        if back >= 0:
            out[i] = np.nan
            events[i] = EVENT_GLITCH if delta < 0.0 else EVENT_JUMP
            excursion_end = back
            continue
        if delta >= 0.0:
            # An implausible rise that does not come back. When the next reading continues plausibly from it,
            # the register was re-based upwards (meter replaced or set): a RESET, energy unknown unless the
            # new register itself is plausible: test_hand_written[step_up_is_reset]. Otherwise (no next
            # reading, or noise) it is ignored as a JUMP: test_hand_written[spike_at_end], [step_up_lookahead_off].
            nxt = _next_finite(register, i) if lookahead > 0 else -1
            steps = False
            if nxt >= 0:
                onward = register[nxt] - value
                steps = onward >= 0.0 and onward <= _limit_kwh(max_power_w, check_power, ts_ms[nxt] - ts_ms[i])
            if not steps:
                out[i] = np.nan
                events[i] = EVENT_JUMP
                continue
            events[i] = EVENT_RESET
            out[i] = value if value >= 0.0 and value <= max_kwh else np.nan
            dip = False
        else:
            wrapped = value + rollover - prev_register
            if use_rollover and wrapped >= 0.0 and wrapped <= max_kwh:
                # The register wrapped past its width: test_hand_written[rollover], [rollover_plausible].
                out[i] = wrapped
                events[i] = EVENT_ROLLOVER
                dip = False
            else:
                if not dip:  # remembered until the register counts again (a second drop keeps the first)
                    dip = True
                    dip_register = prev_register
                    dip_ts = prev_ts
                    dip_start = i
                # Reset / meter replaced: counted from zero: test_hand_written[reset], [rollover_off_is_reset],
                # [rollover_implausible_is_reset]. The energy is NaN when the new register is itself
                # implausible or negative (never a negative energy): [reset_implausible], [reset_to_negative].
                events[i] = EVENT_RESET
                out[i] = value if value >= 0.0 and value <= max_kwh else np.nan
        # A reset or rollover re-bases the register: the reading is the new previous like any accepted one.
        prev_register = value
        prev_ts = ts_ms[i]


@numba.njit(nogil=True, cache=True)
def interval_energy_grouped(
    offsets: NDArray[np.int64],
    ts_ms: NDArray[np.int64],
    register: NDArray[np.float64],
    rollover: NDArray[np.float64],
    max_power_w: NDArray[np.float64],
    lookahead: int,
    out: NDArray[np.float64],
    events: NDArray[np.int8],
) -> None:
    """:func:`interval_energy_1d` over many devices in one pass: device ``d`` owns readings
    ``offsets[d]:offsets[d + 1]`` and its own ``rollover[d]`` and ``max_power_w[d]``. Look-ahead never crosses
    into the next device: test_grouped_matches_one_device_at_a_time."""
    for d in range(offsets.shape[0] - 1):
        start = offsets[d]
        stop = offsets[d + 1]
        interval_energy_1d(
            ts_ms[start:stop],
            register[start:stop],
            rollover[d],
            max_power_w[d],
            lookahead,
            out[start:stop],
            events[start:stop],
        )

"""Numba kernels: plain loops that write into caller-allocated ``out`` arrays.

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

MS_PER_HOUR = 3_600_000.0
W_PER_KW = 1000.0


@numba.njit(nogil=True, cache=True)
def interval_energy_1d(
    ts_ms: NDArray[np.int64],
    register: NDArray[np.float64],
    rollover: float,
    max_power_w: float,
    out: NDArray[np.float64],
    events: NDArray[np.int8],
) -> None:
    """Interval energy (kWh) of each reading of one cumulative energy register.

    ``ts_ms`` must be strictly increasing (not checked here). ``rollover`` is the register width (off when
    not in (0, inf)); ``max_power_w`` is the meter's maximum power for the plausibility check (off when not
    in (0, inf), e.g. NaN).
    """
    # A NaN, zero, negative or infinite width/power switches the feature off:
    # test_kernel_switches_off_for_non_positive_or_non_finite_parameters.
    use_rollover = rollover > 0.0 and rollover < math.inf
    check_power = max_power_w > 0.0 and max_power_w < math.inf
    have_prev = False
    prev_register = 0.0
    prev_ts = 0
    for i in range(register.shape[0]):
        value = register[i]
        if not math.isfinite(value):
            # Missing reading (NaN; an infinite register is no reading either): NaN out, and it does not
            # become the previous reading: test_hand_written[nan_gaps], [first_nan], [all_nan], [inf_is_missing].
            out[i] = np.nan
            events[i] = EVENT_MISSING
            continue
        if not have_prev:
            # First finite reading: nothing to subtract: test_hand_written[single], [first_nan], [normal].
            out[i] = np.nan
            events[i] = EVENT_NONE
            have_prev = True
            prev_register = value
            prev_ts = ts_ms[i]
            continue
        # Most energy the meter can plausibly have counted since the previous reading (inf: no check):
        # test_hand_written[spike_up_and_back], [jump_then_long_gap].
        max_kwh = max_power_w * ((ts_ms[i] - prev_ts) / MS_PER_HOUR) / W_PER_KW if check_power else math.inf
        delta = value - prev_register
        if delta >= 0.0:
            if delta > max_kwh:
                # Glitch: NaN, and the reading is NOT the new previous, so a spike up and back costs one
                # reading and the next one is measured from the last good one: test_hand_written[spike_up_and_back].
                out[i] = np.nan
                events[i] = EVENT_JUMP
                continue
            # Normal operation (including an unchanged register): test_hand_written[normal], [flat].
            out[i] = delta
            events[i] = EVENT_NONE
        else:
            wrapped = value + rollover - prev_register
            if use_rollover and wrapped >= 0.0 and wrapped <= max_kwh:
                # The register wrapped past its width: test_hand_written[rollover], [rollover_plausible].
                out[i] = wrapped
                events[i] = EVENT_ROLLOVER
            else:
                # Reset / meter replaced: counted from zero: test_hand_written[reset], [rollover_off_is_reset],
                # [rollover_implausible_is_reset]. The energy is NaN when the new register is itself
                # implausible or negative (never a negative energy): [reset_implausible], [reset_to_negative].
                events[i] = EVENT_RESET
                if value >= 0.0 and value <= max_kwh:
                    out[i] = value
                else:
                    out[i] = np.nan
        # A reset re-bases the register, so a reset reading is the new previous like any accepted one (a dip
        # and back is a RESET, then JUMPs while implausible): test_hand_written[dip_and_back_is_reset_then_jumps].
        prev_register = value
        prev_ts = ts_ms[i]

"""Interval energy from cumulative registers: hand-written cases, kernel vs reference, properties, validation."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

import aggregation
from aggregation import (
    EnergyEvent,
    IntervalEnergy,
    _kernels,
    interval_energy,
    interval_energy_grouped,
    interval_starts,
    offsets_from_labels,
    reference,
)

NAN = np.nan
INF = np.inf
H = 3_600_000  # one hour in ms
N, M, R, W, J, G = (int(e) for e in EnergyEvent)  # NONE, MISSING, RESET, ROLLOVER (wrap), JUMP, GLITCH
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def seed() -> int:
    return 0


@pytest.fixture
def rng(seed: int) -> np.random.Generator:
    """Seeded generator; tests parametrize ``seed`` to vary it."""
    return np.random.default_rng(seed)


def _fast(ts: Any, register: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    result = interval_energy(ts, register, **kwargs)
    return result.energy_kwh, result.events


IMPLEMENTATIONS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "kernel": _fast,
    "reference": reference.interval_energy,
}

# name: (ts_ms, register, kwargs, expected energy, expected events). Hourly readings unless said otherwise, so
# max_power_w=1000 allows 1 kWh per interval.
HAND_WRITTEN: dict[str, tuple[list[int], list[float], dict[str, float], list[float], list[int]]] = {
    "normal": ([0, H, 2 * H, 3 * H], [100.0, 101.5, 103.0, 103.25], {}, [NAN, 1.5, 1.5, 0.25], [N, N, N, N]),
    "flat": ([0, H, 2 * H], [5.0, 5.0, 5.0], {}, [NAN, 0.0, 0.0], [N, N, N]),
    "nan_gaps": (
        [0, 1, 2, 3, 4, 5],
        [10.0, NAN, 13.0, NAN, NAN, 14.0],
        {},
        [NAN, NAN, 3.0, NAN, NAN, 1.0],
        [N, M, N, M, M, N],
    ),
    "inf_is_missing": ([0, 1, 2, 3, 4], [10.0, INF, 12.0, -INF, 13.0], {}, [NAN, NAN, 2.0, NAN, 1.0], [N, M, N, M, N]),
    "first_nan": ([0, 1, 2], [NAN, 10.0, 12.0], {}, [NAN, NAN, 2.0], [M, N, N]),
    "all_nan": ([0, 1, 2], [NAN, NAN, NAN], {}, [NAN, NAN, NAN], [M, M, M]),
    "empty": ([], [], {}, [], []),
    "single": ([7], [42.0], {}, [NAN], [N]),
    "single_nan": ([7], [NAN], {}, [NAN], [M]),
    "reset": ([0, 1, 2, 3], [10.0, 12.0, 1.0, 3.0], {}, [NAN, 2.0, 1.0, 2.0], [N, N, R, N]),
    "reset_to_negative": ([0, 1, 2], [10.0, -3.0, -1.0], {}, [NAN, NAN, 2.0], [N, R, N]),
    "reset_implausible": (
        [0, H, 2 * H],
        [500.0, 400.0, 401.0],
        {"max_power_w": 1000.0},
        [NAN, NAN, 1.0],
        [N, R, N],
    ),
    "rollover": ([0, H], [99990.0, 5.0], {"rollover": 100000.0}, [NAN, 15.0], [N, W]),
    "rollover_off_is_reset": ([0, H], [99990.0, 5.0], {}, [NAN, 5.0], [N, R]),
    "rollover_plausible": (
        [0, H],
        [99999.5, 0.5],
        {"rollover": 100000.0, "max_power_w": 2000.0},
        [NAN, 1.0],
        [N, W],
    ),
    "rollover_implausible_is_reset": (
        [0, H, 2 * H],
        [50000.0, 1.5, 2.5],
        {"rollover": 100000.0, "max_power_w": 2000.0},
        [NAN, 1.5, 1.0],
        [N, R, N],
    ),
    "spike_up_and_back": (
        [0, H, 2 * H, 3 * H],
        [100.0, 100.5, 5000.0, 101.25],
        {"max_power_w": 1000.0},
        [NAN, 0.5, NAN, 0.75],
        [N, N, J, N],
    ),
    "spike_without_max_power_is_reset": (
        [0, H, 2 * H, 3 * H],
        [100.0, 100.5, 5000.0, 101.25],
        {},
        [NAN, 0.5, 4899.5, 101.25],
        [N, N, N, R],
    ),
    "jump_then_long_gap": (
        [0, H, 2 * H, 10 * H],
        [0.0, 0.5, 5.0, 6.0],
        {"max_power_w": 1000.0},
        [NAN, 0.5, NAN, 5.5],
        [N, N, J, N],
    ),
    # A momentary 0 is a GLITCH: ignored, and the meter goes on from its last good reading. (Before the
    # look-ahead this was a RESET to 0 followed by JUMPs until time caught up with the old register: the flaw,
    # kept below as "lookahead_off".)
    "dip_and_back_is_a_glitch": (
        [0, H, 2 * H, 3 * H, 200 * H],
        [100.0, 100.5, 0.0, 101.0, 150.0],
        {"max_power_w": 1000.0},
        [NAN, 0.5, NAN, 0.5, 49.0],
        [N, N, G, N, N],
    ),
    "dip_and_back_without_max_power": (
        [0, H, 2 * H, 3 * H, 200 * H],
        [100.0, 100.5, 0.0, 101.0, 150.0],
        {},
        [NAN, 0.5, NAN, 0.5, 49.0],
        [N, N, G, N, N],
    ),
    # Without the look-ahead the 0 re-bases the meter; the register coming back to continue the reading before
    # the drop still shows the drop was a dip: energy from 100.5, never the whole register (before the dip
    # rule: [NAN, 0.5, 0.0, NAN, 150.0], [N, N, R, J, N]: 150 kWh of a meter that used 49.5).
    "lookahead_off": (
        [0, H, 2 * H, 3 * H, 200 * H],
        [100.0, 100.5, 0.0, 101.0, 150.0],
        {"max_power_w": 1000.0, "lookahead": 0},
        [NAN, 0.5, NAN, 0.5, 49.0],
        [N, N, G, N, N],
    ),
    "dip_two_readings": (
        [0, H, 2 * H, 3 * H, 4 * H],
        [100.0, 0.0, 0.0, 100.5, 101.0],
        {"max_power_w": 1000.0},
        [NAN, NAN, NAN, 0.5, 0.5],
        [N, G, G, N, N],
    ),
    # Four readings at 0 exceed the default look-ahead of 3, but the register comes back to continue 100.0:
    # a long dip, not a reset (it was [N, R, N, N, N, J] with the energy of the return unknown)...
    "dip_longer_than_lookahead": (
        [0, H, 2 * H, 3 * H, 4 * H, 5 * H],
        [100.0, 0.0, 0.0, 0.0, 0.0, 100.5],
        {"max_power_w": 1000.0},
        [NAN, NAN, NAN, NAN, NAN, 0.5],
        [N, G, G, G, G, N],
    ),
    # ... and without a maximum power, where it was a RESET to 0 and then the whole register as energy
    # (issue 14: 81,001 kWh instead of about 0.9).
    "long_dip_without_max_power": (
        [0, H, 2 * H, 3 * H, 4 * H, 5 * H, 6 * H, 7 * H],
        [81000.0, 81000.25, 0.0, 0.0, 0.0, 0.0, NAN, 81001.0],
        {},
        [NAN, 0.25, NAN, NAN, NAN, NAN, NAN, 0.75],
        [N, N, G, G, G, G, M, N],
    ),
    # A meter replaced by a new one: it counts from 0 and never comes back to the old register. Once it has
    # counted, the old register is forgotten: passing it later is ordinary counting.
    "reset_then_counts_past_the_old_register": (
        [0, H, 2 * H, 3 * H, 4 * H, 5 * H, 6 * H, 7 * H],
        [10.0, 0.0, 0.0, 4.0, 6.0, 8.0, 10.5, 12.0],
        {},
        [NAN, 0.0, 0.0, 4.0, 2.0, 2.0, 2.5, 1.5],
        [N, R, N, N, N, N, N, N],
    ),
    # A return too far above the old register for the time elapsed is not a continuation: the meter counts
    # from its new base (a step up, energy unknown).
    "long_dip_implausible_return": (
        [0, H, 2 * H, 3 * H, 4 * H, 5 * H, 6 * H],
        [100.0, 0.0, 0.0, 0.0, 0.0, 900.0, 900.5],
        {"max_power_w": 1000.0},
        [NAN, 0.0, 0.0, 0.0, 0.0, NAN, 0.5],
        [N, R, N, N, N, R, N],
    ),
    # A second drop inside the dip keeps the first one's reading: the return continues 100.0.
    "long_dip_with_two_drops": (
        [0, H, 2 * H, 3 * H, 4 * H, 5 * H, 6 * H],
        [100.0, 5.0, 5.0, 5.0, 5.0, 0.0, 101.0],
        {},
        [NAN, NAN, NAN, NAN, NAN, NAN, 1.0],
        [N, G, G, G, G, G, N],
    ),
    # ... and a glitch with a longer look-ahead.
    "dip_within_longer_lookahead": (
        [0, H, 2 * H, 3 * H, 4 * H, 5 * H],
        [100.0, 0.0, 0.0, 0.0, 0.0, 100.5],
        {"max_power_w": 1000.0, "lookahead": 4},
        [NAN, NAN, NAN, NAN, NAN, 0.5],
        [N, G, G, G, G, N],
    ),
    "glitch_with_nan_inside": (
        [0, H, 2 * H, 3 * H],
        [100.0, 0.0, NAN, 100.5],
        {"max_power_w": 1000.0},
        [NAN, NAN, NAN, 0.5],
        [N, G, M, N],
    ),
    "spike_two_readings": (
        [0, H, 2 * H, 3 * H],
        [100.0, 5000.0, 5000.0, 100.5],
        {"max_power_w": 1000.0},
        [NAN, NAN, NAN, 0.5],
        [N, J, J, N],
    ),
    "dip_spike_mix": (
        [0, H, 2 * H, 3 * H],
        [100.0, 0.0, 5000.0, 101.0],
        {"max_power_w": 1000.0},
        [NAN, NAN, NAN, 1.0],
        [N, G, J, N],
    ),
    # A rise that stays up (meter replaced by one with a higher register): re-based, energy unknown.
    "step_up_is_reset": (
        [0, H, 2 * H, 3 * H, 4 * H],
        [100.0, 100.5, 5000.0, 5000.5, 5001.0],
        {"max_power_w": 1000.0},
        [NAN, 0.5, NAN, 0.5, 0.5],
        [N, N, R, N, N],
    ),
    "step_up_lookahead_off": (
        [0, H, 2 * H, 3 * H],
        [100.0, 100.5, 5000.0, 5000.5],
        {"max_power_w": 1000.0, "lookahead": 0},
        [NAN, 0.5, NAN, NAN],
        [N, N, J, J],
    ),
    "spike_at_end": ([0, H, 2 * H], [100.0, 100.5, 5000.0], {"max_power_w": 1000.0}, [NAN, 0.5, NAN], [N, N, J]),
    "rollover_is_no_glitch": (
        [0, H, 2 * H],
        [99999.5, 0.5, 1.0],
        {"rollover": 100000.0, "max_power_w": 2000.0},
        [NAN, 1.0, 0.5],
        [N, W, N],
    ),
    "limit_is_inclusive": ([0, H], [0.0, 1.0], {"max_power_w": 1000.0}, [NAN, 1.0], [N, N]),
    "nan_gap_widens_limit": (
        [0, H, 2 * H],
        [0.0, NAN, 1.5],
        {"max_power_w": 1000.0},
        [NAN, NAN, 1.5],
        [N, M, N],
    ),
}


@pytest.mark.parametrize("impl", IMPLEMENTATIONS.values(), ids=IMPLEMENTATIONS.keys())
@pytest.mark.parametrize(
    ("ts", "register", "kwargs", "energy", "events"), HAND_WRITTEN.values(), ids=HAND_WRITTEN.keys()
)
def test_hand_written(
    impl: Callable[..., tuple[np.ndarray, np.ndarray]],
    ts: list[int],
    register: list[float],
    kwargs: dict[str, float],
    energy: list[float],
    events: list[int],
) -> None:
    got_energy, got_events = impl(np.array(ts, dtype=np.int64), np.array(register, dtype=np.float64), **kwargs)
    assert got_energy.dtype == np.float64
    assert got_events.dtype == np.int8
    assert_array_equal(got_energy, np.array(energy, dtype=np.float64), strict=True)
    assert_array_equal(got_events, np.array(events, dtype=np.int8), strict=True)


def test_kernel_switches_off_for_non_positive_or_non_finite_parameters() -> None:
    ts = np.array([0, H, 2 * H], dtype=np.int64)
    register = np.array([10.0, 20.0, 5.0])
    for off in (NAN, 0.0, -1.0, INF):
        out = np.empty(3)
        events = np.empty(3, dtype=np.int8)
        # off as max power: the +10 kWh in one hour is no JUMP; off as width: the drop is a RESET.
        _kernels.interval_energy_1d(ts, register, off, off, 3, out, events)
        assert_array_equal(out, [NAN, 10.0, 5.0])
        assert_array_equal(events, [N, N, R])


# ---------------------------------------------------------------------------------------------- vs reference


def random_meter(
    rng: np.random.Generator, n: int, *, rollover: float | None, max_power_w: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """A noisy meter: irregular timestamps, NaNs, resets (some to implausible values), rollovers, spikes."""
    gaps = rng.integers(1_000, 900_000, size=n)  # 1 s .. 15 min
    ts = 1_700_000_000_000 + np.cumsum(gaps)
    power_w = rng.uniform(0.0, 0.9 * (max_power_w or 5_000.0), size=n)
    increments = power_w * (gaps / 3_600_000.0) / 1000.0
    cumulative = rng.uniform(0.0, 30.0) + np.cumsum(increments)
    # Resets: the register restarts from a small value (sometimes more than the interval can explain).
    is_reset = rng.random(n) < 0.01
    restart = np.where(rng.random(n) < 0.5, 0.0, rng.uniform(0.0, 20.0, size=n))
    base_index = np.maximum.accumulate(np.where(is_reset, np.arange(n), 0))
    register = cumulative - np.where(base_index > 0, cumulative[base_index] - restart[base_index], 0.0)
    if rollover is not None:
        register %= rollover
    # Glitches: single readings up (spikes) and down (momentary 0 or a value below the last good one).
    spikes = rng.random(n) < 0.01
    register[spikes] += rng.uniform(5.0, 1e4, size=spikes.sum())
    dips = rng.random(n) < 0.01
    register[dips] *= np.where(rng.random(dips.sum()) < 0.5, 0.0, rng.uniform(0.0, 0.9, size=dips.sum()))
    register[rng.random(n) < 0.05] = np.nan
    if n > 10:  # a run of missing readings
        start = int(rng.integers(0, n - 10))
        register[start : start + 10] = np.nan
    return ts, register


CONFIGS = {
    "plain": {"rollover": None, "max_power_w": None},
    "rollover": {"rollover": 50.0, "max_power_w": None},
    "max_power": {"rollover": None, "max_power_w": 7_000.0},
    "both": {"rollover": 50.0, "max_power_w": 7_000.0},
}
VS_REFERENCE = [
    pytest.param(seed, size, config, id=f"seed{seed}-n{size}-{config}")
    for seed in (0, 1, 2)
    for size in (0, 1, 2, 1000)
    for config in CONFIGS
] + [pytest.param(seed, 1_000_000, "both", id=f"seed{seed}-n1000000-both") for seed in (0, 1, 2)]


@pytest.mark.parametrize(("seed", "size", "config"), VS_REFERENCE)
def test_kernel_matches_reference(rng: np.random.Generator, size: int, config: str) -> None:
    kwargs = CONFIGS[config]
    ts, register = random_meter(rng, size, **kwargs)
    fast = interval_energy(ts, register, **kwargs)
    ref_energy, ref_events = reference.interval_energy(ts, register, **kwargs)
    assert_allclose(fast.energy_kwh, ref_energy, rtol=1e-12, equal_nan=True)
    assert_array_equal(fast.events, ref_events, strict=True)
    assert not (fast.energy_kwh < 0).any()
    if size >= 1000:  # the generator exercises every branch the configuration allows
        counts = fast.event_counts()
        assert counts[EnergyEvent.MISSING] > 0
        assert (counts[EnergyEvent.JUMP] > 0) == (kwargs["max_power_w"] is not None)
        assert (counts[EnergyEvent.ROLLOVER] > 0) == (kwargs["rollover"] is not None)
        assert counts[EnergyEvent.RESET] > 0 or kwargs == CONFIGS["rollover"]
        assert counts[EnergyEvent.GLITCH] > 0


# ---------------------------------------------------------------------------------------------- properties

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, database=None)
SIZES = st.integers(min_value=0, max_value=60)
# Off switches (None/NaN/0/negative/inf) and real values, as the kernel sees them.
PARAMETERS = st.one_of(st.none(), st.sampled_from([NAN, 0.0, -1.0, INF]), st.floats(0.01, 1e3), st.floats(0.01, 1e6))


def _timestamps(n: int) -> st.SearchStrategy[np.ndarray]:
    gaps = hnp.arrays(np.int64, n, elements=st.integers(min_value=1, max_value=10**8))
    return gaps.map(lambda g: np.cumsum(g) + 1_700_000_000_000)


@st.composite
def raw_meters(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, float | None, float | None]:
    """Arbitrary NaN/inf-laced registers, or a NaN-laced walk that mostly goes up (resets, wraps, spikes)."""
    n = draw(SIZES)
    rollover, max_power_w = draw(PARAMETERS), draw(PARAMETERS)
    nan_laced = st.one_of(
        st.floats(min_value=-10.0, max_value=1e6, allow_nan=False, width=64),
        st.just(NAN),
        st.sampled_from([INF, -INF]),
    )
    if draw(st.booleans()):
        register = draw(hnp.arrays(np.float64, n, elements=nan_laced))
    else:
        steps = hnp.arrays(np.float64, n, elements=st.floats(min_value=-100.0, max_value=300.0))
        register = draw(st.floats(0.0, 1e3)) + np.cumsum(draw(steps))
        if rollover is not None and 0 < rollover < INF and draw(st.booleans()):
            register %= rollover  # a register that really wraps
        register[draw(hnp.arrays(np.bool_, n))] = np.nan
    return draw(_timestamps(n)), register, rollover, max_power_w


@st.composite
def monotone_meters(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(SIZES)
    start = draw(st.floats(min_value=0.0, max_value=1e6))
    steps = draw(hnp.arrays(np.float64, n, elements=st.floats(min_value=0.0, max_value=1e3)))
    register = start + np.cumsum(steps)
    missing = draw(hnp.arrays(np.bool_, n))
    register[missing] = np.nan
    return draw(_timestamps(n)), register


def _kernel(
    ts: np.ndarray, register: np.ndarray, rollover: float | None, max_power_w: float | None, lookahead: int
) -> tuple[np.ndarray, np.ndarray]:
    out = np.empty(register.shape[0])
    events = np.empty(register.shape[0], dtype=np.int8)
    _kernels.interval_energy_1d(
        ts,
        register,
        NAN if rollover is None else rollover,
        NAN if max_power_w is None else max_power_w,
        lookahead,
        out,
        events,
    )
    return out, events


def _telescopes(register: np.ndarray, energy: np.ndarray) -> None:
    finite = register[np.isfinite(register)]
    expected = finite[-1] - finite[0] if finite.size else 0.0
    scale = np.abs(finite).max() if finite.size else 0.0
    assert_allclose(np.nansum(energy), expected, rtol=1e-9, atol=1e-12 * max(scale, 1.0) * max(finite.size, 1))


@PROPERTY_SETTINGS
@given(meter=raw_meters(), lookahead=st.integers(0, 5))
def test_property_kernel_matches_reference(
    meter: tuple[np.ndarray, np.ndarray, float | None, float | None], lookahead: int
) -> None:
    ts, register, rollover, max_power_w = meter
    energy, events = _kernel(ts, register, rollover, max_power_w, lookahead)
    ref_energy, ref_events = reference.interval_energy(
        ts, register, rollover=rollover, max_power_w=max_power_w, lookahead=lookahead
    )
    assert_allclose(energy, ref_energy, rtol=1e-12, equal_nan=True)
    assert_array_equal(events, ref_events, strict=True)
    assert not (energy < 0).any()
    assert set(np.unique(events).tolist()) <= {int(e) for e in EnergyEvent}
    assert_array_equal(events == M, ~np.isfinite(register))
    for code in np.unique(events).tolist():
        event(f"saw {EnergyEvent(code).name}")
    if set(events.tolist()) <= {N, M}:  # no reset, rollover or glitch: the intervals add up
        _telescopes(register, energy)
    if not {R, W} & set(events.tolist()):  # glitches and jumps ignored: last accepted - first accepted
        _telescopes(np.where((events == N) & np.isfinite(register), register, NAN), energy)


@PROPERTY_SETTINGS
@given(meter=monotone_meters(), rollover=st.one_of(st.none(), st.floats(0.01, 1e6)))
def test_property_monotone_register_sums_to_last_minus_first(
    meter: tuple[np.ndarray, np.ndarray], rollover: float | None
) -> None:
    ts, register = meter
    result = interval_energy(ts, register, rollover=rollover)
    assert set(result.events.tolist()) <= {N, M}
    assert not (result.energy_kwh < 0).any()
    _telescopes(register, result.energy_kwh)


# ---------------------------------------------------------------------------------------------- the wrapper


def test_result_helpers() -> None:
    result = interval_energy([0, 1, 2, 3, 4], [10.0, 12.0, 1.0, NAN, 3.0])
    energy, events = result  # a NamedTuple: unpacks
    assert energy is result.energy_kwh
    assert events is result.events
    assert isinstance(result, IntervalEnergy)
    assert result.total() == 5.0
    assert result.event_counts() == {
        EnergyEvent.NONE: 3,
        EnergyEvent.MISSING: 1,
        EnergyEvent.RESET: 1,
        EnergyEvent.ROLLOVER: 0,
        EnergyEvent.JUMP: 0,
        EnergyEvent.GLITCH: 0,
    }
    assert interval_energy([], []).total() == 0.0
    assert interval_energy([], []).event_counts() == dict.fromkeys(EnergyEvent, 0)


def test_event_codes() -> None:
    assert {e.name: int(e) for e in EnergyEvent} == {
        "NONE": 0,
        "MISSING": 1,
        "RESET": 2,
        "ROLLOVER": 3,
        "JUMP": 4,
        "GLITCH": 5,
    }


def test_empty_input_returns_empty_arrays() -> None:
    for ts, register in (([], []), (np.empty(0, dtype=np.int32), np.empty(0, dtype=np.float32))):
        result = interval_energy(ts, register)
        assert result.energy_kwh.shape == result.events.shape == (0,)
        assert result.energy_kwh.dtype == np.float64
        assert result.events.dtype == np.int8


@pytest.mark.parametrize(
    "ts",
    [
        [0, H, 2 * H],
        np.array([0, H, 2 * H], dtype=np.uint32),
        np.array([0, H, 2 * H], dtype=np.int32),
        np.array([0, H, 2 * H], dtype=np.uint64),
        np.array([0, 99, H, 88, 2 * H], dtype=np.int64)[::2],  # not contiguous
    ],
    ids=["list", "uint32", "int32", "uint64", "strided"],
)
def test_accepts_other_integer_timestamps_and_registers(ts: Any) -> None:
    for register in ([1, 2, 4], np.array([1, 2, 4], dtype=np.float32), np.array([1.0, 9.0, 2.0, 9.0, 4.0])[::2]):
        result = interval_energy(ts, register, max_power_w=2000.0)
        assert_array_equal(result.energy_kwh, [NAN, 1.0, 2.0])


@pytest.mark.parametrize(
    ("ts", "register", "kwargs", "error", "message"),
    [
        ([0, 10, 5, 20], [1.0, 2.0, 3.0, 4.0], {}, ValueError, r"strictly increasing.*first offending index 2"),
        ([0, 10, 10], [1.0, 2.0, 3.0], {}, ValueError, r"ts_ms\[2\] = 10 <= ts_ms\[1\] = 10"),
        ([0, 1, 2], [1.0, 2.0], {}, ValueError, r"same length, got 3 and 2"),
        ([[0, 1], [2, 3]], [[1.0, 2.0], [3.0, 4.0]], {}, ValueError, r"ts_ms must be 1-D, got shape \(2, 2\)"),
        ([0, 1], [[1.0, 2.0]], {}, ValueError, r"register must be 1-D, got shape \(1, 2\)"),
        (5, 1.0, {}, ValueError, r"ts_ms must be 1-D, got shape \(\)"),
        ([0.0, 1.5], [1.0, 2.0], {}, TypeError, r"ts_ms must be integer milliseconds, got dtype float64"),
        (np.array([0, 2**63], dtype=np.uint64), [1.0, 2.0], {}, ValueError, r"does not fit int64"),
        ([0, 1], ["a", "b"], {}, TypeError, r"register must be real numbers"),
        ([0, 1], [1.0, 2.0], {"rollover": 0.0}, ValueError, r"rollover must be a positive finite number"),
        ([0, 1], [1.0, 2.0], {"rollover": NAN}, ValueError, r"rollover must be a positive finite number"),
        ([0, 1], [1.0, 2.0], {"max_power_w": -5.0}, ValueError, r"max_power_w must be a positive finite"),
        ([0, 1], [1.0, 2.0], {"max_power_w": INF}, ValueError, r"max_power_w must be a positive finite"),
    ],
    ids=[
        "unsorted",
        "duplicate",
        "length",
        "2d_ts",
        "2d_register",
        "scalar",
        "float_ts",
        "uint64_overflow",
        "str_register",
        "zero_rollover",
        "nan_rollover",
        "negative_power",
        "inf_power",
    ],
)
def test_wrapper_validation(
    ts: Any, register: Any, kwargs: dict[str, float], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        interval_energy(ts, register, **kwargs)


def test_import_compiles_nothing() -> None:
    code = (
        "import aggregation, aggregation._kernels as k, aggregation._bucket_kernels as b; "
        "compiled = [f'{m.__name__}.{n}' for m in (k, b) for n, f in vars(m).items() "
        "if hasattr(f, 'signatures') and f.signatures]; "
        "assert compiled == [], compiled; "
        "print(sorted(aggregation.__all__))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(sorted(aggregation.__all__))


# ---------------------------------------------------------------------------------------------- many devices


def random_fleet(
    rng: np.random.Generator, n_devices: int, mean_readings: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Devices with 0, 1 or many readings each (sorted by device then time), per-device width and power
    (NaN = off for that device), and some labels never used."""
    labels_, ts_, reg_ = [], [], []
    widths = np.where(rng.random(n_devices) < 0.5, 50.0, NAN)
    powers = np.where(rng.random(n_devices) < 0.7, 7_000.0, NAN)
    for d in range(n_devices):
        size = int(rng.choice([0, 1, 2, int(rng.integers(3, 2 * mean_readings + 4))]))
        width = None if np.isnan(widths[d]) else float(widths[d])
        power = None if np.isnan(powers[d]) else float(powers[d])
        ts, register = random_meter(rng, size, rollover=width, max_power_w=power)
        labels_.append(np.full(size, d))
        ts_.append(ts - int(rng.integers(0, 10**9)))  # devices overlap in time; ts restarts per device
        reg_.append(register)
    return np.concatenate(labels_), np.concatenate(ts_), np.concatenate(reg_), widths, powers


@pytest.mark.parametrize(("seed", "n_devices", "mean_readings"), [(0, 1, 50), (1, 40, 50), (2, 300, 3), (3, 50, 4000)])
@pytest.mark.parametrize("lookahead", [0, 1, 3])
def test_grouped_matches_one_device_at_a_time(
    rng: np.random.Generator, n_devices: int, mean_readings: int, lookahead: int
) -> None:
    labels, ts, register, widths, powers = random_fleet(rng, n_devices, mean_readings)
    got = interval_energy_grouped(labels, ts, register, rollover=widths, max_power_w=powers, lookahead=lookahead)
    expected_energy, expected_events = [], []
    for d in range(n_devices):
        mine = labels == d
        width = None if np.isnan(widths[d]) else float(widths[d])
        power = None if np.isnan(powers[d]) else float(powers[d])
        energy, events = reference.interval_energy(
            ts[mine], register[mine], rollover=width, max_power_w=power, lookahead=lookahead
        )
        expected_energy.append(energy)
        expected_events.append(events)
    assert_allclose(got.energy_kwh, np.concatenate(expected_energy), rtol=1e-12, equal_nan=True)
    assert_array_equal(got.events, np.concatenate(expected_events).astype(np.int8), strict=True)
    assert not (got.energy_kwh < 0).any()


def test_grouped_lookahead_stops_at_the_device_boundary() -> None:
    # Device 0 ends with a dip; device 1 starts high: that must not count as device 0's register coming back.
    labels = [0, 0, 0, 1, 1]
    ts = [0, H, 2 * H, 0, H]
    register = [100.0, 100.5, 0.0, 100.5, 101.0]
    got = interval_energy_grouped(labels, ts, register, max_power_w=1000.0)
    assert_array_equal(got.energy_kwh, [NAN, 0.5, 0.0, NAN, 0.5])
    assert_array_equal(got.events, [N, N, R, N, N])


def test_grouped_scalar_parameters_and_empty() -> None:
    got = interval_energy_grouped([0, 0, 2, 2], [0, H, 0, H], [99999.5, 0.5, 10.0, 11.0], rollover=1e5)
    assert_array_equal(got.energy_kwh, [NAN, 1.0, NAN, 1.0])
    assert_array_equal(got.events, [N, W, N, N])
    empty = interval_energy_grouped([], [], [])
    assert empty.energy_kwh.shape == empty.events.shape == (0,)


@pytest.mark.parametrize(
    ("labels", "ts", "kwargs", "message"),
    [
        ([1, 0], [0, 1], {}, r"labels must be sorted \(non-decreasing\): labels\[1\] = 0 < labels\[0\]"),
        ([-1, 0], [0, 1], {}, r"labels must be non-negative"),
        ([0, 0], [5, 5], {}, r"strictly increasing within each device: ts_ms\[1\] = 5 <= ts_ms\[0\] = 5"),
        (
            [0, 1],
            [0, 1],
            {"max_power_w": [1.0]},
            r"max_power_w must .* one entry per device label \(at least 2\)",
        ),
        ([0, 1], [0, 1], {"rollover": [1.0, -2.0]}, r"rollover\[1\] must be positive and finite, or NaN"),
        ([0, 1], [0, 1], {"rollover": 0.0}, r"rollover must be a positive finite number"),
        ([0, 1], [0, 1], {"lookahead": -1}, r"lookahead must be a non-negative integer"),
        ([0, 1], [0, 1], {"lookahead": 1.5}, r"lookahead must be a non-negative integer"),
        ([0, 1, 1], [0, 1], {}, r"same length, got 3, 2 and 2"),
    ],
    ids=[
        "unsorted",
        "negative",
        "duplicate_ts",
        "param_shape",
        "param_value",
        "scalar_zero",
        "lookahead",
        "float",
        "len",
    ],
)
def test_grouped_validation(labels: Any, ts: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        interval_energy_grouped(labels, ts, np.ones(len(ts)), **kwargs)


def test_ts_may_go_back_between_devices() -> None:
    got = interval_energy_grouped([0, 0, 1, 1], [10, 20, 0, 5], [1.0, 2.0, 3.0, 4.0])
    assert_array_equal(got.energy_kwh, [NAN, 1.0, NAN, 1.0])


def test_offsets_from_labels() -> None:
    offsets, n = offsets_from_labels([0, 0, 2, 2, 2, 5])
    assert n == 6
    assert_array_equal(offsets, [0, 2, 2, 5, 5, 5, 6], strict=False)
    assert offsets.dtype == np.int64
    offsets, n = offsets_from_labels([])
    assert n == 0
    assert_array_equal(offsets, [0])


def test_interval_starts() -> None:
    # first, normal, missing, jump (ignored), normal, glitch, reset, normal
    ts = [0, 10, 20, 30, 40, 50, 60, 70]
    events = [N, N, M, J, N, G, R, N]
    assert_array_equal(interval_starts(ts, events), [-1, 0, 10, 10, 10, 40, 40, 60], strict=False)
    assert interval_starts([], []).shape == (0,)
    with pytest.raises(ValueError, match="same shape"):
        interval_starts([0, 1], [N])

"""The clock's sync state and jump detection; the reconnect backoff."""

from __future__ import annotations

import random

import pytest

from devices.backoff import Backoff
from gateway.clock import Clock, SyncState, adjtimex_state, system_sync_state


class Fake:
    def __init__(self) -> None:
        self.wall = 1_790_000_000_000_000_000
        self.mono = 5_000_000_000
        self.sync: SyncState = "unsynchronised"

    def advance(self, seconds: float, *, step_s: float = 0) -> None:
        self.mono += int(seconds * 1e9)
        self.wall += int((seconds + step_s) * 1e9)


def test_clock_reports_sync_state_and_counts_steps_either_way() -> None:
    fake = Fake()
    clock = Clock(probe=lambda: (fake.sync, "fake"), wall_ns=lambda: fake.wall, mono_ns=lambda: fake.mono)
    assert clock.now_ms() == 1_790_000_000_000
    assert not clock.synced
    fake.advance(30)
    assert clock.refresh().jumps == 0  # wall and monotonic moved together
    fake.sync = "synchronised"
    fake.advance(30, step_s=-3600)  # NTP stepped the clock back an hour
    state = clock.refresh()
    assert (state.sync, state.jumps, state.last_jump_ms) == ("synchronised", 1, -3_600_000)
    assert clock.synced
    fake.advance(30, step_s=1.5)  # under the threshold: slewing, not a jump
    assert clock.refresh().jumps == 1
    fake.advance(30, step_s=86400)
    assert clock.refresh().last_jump_ms == 86_400_000
    assert clock.state().jumps == 2
    fake.sync = "unknown"
    clock.refresh()
    assert not clock.synced  # unknown counts as not synchronised


def test_the_system_probe_answers_with_a_known_state() -> None:
    state, source = system_sync_state()
    assert state in ("synchronised", "unsynchronised", "unknown")
    assert source in ("adjtimex", "timedatectl", "none")
    found = adjtimex_state()
    if found is not None:  # Linux with glibc: the read-only ntp_adjtime call works unprivileged
        assert (state, source) == found


def test_backoff_doubles_to_the_cap_with_jitter_in_the_upper_half() -> None:
    backoff = Backoff(1.0, 30.0, uniform=random.Random(4).uniform)
    delays = [backoff.next_delay() for _ in range(8)]
    steps = [1, 2, 4, 8, 16, 30, 30, 30]
    assert all(step / 2 <= d <= step for d, step in zip(delays, steps, strict=True))
    assert len({round(d / s, 6) for d, s in zip(delays, steps, strict=True)}) == 8  # jittered, not fixed
    again = Backoff(1.0, 30.0, uniform=random.Random(4).uniform)
    assert [again.next_delay() for _ in range(8)] == delays  # seeded: reproducible
    backoff.reset()
    assert backoff.next_delay() <= 1.0
    assert Backoff(1.0, 30.0).ceiling(10_000) == 30.0  # no overflow


def test_backoff_rejects_a_cap_below_the_base() -> None:
    with pytest.raises(ValueError, match="base_s <= max_s"):
        Backoff(10.0, 1.0)

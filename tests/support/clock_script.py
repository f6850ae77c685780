"""A scripted clock and an adapter that reads through its phases (boot in 1970, a stale saved time, synchronised,
NTP lost again): for tests/gateway/test_clock_flag_gateway.py and, on the real services,
tests/integration/test_clock_flag_e2e.py."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.adapters import DeviceRef, ReadingSink
from gateway.adapters.simulated import values_fn
from gateway.clock import Clock, SyncState

T0 = 1_790_000_000_000  # 2026-09-21T14:13:20Z


class ScriptedTime:
    """The wall clock and the sync probe behind a real `gateway.clock.Clock`, set by the adapter."""

    def __init__(self, wall_ms: int, sync: SyncState) -> None:
        self.wall_ms = wall_ms
        self.sync: SyncState = sync

    def wall_ns(self) -> int:
        return self.wall_ms * 1_000_000

    def probe(self) -> tuple[SyncState, str]:
        return self.sync, "scripted"

    def clock(self) -> Clock:
        return Clock(probe=self.probe, wall_ns=self.wall_ns)


@dataclass(frozen=True)
class Phase:
    """`ticks` readings per device, one a second from `start_ms`, while the system says `sync`."""

    name: str
    sync: SyncState
    start_ms: int
    ticks: int


@dataclass
class PhasedAdapter:
    """Puts readings without a timestamp (the spool stamps and flags them from the gateway's clock), phase by
    phase. At a phase change it moves the scripted wall clock and sync state, then waits until the gateway's
    own `Clock.refresh()` (its main loop) has seen the new state: exactly what a real adapter experiences.
    `truth` records (device, ts) -> phase name for every reading put."""

    devices_: Sequence[DeviceRef]
    phases: Sequence[Phase]
    time: ScriptedTime
    clock: Clock
    truth: dict[tuple[str, int], str] = field(default_factory=dict)

    def devices(self) -> Sequence[DeviceRef]:
        return self.devices_

    def run(self, sink: ReadingSink, stop: threading.Event) -> None:
        fns: list[tuple[str, Callable[[int], Any]]] = [(d.id, values_fn(d, 1)) for d in self.devices_]
        for phase in self.phases:
            self.time.sync, self.time.wall_ms = phase.sync, phase.start_ms
            while self.clock.synced != (phase.sync == "synchronised"):
                if stop.wait(0.002):
                    return
            for k in range(phase.ticks):
                ts = self.time.wall_ms = phase.start_ms + k * 1000
                for device_id, fn in fns:
                    sink.put(device_id, fn(ts))
                    self.truth[(device_id, ts)] = phase.name


PHASES = (
    Phase("boot", "unsynchronised", 30_000, 3),  # no saved time: 1970
    Phase("stale", "unknown", T0 - 2 * 86_400_000 + 7, 4),  # fake-hwclock's saved time; no probe answers
    Phase("synced", "synchronised", T0, 5),
    Phase("lost", "unsynchronised", T0 + 5_000, 2),  # NTP lost again
)

"""The gateway's clock: UTC milliseconds, and whether the system clock can be trusted.

A Raspberry Pi has no real-time clock: it boots at the time `fake-hwclock` saved at the last shutdown (or at
1970) and jumps when NTP synchronises, possibly backwards. The gateway stamps readings with the wall clock
anyway (a reading must carry the time it was taken), but it

- knows whether the kernel considers the clock synchronised: `ntp_adjtime(2)` with no modes is a read-only
  query that any user may make; it returns TIME_ERROR while the kernel's STA_UNSYNC flag is set, which is
  what chrony, ntpd and systemd-timesyncd clear once they have disciplined the clock (`timedatectl`'s
  `NTPSynchronized` is computed the same way). Where that call is not available, `timedatectl show` is
  asked; where neither answers, the state is "unknown" and readings are flagged like unsynchronised ones;
- notices jumps: the wall clock is compared with the monotonic clock at every `refresh()`, and a step
  larger than `jump_threshold_ms` either way is logged and counted.

The spool orders readings by per-device sequence numbers assigned at insertion, never by timestamp, so a
jump changes the timestamps readings carry but never their order or their integrity.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

SyncState = Literal["synchronised", "unsynchronised", "unknown"]
SyncProbe = Callable[[], tuple[SyncState, str]]

_TIME_ERROR = 5  # ntp_adjtime's return value while the clock is not synchronised
_STA_UNSYNC = 0x0040


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _Timex(ctypes.Structure):
    """`struct timex` of <sys/timex.h>; the trailing padding absorbs fields newer kernels may add."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 32),
    )


def adjtimex_state() -> tuple[SyncState, str] | None:
    """The kernel's view through `ntp_adjtime` (modes = 0: read only), or None where libc has no such call."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        call = libc.ntp_adjtime
    except (OSError, AttributeError):
        return None
    timex = _Timex()
    rc = call(ctypes.byref(timex))
    if rc < 0:
        return None
    synced = rc != _TIME_ERROR and not timex.status & _STA_UNSYNC
    return ("synchronised" if synced else "unsynchronised"), "adjtimex"


def timedatectl_state() -> tuple[SyncState, str] | None:
    """systemd's view (`timedatectl show -p NTPSynchronized`), or None where it cannot answer."""
    exe = shutil.which("timedatectl")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "show", "-p", "NTPSynchronized", "--value"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = out.stdout.strip()
    if out.returncode != 0 or value not in ("yes", "no"):
        return None
    return ("synchronised" if value == "yes" else "unsynchronised"), "timedatectl"


def system_sync_state() -> tuple[SyncState, str]:
    """adjtimex first (a syscall, no process), then timedatectl, else unknown."""
    for probe in (adjtimex_state, timedatectl_state):
        found = probe()
        if found is not None:
            return found
    return "unknown", "none"


@dataclass(frozen=True, slots=True)
class ClockState:
    sync: SyncState
    source: str
    jumps: int
    last_jump_ms: int

    def as_dict(self) -> dict[str, object]:
        return {"sync": self.sync, "source": self.source, "jumps": self.jumps, "last_jump_ms": self.last_jump_ms}


class Clock:
    """Wall-clock milliseconds plus a cached synchronisation state, refreshed by the gateway's main loop.

    `now_ms()` and `synced` are cheap and thread-safe (adapters call them per reading); `refresh()` does the
    probing and runs on one thread only.
    """

    def __init__(
        self,
        *,
        probe: SyncProbe = system_sync_state,
        wall_ns: Callable[[], int] = time.time_ns,
        mono_ns: Callable[[], int] = time.monotonic_ns,
        jump_threshold_ms: int = 2000,
    ) -> None:
        self._probe = probe
        self._wall_ns = wall_ns
        self._mono_ns = mono_ns
        self.jump_threshold_ms = jump_threshold_ms
        self._lock = threading.Lock()
        self._sync: SyncState = "unknown"
        self._source = "none"
        self._jumps = 0
        self._last_jump_ms = 0
        self._anchor: tuple[int, int] | None = None
        self.refresh()

    def now_ms(self) -> int:
        return self._wall_ns() // 1_000_000

    @property
    def synced(self) -> bool:
        """True only when the system says the clock is synchronised ("unknown" counts as not)."""
        return self._sync == "synchronised"

    def refresh(self) -> ClockState:
        """Probe the sync state and check the wall clock against the monotonic clock for a step."""
        sync, source = self._probe()
        wall, mono = self._wall_ns(), self._mono_ns()
        with self._lock:
            if sync != self._sync:
                log.info("clock %s (%s)", sync, source)
            self._sync, self._source = sync, source
            if self._anchor is not None:
                step_ms = ((wall - self._anchor[0]) - (mono - self._anchor[1])) // 1_000_000
                if abs(step_ms) >= self.jump_threshold_ms:
                    self._jumps += 1
                    self._last_jump_ms = step_ms
                    log.warning("wall clock stepped by %+d ms", step_ms)
            self._anchor = (wall, mono)
            return ClockState(self._sync, self._source, self._jumps, self._last_jump_ms)

    def state(self) -> ClockState:
        with self._lock:
            return ClockState(self._sync, self._source, self._jumps, self._last_jump_ms)

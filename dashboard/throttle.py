"""Login throttling: failed logins counted per user name and per client address, then a lockout.

Why both keys: a guesser aiming at one account from many addresses is stopped by the user rule; one
address trying many user names (or spraying one password over every account) is stopped by the address
rule. While either key is locked, `/login` answers 429 with `Retry-After` *without checking the password*,
so a lockout cannot be used as an oracle (a right password is refused too, and costs nothing).

- Sliding window: a key keeps the times of its last `max_failures` failures (a deque of that length, never
  more); the failure that makes `max_failures` of them fall within `window_s` starts a lockout and clears
  them, so after the lockout a guesser gets `max_failures` more tries, then a lockout twice as long (capped
  at `max_lockout_s`). A key with no failure for `reset_after_s` starts over at `lockout_s`.
- A successful login clears the *user's* entry, never the address's: otherwise a guesser with one valid
  account could reset its address between guesses at other accounts.
- Attempts refused during a lockout are not failures: they neither extend nor double the lockout (as
  Grafana), so a user locked out by someone else can log in as soon as `Retry-After` says.
- Memory is bounded: each table holds at most `max_tracked` keys, least recently used evicted, so a flood of
  made-up user names costs a fixed amount of memory (it can push out older entries: the address rule still
  holds the flooding address). User names longer than any configured one (64) are keyed by their digest.
- Bearer tokens (`Authorization: Bearer`, the API's and /metrics') are guessed the same way: a wrong token
  names no user, so it counts for the address alone (`user=None`), in the same table and the same totals
  as the login form's failures; a locked address is refused both (429 + Retry-After, token not checked).
- IPv6 clients are keyed by their /64, the block one subscriber usually gets; IPv4 by the address.
- The clock is injected (`time.monotonic` by default) so tests drive it without sleeping.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from dashboard.config import ThrottleSection

Scope = Literal["user", "address"]
NAME_LIMIT = 64  # config.UserEntry.name's max_length: a longer name can never log in
_MAX_DOUBLINGS = 40  # 2**40 lockouts is beyond any cap; keeps the power finite


@dataclass(slots=True)
class _Entry:
    failures: deque[float]
    locked_until: float = -math.inf
    lockouts: int = 0  # lockouts since the last reset: the next one lasts lockout_s * 2**lockouts
    last_failure: float = -math.inf


@dataclass(frozen=True, slots=True)
class Lockout:
    """A lockout started by one failed attempt: which keys it locked and for how long (seconds)."""

    scopes: tuple[Scope, ...]
    seconds: float


@dataclass(slots=True)
class LoginCounters:
    """Totals for /metrics: failures by reason, and lockouts started (one per attempt that locked a key)."""

    bad_credentials: int = 0
    locked_out: int = 0
    lockouts: int = 0


class _Table:
    """One key kind (user names or addresses): an LRU-bounded map of key -> entry."""

    def __init__(self, config: ThrottleSection) -> None:
        self._config = config
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def _get(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry.locked_until and now - entry.last_failure >= self._config.reset_after_s:
            del self._entries[key]  # quiet long enough: forgotten, the doubling starts over
            return None
        self._entries.move_to_end(key)
        return entry

    def locked_for(self, key: str, now: float) -> float:
        entry = self._get(key, now)
        return 0.0 if entry is None else max(entry.locked_until - now, 0.0)

    def fail(self, key: str, now: float) -> float | None:
        """Record a failure; the lockout's length if this failure started one."""
        cfg = self._config
        entry = self._get(key, now)
        if entry is None:
            entry = _Entry(deque(maxlen=cfg.max_failures))
            self._entries[key] = entry
            while len(self._entries) > cfg.max_tracked:
                self._entries.popitem(last=False)
        entry.last_failure = now
        entry.failures.append(now)
        if len(entry.failures) < cfg.max_failures or now - entry.failures[0] >= cfg.window_s:
            return None
        seconds = min(cfg.lockout_s * 2.0 ** min(entry.lockouts, _MAX_DOUBLINGS), cfg.max_lockout_s)
        entry.locked_until = now + seconds
        entry.lockouts += 1
        entry.failures.clear()
        return seconds

    def reset(self, key: str) -> None:
        self._entries.pop(key, None)


def user_key(user: str) -> str:
    """The name itself, or a fixed-size digest for a name too long to be any configured user's."""
    if len(user) <= NAME_LIMIT:
        return user
    return "sha256:" + hashlib.sha256(user.encode("utf-8", errors="replace")).hexdigest()


def address_key(host: str) -> str:
    """The IPv4 address, the IPv6 /64, or the text as given if it is not an address (e.g. a test client)."""
    try:
        ip = ipaddress.ip_address(host.strip())
    except ValueError:
        return host[:NAME_LIMIT]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d from a dual-stack listener is the IPv4 client
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass
class LoginThrottle:
    """Per user and per address failure counting with doubling lockouts; see the module docstring."""

    config: ThrottleSection = field(default_factory=ThrottleSection)
    clock: Callable[[], float] = time.monotonic
    counters: LoginCounters = field(default_factory=LoginCounters)

    def __post_init__(self) -> None:
        self.users = _Table(self.config)
        self.addresses = _Table(self.config)

    def retry_after(self, user: str | None, address: str) -> int | None:
        """Whole seconds to wait if the user or the address is locked out (counted as a refusal), else None.

        `user=None` (a bearer token): the address alone.
        """
        now = self.clock()
        by_user = 0.0 if user is None else self.users.locked_for(user_key(user), now)
        wait = max(by_user, self.addresses.locked_for(address_key(address), now))
        if wait <= 0:
            return None
        self.counters.locked_out += 1
        return max(math.ceil(wait), 1)

    def failed(self, user: str | None, address: str) -> Lockout | None:
        """Count a wrong user or password (or, `user=None`, a wrong bearer token); the lockout it started, if any."""
        now = self.clock()
        self.counters.bad_credentials += 1
        by_user = None if user is None else self.users.fail(user_key(user), now)
        by_address = self.addresses.fail(address_key(address), now)
        if by_user is None and by_address is None:
            return None
        self.counters.lockouts += 1
        started: list[tuple[Scope, float]] = []
        if by_user is not None:
            started.append(("user", by_user))
        if by_address is not None:
            started.append(("address", by_address))
        return Lockout(tuple(s for s, _ in started), max(v for _, v in started))

    def succeeded(self, user: str) -> None:
        """A right password: the user's failures and lockout history are cleared (the address's are kept)."""
        self.users.reset(user_key(user))

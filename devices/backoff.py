"""Retry delays, once for every component: exponential backoff with jitter, and a server's Retry-After as a floor.

Retry number n (1-based) waits a uniform draw in [lo * c, hi * c] with the ceiling c = min(max_s, base_s * 2**(n-1)).
The jitter range `(lo, hi)` says how the retries of many clients that failed together spread out:

- `EQUAL` (0.5, 1.0), "equal jitter": the gateways' reconnects and the dashboard's. A floor of half the step
  means nobody hammers a broker that is down, and the other half, drawn at random, spreads out a fleet that
  lost the broker at the same moment within one or two attempts.
- `FULL` (0.0, 1.0), "full jitter": ingest's retries of InfluxDB. It spreads out the most, at the cost of
  an occasional quick retry, which a recovering database can take.
- `NEAR` (0.8, 1.2): the gateway ledger's republish deadlines. These are waits for an answer (a confirmation),
  not retries of a failure, so they stay near their nominal length.

When the server says how long to wait (HTTP 429/503 with Retry-After, read at the database boundary:
`storage.errors.parse_retry_after`), waiting less would only earn another refusal, so the hint is a floor.
It is capped at `max_retry_after_s`, so that a wrong header cannot park a client for hours.

`delay(n)` is stateless. `next_delay()` and `reset()` keep the count for a single owner (not thread-safe).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["EQUAL", "FULL", "NEAR", "Backoff"]

EQUAL = (0.5, 1.0)
FULL = (0.0, 1.0)
NEAR = (0.8, 1.2)


@dataclass(slots=True)
class Backoff:
    base_s: float = 1.0
    max_s: float = 60.0
    jitter: tuple[float, float] = EQUAL
    max_retry_after_s: float = 300.0
    #: uniform(a, b); injectable so tests can pin the jitter (a seeded `random.Random(n).uniform`, or a lambda)
    uniform: Callable[[float, float], float] = field(default=random.uniform)
    attempt: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.max_s:
            raise ValueError(f"need 0 < base_s <= max_s, got base_s={self.base_s} max_s={self.max_s}")
        lo, hi = self.jitter
        if not 0 <= lo <= hi:
            raise ValueError(f"need 0 <= lo <= hi in jitter, got {self.jitter}")

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay before retry number `attempt` (1-based)."""
        # 2**n overflows a float past n ~1000; the cap is reached long before.
        return min(self.max_s, self.base_s * 2.0 ** min(max(attempt - 1, 0), 64))

    def delay(self, attempt: int, *, retry_after: float | None = None) -> float:
        """The jittered delay before retry number `attempt` (1-based), never shorter than a capped Retry-After."""
        c = self.ceiling(attempt)
        lo, hi = self.jitter
        jittered = self.uniform(lo * c, hi * c)
        if retry_after is None:
            return jittered
        return max(jittered, min(retry_after, self.max_retry_after_s))

    def next_delay(self, *, retry_after: float | None = None) -> float:
        """The delay before the next retry of a run of failures; `reset()` after a success."""
        self.attempt += 1
        return self.delay(self.attempt, retry_after=retry_after)

    def reset(self) -> None:
        self.attempt = 0

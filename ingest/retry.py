"""Retry delays: exponential backoff with full jitter, never shorter than the server's Retry-After.

Full jitter (a uniform draw in [0, base * 2**attempt], capped) spreads the retries of many consumers
after an outage instead of hammering a recovering InfluxDB in lock-step. When the server says how long to
wait (HTTP 429/503 with Retry-After), waiting less would only earn another refusal, so the hint is a floor;
it is capped at `max_retry_after_s` so that a wrong header cannot park the consumer for hours. (The header
itself is read at the database boundary: `storage.errors.parse_retry_after`.)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    base_s: float = 0.5
    max_s: float = 30.0
    max_retry_after_s: float = 300.0
    #: uniform(a, b); injectable so tests can pin the jitter
    uniform: Callable[[float, float], float] = field(default=random.uniform)

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the jittered delay before retry number `attempt` (1-based)."""
        return min(self.max_s, self.base_s * 2.0 ** min(max(attempt - 1, 0), 30))

    def delay(self, attempt: int, *, retry_after: float | None = None) -> float:
        jittered = self.uniform(0.0, self.ceiling(attempt))
        if retry_after is None:
            return jittered
        return max(jittered, min(retry_after, self.max_retry_after_s))

"""Reconnect delays: exponential backoff with jitter.

Many gateways of a district lose the broker at the same moment (the broker restarts, the uplink drops); if
they all retried after 1, 2, 4 ... seconds they would knock on the broker in synchronised waves. "Equal
jitter" keeps a floor (half the exponential step, so a gateway never hammers a broker that is down) and
spreads the other half uniformly, which de-synchronises the fleet within one or two attempts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Delays for successive failed attempts: attempt n waits in [step/2, step], step = min(cap, base * 2**n).

    `reset()` after a success. Not thread-safe: one owner (the publisher's network thread).
    """

    base_s: float = 1.0
    cap_s: float = 60.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"need 0 < base_s <= cap_s, got base_s={self.base_s} cap_s={self.cap_s}")

    def step(self, attempt: int) -> float:
        """The un-jittered delay of attempt `attempt` (0-based)."""
        # 2**attempt overflows a float past attempt ~1000; the cap is reached long before.
        return min(self.cap_s, self.base_s * 2.0 ** min(attempt, 64))

    def next_delay(self) -> float:
        step = self.step(self.attempt)
        self.attempt += 1
        return step / 2 + self.rng.uniform(0, step / 2)

    def reset(self) -> None:
        self.attempt = 0

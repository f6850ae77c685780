"""Named, independent random streams derived from one seed.

Each part of a simulation (the weather, one group of devices, the fault planner) draws from its own stream,
keyed by a name. Switching faults on or adding a device kind therefore never changes the other parts' draws:
the same seed gives the same clean data with or without faults, which is what lets a test compare the two.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_hash(*names: str) -> int:
    """A 64-bit hash of strings that is the same in every process (Python's hash() is salted)."""
    digest = hashlib.sha256("\0".join(names).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def stream(seed: int, *names: str) -> np.random.Generator:
    """The random stream called `names` of a run with `seed`."""
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, stable_hash(*names)]))


def ou_step_factors(dt_s: float, tau_s: float) -> tuple[float, float]:
    """Exact discretisation of an Ornstein-Uhlenbeck process with unit stationary variance.

    x[k+1] = a * x[k] + b * N(0, 1). Because it is exact, the process has the same statistics at every
    resolution (1 s or 1 h): a generator's variability does not depend on how often it is sampled.
    """
    a = float(np.exp(-dt_s / tau_s))
    return a, float(np.sqrt(max(0.0, 1.0 - a * a)))


def ou_path(
    rng: np.random.Generator, start: np.ndarray, n: int, dt_s: float, tau_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """`n` further steps of independent unit OU processes (one per element of `start`).

    Returns (path of shape start.shape + (n,), the last state). path[..., 0] is `start` itself, so a chunked
    generator continues its process seamlessly from one chunk to the next.
    """
    a, b = ou_step_factors(dt_s, tau_s)
    noise = rng.standard_normal((*start.shape, n))
    path = np.empty((*start.shape, n))
    x = start.astype(np.float64)
    for k in range(n):
        path[..., k] = x
        x = a * x + b * noise[..., k]
    return path, x

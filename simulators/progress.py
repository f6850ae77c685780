"""A small text progress bar on stderr (no dependency): how far through the simulated or recorded time.

    replay [##########----------]  50.0%  12,345 msgs  1,234 msg/s

Redrawn at most every `min_interval_s`; `close()` ends the line. Only for humans: nothing parses it.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    def __init__(
        self,
        total: float,
        *,
        label: str = "",
        stream: TextIO | None = None,
        width: int = 30,
        min_interval_s: float = 0.2,
    ) -> None:
        self.total = max(total, 1e-9)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.min_interval_s = min_interval_s
        self._t0 = time.monotonic()
        self._last_draw = -1e9
        self._done = 0.0
        self._count = 0

    def render(self, done: float, count: int, elapsed_s: float) -> str:
        fraction = min(1.0, max(0.0, done / self.total))
        filled = round(fraction * self.width)
        rate = count / elapsed_s if elapsed_s > 0 else 0.0
        bar = "#" * filled + "-" * (self.width - filled)
        return f"{self.label} [{bar}] {100 * fraction:5.1f}%  {count:,} msgs  {rate:,.0f} msg/s"

    def update(self, done: float, count: int) -> None:
        self._done, self._count = done, count
        now = time.monotonic()
        if now - self._last_draw >= self.min_interval_s:
            self._last_draw = now
            self.stream.write("\r" + self.render(done, count, now - self._t0))
            self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r" + self.render(self._done, self._count, time.monotonic() - self._t0) + "\n")
        self.stream.flush()

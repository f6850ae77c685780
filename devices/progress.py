"""A text progress bar on stderr for long server-side work (a backfill of a year of daily KPIs).

    backfill demo [############------------------]  40.0%  146/365 days  52 days/s

Only for humans: it draws on a terminal (or when forced) and nothing parses it. Services log JSON to stderr,
so the bar stays off when stderr is not a TTY unless the operator asks for it. Redrawn at most every
`min_interval_s`; `close()` ends the line.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    def __init__(
        self,
        total: int,
        *,
        label: str,
        unit: str,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        width: int = 30,
        min_interval_s: float = 0.2,
    ) -> None:
        self.total = max(total, 1)
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.width = width
        self.min_interval_s = min_interval_s
        self.done = 0
        self._t0 = time.monotonic()
        self._last_draw = -1e9

    def render(self, elapsed_s: float) -> str:
        fraction = min(1.0, self.done / self.total)
        filled = round(fraction * self.width)
        rate = self.done / elapsed_s if elapsed_s > 0 else 0.0
        bar = "#" * filled + "-" * (self.width - filled)
        return (
            f"{self.label} [{bar}] {100 * fraction:5.1f}%  {self.done:,}/{self.total:,} {self.unit}"
            f"  {rate:,.0f} {self.unit}/s"
        )

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self._last_draw >= self.min_interval_s:
            self._last_draw = now
            self.stream.write("\r" + self.render(now - self._t0))
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + self.render(time.monotonic() - self._t0) + "\n")
            self.stream.flush()

"""A test sink for adapters: records what they put, with a scripted clock."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gateway.adapters import Values

T0 = 1_790_000_000_000


class CollectingSink:
    """`now_ms()` returns T0, T0 + 1000, ... (one step per call); a reading put without a timestamp is
    stamped with the last value returned (T0 before any call). What it is given is committed at once."""

    def __init__(self, cursor: str | None = None) -> None:
        self.readings: list[dict[str, Any]] = []
        self.cursor_value = cursor
        self._calls = 0
        self._now = T0

    def now_ms(self) -> int:
        self._now = T0 + 1000 * self._calls
        self._calls += 1
        return self._now

    def put(self, device_id: str, values: Values, ts_ms: int | None = None, *, unsynced: bool | None = None) -> None:
        self.readings.append({"device": device_id, "ts": self._now if ts_ms is None else ts_ms, "values": dict(values)})

    def put_many(
        self,
        device_id: str,
        readings: Iterable[tuple[int, Values]],
        *,
        unsynced: bool = False,
        cursor: str | None = None,
    ) -> None:
        for ts, values in readings:
            self.put(device_id, values, ts)
        if cursor is not None:
            self.cursor_value = cursor

    def cursor(self) -> str | None:
        return self.cursor_value

    def ticket(self) -> int:
        return len(self.readings)

    def wait_committed(self, ticket: int, timeout: float) -> bool:
        return True


def read_expected(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

"""The quarantine: a durable, size-bounded SQLite store of rejected readings and unparseable messages.

Each row keeps the topic, the payload (capped at `PAYLOAD_CAP` bytes), the reason code, the validation
errors, how many readings it holds and when it was received. A redelivered message does not add rows:
each row has a fingerprint (topic, payload, reading index, reason) and a repeat is ignored, just as
InfluxDB overwrites a repeated point. A message is acknowledged to the broker only
after its rejections are committed here. At `max_rows` the oldest rows are deleted and counted
(`evicted`): the limit is explicit, never a silent stop.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from devices import Rejection

PAYLOAD_CAP = 8192

_SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    device TEXT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    reading_index INTEGER,
    readings INTEGER NOT NULL,
    errors TEXT NOT NULL,
    payload BLOB NOT NULL,
    payload_truncated INTEGER NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS quarantine_received ON quarantine (received_ms);
"""


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """One quarantined reading (index >= 0) or message (index None, `readings` of them)."""

    topic: str
    device: str | None
    reason: str
    detail: str
    index: int | None
    readings: int
    errors: tuple[dict[str, Any], ...]
    payload: bytes
    received_ms: int

    @classmethod
    def of(cls, topic: str, device: str | None, rejection: Rejection, payload: bytes, received_ms: int) -> Self:
        """The entry for a validation rejection."""
        r = rejection
        return cls(topic, device, r.reason.value, r.detail, r.index, r.readings, r.errors, payload, received_ms)


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    """A stored row, as `districtpulse quarantine list` shows it and `replay` re-validates it."""

    id: int
    received_ms: int
    topic: str
    device: str | None
    reason: str
    detail: str
    reading_index: int | None
    readings: int
    errors: str
    payload: bytes
    payload_truncated: bool


class Quarantine:
    """Append-only store with a row limit; safe to read from another process while ingest writes (WAL)."""

    def __init__(self, path: str | Path, *, max_rows: int = 1_000_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self.evicted = 0
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        (self._rows,) = self._db.execute("SELECT count(*) FROM quarantine").fetchone()

    def add(self, entries: Iterable[QuarantineEntry]) -> int:
        """Store entries durably (one transaction); return the number of new rows (repeats are ignored)."""
        rows = [
            (
                e.received_ms,
                e.topic,
                e.device,
                e.reason,
                e.detail,
                e.index,
                e.readings,
                json.dumps(list(e.errors), default=str),
                e.payload[:PAYLOAD_CAP],
                int(len(e.payload) > PAYLOAD_CAP),
                _fingerprint(e),
            )
            for e in entries
        ]
        if not rows:
            return 0
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO quarantine (received_ms, topic, device, reason, detail, reading_index,"
                " readings, errors, payload, payload_truncated, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            inserted = self._db.total_changes - before
            excess = self._rows + inserted - self.max_rows
            if excess > 0:
                self._db.execute(
                    "DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine ORDER BY id LIMIT ?)", (excess,)
                )
        self._rows += inserted - max(excess, 0)
        self.evicted += max(excess, 0)
        return inserted

    def rows(self, *, reason: str | None = None, limit: int | None = None) -> list[QuarantineRow]:
        """Stored rows, oldest first, optionally of one reason."""
        query = (
            "SELECT id, received_ms, topic, device, reason, detail, reading_index, readings, errors, payload,"
            " payload_truncated FROM quarantine WHERE (? IS NULL OR reason = ?) ORDER BY id LIMIT ?"
        )
        cursor = self._db.execute(query, (reason, reason, -1 if limit is None else limit))
        return [
            QuarantineRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bytes(r[9]), bool(r[10]))
            for r in cursor
        ]

    def delete(self, ids: Iterable[int]) -> int:
        """Remove rows (after a successful replay); returns how many were removed."""
        id_list = [(i,) for i in ids]
        if not id_list:
            return 0
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            before = self._db.total_changes
            self._db.executemany("DELETE FROM quarantine WHERE id = ?", id_list)
            removed = self._db.total_changes - before
        self._rows -= removed
        return removed

    def count_readings(self, *, since_ms: int = 0, topic_prefix: str = "") -> dict[str, int]:
        """Quarantined readings per reason code, received at or after `since_ms`, on topics under a prefix."""
        cursor = self._db.execute(
            "SELECT reason, sum(readings) FROM quarantine WHERE received_ms >= ? AND substr(topic, 1, ?) = ?"
            " GROUP BY reason",
            (since_ms, len(topic_prefix), topic_prefix),
        )
        return {reason: int(n) for reason, n in cursor}

    def close(self) -> None:
        self._db.close()


def _fingerprint(entry: QuarantineEntry) -> str:
    digest = hashlib.sha256(entry.topic.encode())
    digest.update(b"\0" + entry.payload + b"\0")
    digest.update(f"{entry.index}:{entry.reason}".encode())
    return digest.hexdigest()[:32]


def now_ms() -> int:
    return time.time_ns() // 1_000_000

"""The quarantine: a durable SQLite store of rejected readings and unparseable messages, bounded in rows and
in bytes.

Each row keeps the topic, the reason code, the validation errors, how many readings it holds, when it was
received and a reference to its message's payload. Payloads are kept whole (a 500-reading catch-up batch
with one bad reading must be replayable) and once: in `payloads`, keyed by their SHA-256, shared by every row
of the message and deleted with the last row that references it (a trigger, in the same transaction).

A redelivered message does not add rows: each row has a fingerprint (topic, reason, and the payload, or for
a rejected reading the reading itself: its seq, time and values, whatever message it came in) and a repeat is
ignored, just as InfluxDB overwrites a repeated point. A message is acknowledged to the
broker only after its rejections are committed here.

Bounds: at `max_rows` rows or `max_bytes` bytes the oldest rows are deleted first, in the transaction that
went over, and counted (`evicted_rows`, `evicted_bytes`, logged and exported): the limit is explicit, never a
silent stop. The bytes counted are what the rows and payloads hold (`usage`, kept in the `totals` table by
triggers, so every process that opens the file sees the same figures): SQLite's own pages and indexes add a
little, and the file does not shrink when rows go (freed pages are reused), so it stays near its high-water
mark. An entry that alone exceeds `max_bytes` cannot be kept at all: it is counted as evicted at once and
logged as an error, and nothing else is evicted for it.

Schema versions (`PRAGMA user_version`): 0 with a `quarantine` table is the first layout (payloads copied into
every row and truncated at 8 KiB), migrated on open in one transaction; rows whose payload was truncated then
stay marked (`payload_truncated`) and are never replayed. A newer version is refused (`QuarantineUnusable`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from devices import Rejection
from storage.errors import QuarantineUnusable

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
DEFAULT_MAX_ROWS = 1_000_000
DEFAULT_MAX_BYTES = 1 << 30
#: bytes counted per row and per payload on top of their contents (ids, numbers, digest, fingerprint)
ROW_OVERHEAD = 96
PAYLOAD_OVERHEAD = 96
#: evictions are logged at once, then at most this often (with what was evicted meanwhile)
EVICTION_LOG_INTERVAL_S = 60.0

_SCHEMA = (
    """CREATE TABLE payloads (
        id INTEGER PRIMARY KEY,
        digest TEXT NOT NULL UNIQUE,
        payload BLOB NOT NULL,
        truncated INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL
    )""",
    """CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        received_ms INTEGER NOT NULL,
        topic TEXT NOT NULL,
        device TEXT,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        reading_index INTEGER,
        readings INTEGER NOT NULL,
        errors TEXT NOT NULL,
        payload_digest TEXT NOT NULL REFERENCES payloads (digest),
        bytes INTEGER NOT NULL,
        fingerprint TEXT NOT NULL UNIQUE
    )""",
    "CREATE INDEX quarantine_received ON quarantine (received_ms)",
    "CREATE INDEX quarantine_payload ON quarantine (payload_digest)",
    """CREATE TABLE totals (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        rows INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        payloads INTEGER NOT NULL
    )""",
    "INSERT INTO totals VALUES (1, 0, 0, 0)",
    """CREATE TRIGGER quarantine_added AFTER INSERT ON quarantine BEGIN
        UPDATE totals SET rows = rows + 1, bytes = bytes + NEW.bytes;
    END""",
    """CREATE TRIGGER quarantine_removed AFTER DELETE ON quarantine BEGIN
        UPDATE totals SET rows = rows - 1, bytes = bytes - OLD.bytes;
        DELETE FROM payloads WHERE digest = OLD.payload_digest
            AND NOT EXISTS (SELECT 1 FROM quarantine WHERE payload_digest = OLD.payload_digest);
    END""",
    """CREATE TRIGGER payload_added AFTER INSERT ON payloads BEGIN
        UPDATE totals SET bytes = bytes + NEW.bytes, payloads = payloads + 1;
    END""",
    """CREATE TRIGGER payload_removed AFTER DELETE ON payloads BEGIN
        UPDATE totals SET bytes = bytes - OLD.bytes, payloads = payloads - 1;
    END""",
)
_V1_COLUMNS = {
    "id",
    "received_ms",
    "topic",
    "device",
    "reason",
    "detail",
    "reading_index",
    "readings",
    "errors",
    "payload",
    "payload_truncated",
    "fingerprint",
}
_COLUMNS = "received_ms, topic, device, reason, detail, reading_index, readings, errors, payload_digest, bytes"


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
    #: empty when read with `with_payload=False`
    payload: bytes
    #: only rows migrated from the first schema, which kept 8 KiB: never replayed
    payload_truncated: bool
    payload_digest: str


@dataclass(frozen=True, slots=True)
class PayloadGroup:
    """The rows of one message (topic and payload): what `replay` validates once."""

    topic: str
    digest: str
    truncated: bool
    #: (row id, reading index or None for a whole-message row), oldest first
    rows: list[tuple[int, int | None]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class QuarantineUsage:
    rows: int = 0
    bytes: int = 0
    payloads: int = 0


def row_bytes(topic: str, device: str | None, reason: str, detail: str, errors: str) -> int:
    """The bytes a row counts against `max_bytes` (its payload is counted once, apart)."""
    texts = (topic, device or "", reason, detail, errors)
    return ROW_OVERHEAD + sum(len(t.encode()) for t in texts)


def payload_digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


class Quarantine:
    """Append-only store with row and byte limits; safe to read from another process while ingest writes (WAL)."""

    def __init__(
        self, path: str | Path, *, max_rows: int = DEFAULT_MAX_ROWS, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        if max_rows < 1 or max_bytes < 1:
            raise ValueError(f"quarantine limits must be positive: max_rows={max_rows}, max_bytes={max_bytes}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        #: rows and bytes evicted by this process (the metrics' counters)
        self.evicted_rows = 0
        self.evicted_bytes = 0
        self._unlogged = (0, 0)  # evicted since the last eviction log line
        self._logged_at: float | None = None
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._open_schema()
        except BaseException:
            self._db.close()
            raise
        self.usage = self._read_usage()

    # -- schema ---------------------------------------------------------------------------------------------
    def _open_schema(self) -> None:
        if self._version() == SCHEMA_VERSION:
            return
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")  # another process may be creating or migrating it right now
            version = self._version()
            tables = {name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if version == SCHEMA_VERSION:
                return
            if version > SCHEMA_VERSION:
                raise QuarantineUnusable(
                    f"quarantine {self.path} has schema version {version}, newer than this ingest reads"
                    f" ({SCHEMA_VERSION}): upgrade districtpulse, or set `quarantine` to another file"
                )
            if version == 0 and "quarantine" not in tables:
                for statement in _SCHEMA:
                    self._db.execute(statement)
            elif version == 0 and self._columns("quarantine") == _V1_COLUMNS:
                self._migrate_v1()
            else:
                raise QuarantineUnusable(
                    f"quarantine {self.path} has an unknown layout (schema version {version}, tables"
                    f" {sorted(tables)}): move it aside and start with a new file"
                )
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _version(self) -> int:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        return int(version)

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}

    def _migrate_v1(self) -> None:
        """Schema 1 -> 2, in the caller's transaction: one payload row per distinct payload, ids and
        fingerprints kept (so a redelivery of an old message still adds nothing)."""
        db = self._db
        db.create_function("dp_v1_digest", 2, _v1_digest, deterministic=True)
        db.create_function("dp_row_bytes", 5, row_bytes, deterministic=True)
        db.execute("ALTER TABLE quarantine RENAME TO quarantine_v1")
        db.execute("DROP INDEX IF EXISTS quarantine_received")
        for statement in _SCHEMA:
            db.execute(statement)
        db.execute(
            "INSERT OR IGNORE INTO payloads (digest, payload, truncated, bytes) SELECT dp_v1_digest(payload,"
            f" payload_truncated), payload, payload_truncated, length(payload) + {PAYLOAD_OVERHEAD}"
            " FROM quarantine_v1 ORDER BY id"
        )
        db.execute(
            f"INSERT INTO quarantine (id, {_COLUMNS}, fingerprint) SELECT id, received_ms, topic, device, reason,"
            " detail, reading_index, readings, errors, dp_v1_digest(payload, payload_truncated),"
            " dp_row_bytes(topic, device, reason, detail, errors), fingerprint FROM quarantine_v1 ORDER BY id"
        )
        (truncated,) = db.execute("SELECT count(*) FROM quarantine_v1 WHERE payload_truncated").fetchone()
        db.execute("DROP TABLE quarantine_v1")
        usage = self._read_usage()
        fields = {"path": str(self.path), "rows": usage.rows, "payloads": usage.payloads, "bytes": usage.bytes}
        log.info(
            "quarantine migrated to schema %d", SCHEMA_VERSION, extra={"fields": fields | {"truncated": truncated}}
        )

    # -- writing --------------------------------------------------------------------------------------------
    def add(self, entries: Iterable[QuarantineEntry]) -> int:
        """Store entries durably (one transaction); return the number of new rows (repeats are ignored).

        Rows beyond the limits are evicted oldest first in the same transaction."""
        digests: dict[bytes, str] = {}
        parsed: dict[str, object] = {}  # digest -> the payload's JSON, for the readings' identities
        legacy: dict[str, str] = {}  # a reading's fingerprint -> the one earlier versions gave it
        payloads: dict[str, tuple[str, bytes, int]] = {}
        rows: list[tuple[object, ...]] = []
        too_large = [0, 0]
        for e in entries:
            digest = digests.get(e.payload)
            if digest is None:
                digest = digests[e.payload] = payload_digest(e.payload)
            errors = json.dumps(list(e.errors), default=str)
            size = row_bytes(e.topic, e.device, e.reason, e.detail, errors)
            payload_size = len(e.payload) + PAYLOAD_OVERHEAD
            if size + payload_size > self.max_bytes:
                too_large[0] += 1
                too_large[1] += size + payload_size
                self._log_too_large(e, size + payload_size)
                continue
            payloads[digest] = (digest, e.payload, payload_size)
            reading = None
            if e.index is not None:
                if digest not in parsed:
                    try:
                        parsed[digest] = json.loads(e.payload)
                    except ValueError:
                        parsed[digest] = None
                reading = _reading_identity(parsed[digest], e.index)
            fp = _fingerprint(e, reading)
            if reading is not None:
                legacy[fp] = _fingerprint(e, None)
            rows.append(
                (e.received_ms, e.topic, e.device, e.reason, e.detail, e.index, e.readings, errors, digest, size, fp)
            )
        evicted = (0, 0)
        if rows:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                before = self._read_usage()
                if legacy:  # a redelivery of a message quarantined by an earlier version adds nothing either
                    known = self._known(list(legacy.values()))
                    rows = [r for r in rows if legacy.get(str(r[-1])) not in known]
                self._db.executemany(
                    "INSERT OR IGNORE INTO payloads (digest, payload, bytes) VALUES (?, ?, ?)", payloads.values()
                )
                self._db.executemany(
                    f"INSERT OR IGNORE INTO quarantine ({_COLUMNS}, fingerprint) VALUES ({', '.join('?' * 11)})", rows
                )
                inserted = self._read_usage().rows - before.rows
                evicted = self._evict()
            self.usage = self._read_usage()
        else:
            inserted = 0
        self._count_evicted(evicted[0] + too_large[0], evicted[1] + too_large[1])
        return inserted

    def _known(self, fingerprints: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(fingerprints), 500):
            chunk = fingerprints[i : i + 500]
            cursor = self._db.execute(
                f"SELECT fingerprint FROM quarantine WHERE fingerprint IN ({', '.join('?' * len(chunk))})", chunk
            )
            found.update(fp for (fp,) in cursor)
        return found

    def _evict(self) -> tuple[int, int]:
        """Delete the oldest rows until both limits hold (in the caller's transaction); (rows, bytes) evicted."""
        start = usage = self._read_usage()
        if usage.rows > self.max_rows:
            self._db.execute(
                "DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine ORDER BY id LIMIT ?)",
                (usage.rows - self.max_rows,),
            )
            usage = self._read_usage()
        while usage.bytes > self.max_bytes and usage.rows:
            # One row at a time: a row frees its payload only with the last row of its message, so how many
            # rows free enough is known only by deleting them. Exactly the oldest rows go, and no more.
            for (oldest,) in self._db.execute("SELECT id FROM quarantine ORDER BY id LIMIT 256").fetchall():
                self._db.execute("DELETE FROM quarantine WHERE id = ?", (oldest,))
                usage = self._read_usage()
                if usage.bytes <= self.max_bytes:
                    break
        return start.rows - usage.rows, start.bytes - usage.bytes

    def _count_evicted(self, rows: int, size: int) -> None:
        if not rows:
            return
        self.evicted_rows += rows
        self.evicted_bytes += size
        self._unlogged = (self._unlogged[0] + rows, self._unlogged[1] + size)
        now = time.monotonic()
        if self._logged_at is not None and now - self._logged_at < EVICTION_LOG_INTERVAL_S:
            return
        self._logged_at = now
        fields = {
            "evicted_rows": self._unlogged[0],
            "evicted_bytes": self._unlogged[1],
            "evicted_rows_total": self.evicted_rows,
            "rows": self.usage.rows,
            "bytes": self.usage.bytes,
            "max_rows": self.max_rows,
            "max_bytes": self.max_bytes,
        }
        self._unlogged = (0, 0)
        log.warning("quarantine full: oldest rows evicted", extra={"fields": fields})

    def _log_too_large(self, entry: QuarantineEntry, size: int) -> None:
        fields = {"topic": entry.topic[:200], "reason": entry.reason, "bytes": size, "max_bytes": self.max_bytes}
        log.error("quarantine entry larger than the whole quarantine: not kept", extra={"fields": fields})

    def delete(self, ids: Iterable[int]) -> int:
        """Remove rows (after a successful replay), and payloads no row references any more; how many rows."""
        id_list = [(i,) for i in ids]
        if not id_list:
            return 0
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            before = self._read_usage().rows
            self._db.executemany("DELETE FROM quarantine WHERE id = ?", id_list)
            removed = before - self._read_usage().rows
        self.usage = self._read_usage()
        return removed

    # -- reading --------------------------------------------------------------------------------------------
    def _read_usage(self) -> QuarantineUsage:
        rows, size, payloads = self._db.execute("SELECT rows, bytes, payloads FROM totals").fetchone()
        return QuarantineUsage(int(rows), int(size), int(payloads))

    def refresh(self) -> QuarantineUsage:
        """`usage` as the file holds it now (another process may have added or deleted rows)."""
        self.usage = self._read_usage()
        return self.usage

    def rows(
        self, *, reason: str | None = None, limit: int | None = None, with_payload: bool = True
    ) -> list[QuarantineRow]:
        """Stored rows, oldest first, optionally of one reason."""
        payload = "p.payload" if with_payload else "x''"
        query = (
            "SELECT q.id, q.received_ms, q.topic, q.device, q.reason, q.detail, q.reading_index, q.readings,"
            f" q.errors, {payload}, p.truncated, q.payload_digest FROM quarantine q"
            " JOIN payloads p ON p.digest = q.payload_digest WHERE (? IS NULL OR q.reason = ?) ORDER BY q.id LIMIT ?"
        )
        cursor = self._db.execute(query, (reason, reason, -1 if limit is None else limit))
        return [
            QuarantineRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bytes(r[9]), bool(r[10]), r[11])
            for r in cursor
        ]

    def groups(self, *, reason: str | None = None) -> list[PayloadGroup]:
        """The rows (optionally of one reason) grouped by message, in the order of each message's oldest row;
        without the payloads, which `payload()` reads one at a time."""
        cursor = self._db.execute(
            "SELECT q.id, q.topic, q.payload_digest, q.reading_index, p.truncated FROM quarantine q"
            " JOIN payloads p ON p.digest = q.payload_digest WHERE (? IS NULL OR q.reason = ?) ORDER BY q.id",
            (reason, reason),
        )
        groups: dict[tuple[str, str], PayloadGroup] = {}
        for row_id, topic, digest, index, truncated in cursor:
            group = groups.get((topic, digest))
            if group is None:
                group = groups[(topic, digest)] = PayloadGroup(topic, digest, bool(truncated))
            group.rows.append((row_id, index))
        return list(groups.values())

    def payload(self, digest: str) -> bytes | None:
        """A stored payload by its digest; None once its last row is gone."""
        row = self._db.execute("SELECT payload FROM payloads WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else bytes(row[0])

    def count_readings(self, *, since_ms: int = 0, topic_prefix: str = "") -> dict[str, int]:
        """Quarantined readings per reason code, received at or after `since_ms`, on topics under a prefix."""
        return _count_readings(self._db, since_ms, topic_prefix)

    def close(self) -> None:
        self._db.close()


def _fingerprint(entry: QuarantineEntry, reading: bytes | None) -> str:
    """The identity of a rejection: what is rejected (the message's bytes, or for one reading the reading
    itself, `_reading_identity`), where it came from (the topic) and why.

    A gateway publishes an unconfirmed reading again in whatever message its spool then makes (another
    first seq, other neighbours, another index), so a rejected reading is identified by its own sequence
    number, time and values, not by the message around it: quarantined once however often it arrives.
    (Rows stored by earlier versions keep the fingerprint they were stored with, the message's bytes and the
    index, `reading=None` here: `add` looks that one up too, so a redelivery after an upgrade adds nothing.)"""
    digest = hashlib.sha256(entry.topic.encode())
    if reading is None:
        digest.update(b"\0" + entry.payload + b"\0")
        digest.update(f"{entry.index}:{entry.reason}".encode())
    else:
        digest.update(b"\0reading\0" + reading + b"\0")
        digest.update(entry.reason.encode())
    return digest.hexdigest()[:32]


def _reading_identity(doc: object, index: int) -> bytes | None:
    """`seq ts values` of reading `index` of a parsed v1 batch, canonical; None if it is not one."""
    if not isinstance(doc, dict):
        return None
    readings, seq = doc.get("readings"), doc.get("seq")
    if not isinstance(readings, list) or not 0 <= index < len(readings) or not isinstance(readings[index], dict):
        return None
    first = seq[0] if isinstance(seq, list) and seq and isinstance(seq[0], int) else None
    number = None if first is None else first + index
    reading = readings[index]
    return json.dumps([number, reading.get("ts"), reading.get("values")], sort_keys=True, default=str).encode()


def _v1_digest(payload: bytes, truncated: int) -> str:
    """A schema-1 payload's digest: a truncated one never shares a row with a whole payload of equal bytes."""
    return payload_digest(b"schema-1 truncated\0" + payload if truncated else payload)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _count_readings(db: sqlite3.Connection, since_ms: int, topic_prefix: str) -> dict[str, int]:
    cursor = db.execute(
        "SELECT reason, sum(readings) FROM quarantine WHERE received_ms >= ? AND substr(topic, 1, ?) = ?"
        " GROUP BY reason",
        (since_ms, len(topic_prefix), topic_prefix),
    )
    return {str(reason): int(n) for reason, n in cursor}


class QuarantineView:
    """The quarantine for readers beside ingest (the dashboard): read-only, opened per call (`mode=ro`, so it
    never creates, migrates or locks the file; WAL lets it read while ingest writes). A file that does not exist
    yet, or that ingest has not given its tables yet, reads as empty."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def count_readings(self, *, since_ms: int = 0, topic_prefix: str = "") -> dict[str, int]:
        """Quarantined readings per reason code, received at or after `since_ms`, on topics under a prefix."""
        if not self.path.exists():
            return {}
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=2.0)
        try:
            return _count_readings(db, since_ms, topic_prefix)
        except sqlite3.OperationalError as exc:  # no table yet: ingest has not created it
            log.debug("quarantine %s not readable yet: %s", self.path, exc)
            return {}
        finally:
            db.close()

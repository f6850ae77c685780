"""The durable spool: every reading is on disk before it is published, and leaves only when it is confirmed.

SQLite in WAL mode, standard library only. One connection, owned by the gateway's main thread; adapters
hand readings to `append` from their own threads and they wait in a bounded in-memory buffer until the next
group commit (`commit()`, called every `commit_interval`, 200 ms by default), so the SD card sees a few
fsyncs a second rather than one per reading. Nothing is published before it is committed, so a reading that
was published is always on disk; a SIGKILL loses at most the readings of one commit interval that were never
published, and their sequence numbers are reissued after the restart, so no gap appears.

A producer that must not tell its device "received" before the reading is on disk (an OCPP charger deletes
what was answered) takes the ticket `appended` after appending and waits, from any thread, with
`wait_committed(ticket, timeout)`: it returns once a commit has written everything appended up to that
ticket (a Condition notified at the end of each successful `commit`), or False when the timeout passes first.

Sequence numbers: each device has a counter in the `devices` table, written in the same transaction as the
readings it numbered, so it survives restarts and never reissues a number that was committed. Within a
device, the sequence number *is* the insertion order: the publisher reads by (device, seq), never by
timestamp, so a wall clock that steps backwards cannot reorder or merge readings.

Bounds and the eviction policy. The spool is bounded by bytes (`max_bytes`: the readings' JSON plus a fixed
per-row overhead, `ROW_OVERHEAD`; the SQLite file measured 1.12 times that with meter and sensor readings,
plus a WAL of at most 8 MiB after each checkpoint) and by age. Every reading has a class, decided when it is
appended:

    EVENT     an EV charger reading whose session id or connector status differs from the previous reading
              of that charger (a session start or stop, a status change)
    REGISTER  only cumulative registers (and, for chargers, the session id and status)
    MIXED     registers plus instantaneous values (power, voltage, temperatures)
    INSTANT   instantaneous values only (indoor sensors, weather)

When a bound is exceeded, the spool sheds in this order, oldest first, until it is 5 % below the bound:
1. delete INSTANT readings;
2. strip the instantaneous values from MIXED readings, which become REGISTER (no sequence gap: the reading
   and its registers stay);
3. delete REGISTER readings (a register sent later still carries the energy: resolution is lost, not
   energy);
4. delete EVENT readings.
The age bounds apply the same policy by age: instantaneous values older than `instantaneous_max_age_s` are
shed (steps 1-2), and anything older than `max_age_s` is deleted. Readings stamped while the clock was not
synchronised are exempt from the age bounds (their timestamps may be years off) but not from the byte
bound. Every eviction is counted by reason and class, in the spool itself so the counts survive restarts.

Deleted readings leave sequence gaps, and a gap alone does not say whether a reading was evicted here or
lost on its way. So each eviction also writes, in the same transaction, a record per run of consecutive
seqs of one device (`evictions`: the run, its first and last timestamps, reason and class; adjacent runs
with the same reason and class are merged). The gateway sends each record as an eviction notice
(`devices.wire.Eviction`) and deletes it, like a reading, when ingest confirms its seq range
(`ack`); `aggregation.completeness` then counts those readings as evicted at the edge, not lost. The
records are bounded (`MAX_EVICTION_RECORDS`, about 100 bytes each): past the bound the oldest are deleted
and counted (`eviction_records_dropped`, `eviction_readings_unreported`): their readings will show as lost.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, Literal

from devices.kinds import KINDS, DeviceKind
from devices.wire import Eviction
from gateway.errors import SpoolError

log = logging.getLogger(__name__)

Value = float | str
Values = Mapping[str, Value]
Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
NowMs = Callable[[], int]
SyncedFn = Callable[[], bool]

SCHEMA_VERSION = 1
#: Bytes added to each reading's JSON when accounting for `max_bytes`: the key columns, the (class, ts)
#: index entry and the B-tree cell headers, measured on SQLite 3.40 with 4 KiB pages.
ROW_OVERHEAD = 48
#: Flag bits stored with each reading.
UNSYNCED = 1
_EVICT_CHUNK = 2000
#: Eviction records kept until confirmed (see the module docstring); the oldest go first past it.
MAX_EVICTION_RECORDS = 10_000
_HEADROOM = 0.05

#: Metrics of a device kind whose change marks an event; they are kept with the registers when stripping.
EVENT_METRICS: Mapping[DeviceKind, tuple[str, ...]] = {DeviceKind.EV_CHARGER: ("session_id", "connector_status")}


class ReadingClass(IntEnum):
    """The eviction class of a reading: lower values are shed first."""

    INSTANT = 0
    MIXED = 1
    REGISTER = 2
    EVENT = 3


@dataclass(frozen=True, slots=True)
class SpoolLimits:
    max_bytes: int = 256 * 1024 * 1024
    instantaneous_max_age_s: float = 2 * 86400.0
    max_age_s: float = 30 * 86400.0

    def __post_init__(self) -> None:
        if self.max_bytes < 64 * 1024:
            raise ValueError("max_bytes must be at least 64 KiB")
        if not 0 < self.instantaneous_max_age_s <= self.max_age_s:
            raise ValueError("need 0 < instantaneous_max_age_s <= max_age_s")


@dataclass(frozen=True, slots=True)
class SpooledReading:
    seq: int
    ts: int
    unsynced: bool
    body: str  # the values as compact JSON, exactly as they go into the payload


#: A gateway stamp this close behind the device's previous stamp is moved just past it (see `Spool.append`).
NUDGE_WINDOW_MS = 1000


@dataclass(slots=True)
class _Device:
    idx: int
    id: str
    kind: DeviceKind
    next_seq: int
    committed_upto: int  # highest committed seq, -1 if none ever
    keep: frozenset[str]
    events: tuple[str, ...]
    last_event: tuple[object, ...] | None = None
    last_stamp: int = 0  # the last ts this spool stamped on one of the device's readings (this process)


@dataclass(frozen=True, slots=True)
class SpoolStats:
    readings: int
    bytes: int
    oldest_ts: int | None
    buffered: int
    counters: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "readings": self.readings,
            "bytes": self.bytes,
            "oldest_ts": self.oldest_ts,
            "buffered": self.buffered,
            "counters": dict(self.counters),
        }


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    idx INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, next_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS readings (
    device INTEGER NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL, cls INTEGER NOT NULL,
    flags INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (device, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_cls_ts ON readings (cls, ts);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evictions (
    device INTEGER NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, first_ts INTEGER NOT NULL,
    last_ts INTEGER NOT NULL, reason TEXT NOT NULL, cls TEXT NOT NULL, PRIMARY KEY (device, first_seq))
    WITHOUT ROWID;
"""

_Row = tuple[int, int, int, int, int, str]  # device idx, seq, ts, cls, flags, body


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _never_synced() -> bool:
    return False


def encode_values(values: Values) -> str:
    """Compact JSON, byte for byte what `devices.payload.encode_batch` writes for the same values."""
    return json.dumps(values, separators=(",", ":"), allow_nan=True)


class Spool:
    """A bounded on-disk queue of readings per device; see the module docstring for the guarantees.

    `append`/`append_many`/`set_cursor`, `appended` and `wait_committed` are thread-safe. Everything else,
    including `commit`, must be called from the thread that created the spool (sqlite3 enforces it).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        limits: SpoolLimits | None = None,
        synchronous: Synchronous = "FULL",
        now_ms: NowMs | None = None,
        synced: SyncedFn | None = None,
        max_buffered: int = 4_000,
        on_pressure: Callable[[], None] | None = None,
    ) -> None:
        self.path = Path(path)
        #: Called (under the buffer lock: keep it to setting an Event) when half of `max_buffered` readings
        #: wait: the owner should commit now rather than at the end of its interval.
        self.on_pressure = on_pressure
        self.limits = limits or SpoolLimits()
        self.max_buffered = max_buffered
        self._now_ms = now_ms or _wall_ms
        self._synced = synced or _never_synced
        self._lock = threading.Condition()
        self._buffer: list[_Row] = []
        #: Calls that buffered readings or a cursor (under `_lock`), and how many of them a commit has written
        #: (under `_durable`, notified at the end of each commit): the tickets of `wait_committed`.
        self._appended = 0
        self._committed = 0
        self._durable = threading.Condition()
        self._cursors: dict[str, str] = {}
        self._acks: list[tuple[int, int, int]] = []
        self._devices: dict[str, _Device] = {}
        self._by_idx: dict[int, _Device] = {}
        self._counters: dict[str, int] = {}
        self._dirty_counters: set[str] = set()
        self._eviction_records = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL").fetchone()
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("PRAGMA journal_size_limit=8388608")  # truncate the WAL back to 8 MiB
            self._db.execute("PRAGMA cache_size=-1024")  # 1 MiB page cache: the Pi's RAM is the budget
            self._db.executescript(_SCHEMA)
            self._check_schema()
            self._load()
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot open spool {self.path}: {exc}") from exc

    # -- opening ------------------------------------------------------------------------------------------------
    def _check_schema(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif row[0] != str(SCHEMA_VERSION):
            raise SpoolError(f"spool {self.path} has schema {row[0]}, this gateway reads {SCHEMA_VERSION}")

    def _load(self) -> None:
        self._eviction_records = self._db.execute("SELECT count(*) FROM evictions").fetchone()[0]
        upto = dict(self._db.execute("SELECT device, max(seq) FROM readings GROUP BY device").fetchall())
        for idx, dev_id, kind, next_seq in self._db.execute("SELECT idx, id, kind, next_seq FROM devices"):
            self._remember(idx, dev_id, DeviceKind(kind), next_seq, next_seq - 1)
            if upto.get(idx, -1) >= next_seq:  # cannot happen unless the file was edited by hand
                raise SpoolError(f"spool {self.path}: device {dev_id} has readings past its sequence counter")
        self._counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        count, size = self._db.execute(
            f"SELECT count(*), coalesce(sum(length(body)), 0) + count(*) * {ROW_OVERHEAD} FROM readings"
        ).fetchone()
        self._readings, self._bytes = int(count), int(size)

    def _remember(self, idx: int, dev_id: str, kind: DeviceKind, next_seq: int, committed_upto: int) -> _Device:
        events = EVENT_METRICS.get(kind, ())
        keep = frozenset(KINDS[kind].cumulative_metrics) | frozenset(events)
        dev = _Device(idx, dev_id, kind, next_seq, committed_upto, keep, events)
        self._devices[dev_id] = dev
        self._by_idx[idx] = dev
        return dev

    def add_device(self, device_id: str, kind: DeviceKind | str) -> None:
        """Declare a device before appending its readings (kept across restarts, with its counter)."""
        self.add_devices([(device_id, kind)])

    def add_devices(self, devices: Iterable[tuple[str, DeviceKind | str]]) -> None:
        """Declare devices, in one transaction (one fsync, not one per device)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for device_id, kind in devices:
                    self._declare(device_id, DeviceKind(kind))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _declare(self, device_id: str, kind: DeviceKind) -> None:
        known = self._devices.get(device_id)
        if known is not None:
            if known.kind != kind:
                raise SpoolError(f"device {device_id!r} is spooled as {known.kind}, now declared {kind}")
            return
        cur = self._db.execute("INSERT INTO devices (id, kind, next_seq) VALUES (?, ?, 0)", (device_id, kind.value))
        assert cur.lastrowid is not None
        self._remember(cur.lastrowid, device_id, kind, 0, -1)

    @property
    def device_ids(self) -> list[str]:
        with self._lock:
            return list(self._devices)

    def has_device(self, device_id: str) -> bool:
        return device_id in self._devices

    def kind_of(self, device_id: str) -> DeviceKind:
        return self._devices[device_id].kind

    # -- producers (any thread) ---------------------------------------------------------------------------------
    def _classify(self, dev: _Device, values: Values) -> ReadingClass:
        if dev.events:
            key = tuple(values.get(name) for name in dev.events)
            if any(v is not None for v in key):
                changed = key != dev.last_event
                dev.last_event = key
                if changed:
                    return ReadingClass.EVENT
        kept = sum(1 for name in values if name in dev.keep)
        if kept == 0:
            return ReadingClass.INSTANT
        return ReadingClass.REGISTER if kept == len(values) else ReadingClass.MIXED

    def _wait_for_room(self, timeout: float | None) -> None:
        if not self._lock.wait_for(lambda: len(self._buffer) < self.max_buffered, timeout):
            raise SpoolError(f"spool buffer full ({len(self._buffer)} readings) for {timeout} s: commits stalled?")

    def append(
        self,
        device_id: str,
        values: Values,
        ts_ms: int | None = None,
        *,
        unsynced: bool | None = None,
        timeout: float | None = None,
    ) -> int:
        """Buffer one reading for the next commit and return its sequence number.

        `ts_ms=None` stamps it now with the gateway's clock and flags it if that clock is not synchronised;
        an adapter that passes its own timestamp says with `unsynced` whether it was taken from an
        unsynchronised clock. Blocks while `max_buffered` readings wait for a commit (backpressure).
        """
        body = encode_values(values)
        now = None
        if ts_ms is None:
            now = self._now_ms()
            if unsynced is None:
                unsynced = not self._synced()
        flags = UNSYNCED if unsynced else 0
        with self._lock:
            self._wait_for_room(timeout)
            dev = self._devices[device_id]
            if now is not None:
                # Two readings of a device stamped in one millisecond (an adapter catching up on late ticks)
                # would be one InfluxDB point: a stamp at or up to NUDGE_WINDOW_MS before the device's last
                # one is moved a millisecond past it, so ingest never sees a duplicate the gateway made
                # itself. A larger backward step of the clock is kept as it is (the clock check flags it);
                # a device's own timestamps are never changed.
                last = dev.last_stamp
                stamp = dev.last_stamp = last + 1 if last - NUDGE_WINDOW_MS < now <= last else now
            else:
                assert ts_ms is not None
                stamp = ts_ms
            seq = dev.next_seq
            dev.next_seq += 1
            self._buffer.append((dev.idx, seq, stamp, self._classify(dev, values), flags, body))
            self._appended += 1
            if len(self._buffer) == self.max_buffered // 2 and self.on_pressure is not None:
                self.on_pressure()
            return seq

    def append_many(
        self,
        device_id: str,
        readings: Iterable[tuple[int, Values]],
        *,
        unsynced: bool = False,
        cursor: tuple[str, str] | None = None,
        timeout: float | None = None,
    ) -> int:
        """Buffer timestamped readings of one device and, atomically with them, set an adapter's cursor.

        Every commit holds either all of these readings and the cursor or none of them, so an adapter that
        resumes from its cursor after a crash neither skips nor repeats a reading. Returns the first seq.
        """
        encoded = [(ts, encode_values(values), values) for ts, values in readings]
        flags = UNSYNCED if unsynced else 0
        with self._lock:
            self._wait_for_room(timeout)
            dev = self._devices[device_id]
            first = dev.next_seq
            for ts, body, values in encoded:
                self._buffer.append((dev.idx, dev.next_seq, ts, self._classify(dev, values), flags, body))
                dev.next_seq += 1
            if cursor is not None:
                self._cursors[cursor[0]] = cursor[1]
            self._appended += 1
            if len(self._buffer) >= self.max_buffered // 2 and self.on_pressure is not None:
                self.on_pressure()
            return first

    def set_cursor(self, key: str, value: str) -> None:
        """Record an adapter's position; committed with (and after) every reading appended before it."""
        with self._lock:
            self._cursors[key] = value
            self._appended += 1

    def cursor(self, key: str) -> str | None:
        """The committed cursor value (what survived the last crash)."""
        row = self._db.execute("SELECT value FROM cursors WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @property
    def appended(self) -> int:
        """A ticket for everything appended so far (readings and cursors), for `wait_committed`."""
        with self._lock:
            return self._appended

    def wait_committed(self, ticket: int | None = None, timeout: float | None = None) -> bool:
        """Block until a commit has written everything appended up to `ticket` (None: everything so far).

        Any thread. False if `timeout` seconds passed first (commits stalled or failing): the caller must then
        not tell its source that the readings are stored.
        """
        upto = self.appended if ticket is None else ticket
        with self._durable:
            return self._durable.wait_for(lambda: self._committed >= upto, timeout)

    # -- the publisher's side (owner thread) --------------------------------------------------------------------
    def pending(self, device_id: str, after_seq: int, limit: int) -> list[SpooledReading]:
        """Committed readings of a device with seq > `after_seq`, in sequence order."""
        dev = self._devices[device_id]
        rows = self._db.execute(
            "SELECT seq, ts, flags, body FROM readings WHERE device = ? AND seq > ? ORDER BY seq LIMIT ?",
            (dev.idx, after_seq, limit),
        ).fetchall()
        return [SpooledReading(seq, ts, bool(flags & UNSYNCED), body) for seq, ts, flags, body in rows]

    def first_seq(self, device_id: str) -> int | None:
        """The lowest seq still spooled for a device (None if it has none)."""
        dev = self._devices[device_id]
        row = self._db.execute("SELECT min(seq) FROM readings WHERE device = ?", (dev.idx,)).fetchone()
        return None if row[0] is None else int(row[0])

    def committed_upto(self, device_id: str) -> int:
        """The highest seq ever committed for a device (-1 if none); seqs at or below it are never reissued."""
        return self._devices[device_id].committed_upto

    def ack(self, device_id: str, first_seq: int, last_seq: int) -> None:
        """These readings are delivered (confirmed by ingest, see `gateway.delivery`): delete them, and the
        eviction records that lie wholly within the range, at the next commit. Seqs no longer spooled are
        ignored, so a repeated confirmation is harmless."""
        self._acks.append((self._devices[device_id].idx, first_seq, last_seq))

    def commit(self) -> int:
        """One transaction: buffered readings, sequence counters, cursors, acknowledged deletes, evictions.

        Returns the number of readings written.
        """
        with self._lock:
            rows, self._buffer = self._buffer, []
            cursors, self._cursors = self._cursors, {}
            ticket = self._appended
            self._lock.notify_all()
        acks, self._acks = self._acks, []
        upto: dict[int, int] = {}
        for idx, seq, *_ in rows:
            upto[idx] = seq if seq > upto.get(idx, -1) else upto[idx]
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            if rows:
                db.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?)", rows)
                db.executemany("UPDATE devices SET next_seq = ? WHERE idx = ?", [(s + 1, i) for i, s in upto.items()])
                self._readings += len(rows)
                self._bytes += sum(len(r[5]) for r in rows) + ROW_OVERHEAD * len(rows)
                unsynced = sum(r[4] & UNSYNCED for r in rows)
                if unsynced:
                    self._count("spooled_unsynced", unsynced)
            if cursors:
                db.executemany("INSERT OR REPLACE INTO cursors VALUES (?, ?)", cursors.items())
            for idx, first, last in acks:
                self._drop(
                    db.execute(
                        "DELETE FROM readings WHERE device = ? AND seq BETWEEN ? AND ? RETURNING length(body)",
                        (idx, first, last),
                    ).fetchall()
                )
            if acks and self._eviction_records:
                for idx, first, last in acks:
                    gone = db.execute(
                        "DELETE FROM evictions WHERE device = ? AND first_seq >= ? AND last_seq <= ? RETURNING 1",
                        (idx, first, last),
                    ).fetchall()
                    self._eviction_records -= len(gone)
            if self._bytes > self.limits.max_bytes:
                self._evict_bytes()
            self._flush_counters()
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise SpoolError(f"spool commit failed: {exc}") from exc
        for idx, seq in upto.items():
            self._by_idx[idx].committed_upto = seq
        with self._durable:
            self._committed = ticket
            self._durable.notify_all()
        return len(rows)

    def _drop(self, lengths: list[tuple[int]]) -> int:
        self._readings -= len(lengths)
        self._bytes -= sum(n for (n,) in lengths) + ROW_OVERHEAD * len(lengths)
        return len(lengths)

    def _count(self, name: str, n: int) -> None:
        if n:
            self._counters[name] = self._counters.get(name, 0) + n
            self._dirty_counters.add(name)

    def _flush_counters(self) -> None:
        if self._dirty_counters:
            self._db.executemany(
                "INSERT OR REPLACE INTO counters VALUES (?, ?)",
                [(name, self._counters[name]) for name in sorted(self._dirty_counters)],
            )
            self._dirty_counters.clear()

    # -- eviction (inside the commit transaction) ----------------------------------------------------------------
    def _oldest(self, cls: ReadingClass, before_ts: int | None, columns: str) -> list[Any]:
        """The oldest readings of a class (by timestamp), at most `_EVICT_CHUNK`; with `before_ts`, only those
        older than it that were stamped by a synchronised clock."""
        if before_ts is None:
            sql = f"SELECT device, seq, {columns} FROM readings WHERE cls = ? ORDER BY ts LIMIT {_EVICT_CHUNK}"
            return self._db.execute(sql, (int(cls),)).fetchall()
        sql = (
            f"SELECT device, seq, {columns} FROM readings WHERE cls = ? AND ts < ? AND flags & {UNSYNCED} = 0 "
            f"ORDER BY ts LIMIT {_EVICT_CHUNK}"
        )
        return self._db.execute(sql, (int(cls), before_ts)).fetchall()

    def _delete_oldest(self, cls: ReadingClass, *, before_ts: int | None = None, target: int | None = None) -> int:
        """Delete readings of one class, oldest first, until the spool is at or under `target` bytes (exactly
        as many as needed), or every one older than `before_ts`; record what was deleted (`_record`)."""
        deleted = 0
        while target is None or self._bytes > target:
            rows = self._oldest(cls, before_ts, "length(body), ts")
            doomed = []
            stamps = []
            for idx, seq, length, ts in rows:
                if target is not None and self._bytes <= target:
                    break
                doomed.append((idx, seq))
                stamps.append(ts)
                self._bytes -= int(length) + ROW_OVERHEAD
            self._db.executemany("DELETE FROM readings WHERE device = ? AND seq = ?", doomed)
            self._record(doomed, stamps, "age" if before_ts is not None else "bytes_limit", cls.name.lower())
            self._readings -= len(doomed)
            deleted += len(doomed)
            if len(rows) < _EVICT_CHUNK:
                break
        return deleted

    def _record(self, doomed: list[tuple[int, int]], stamps: list[int], reason: str, cls: str) -> None:
        """Eviction records for deleted (device, seq)s: one per run of consecutive seqs of a device, merged
        into the device's record that ends just before it (same reason and class); the oldest past the bound
        are deleted and counted."""
        if not doomed:
            return
        runs: list[list[int]] = []  # [device, first, last, first_ts, last_ts]
        for (idx, seq), ts in sorted(zip(doomed, stamps, strict=True)):
            run = runs[-1] if runs else None
            if run is not None and run[0] == idx and run[2] == seq - 1:
                run[2], run[4] = seq, max(run[4], ts)
            else:
                runs.append([idx, seq, seq, ts, ts])
        db = self._db
        for idx, first, last, first_ts, last_ts in runs:
            merged = db.execute(
                "UPDATE evictions SET last_seq = ?, last_ts = max(last_ts, ?) "
                "WHERE device = ? AND last_seq = ? AND reason = ? AND cls = ?",
                (last, last_ts, idx, first - 1, reason, cls),
            ).rowcount
            if not merged:
                db.execute(
                    "INSERT OR REPLACE INTO evictions VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (idx, first, last, first_ts, last_ts, reason, cls),
                )
                self._eviction_records += 1
        excess = self._eviction_records - MAX_EVICTION_RECORDS
        if excess > 0:
            dropped = db.execute(
                "DELETE FROM evictions WHERE (device, first_seq) IN "
                "(SELECT device, first_seq FROM evictions ORDER BY first_ts LIMIT ?) "
                "RETURNING last_seq - first_seq + 1",
                (excess,),
            ).fetchall()
            self._eviction_records -= len(dropped)
            self._count("eviction_records_dropped", len(dropped))
            self._count("eviction_readings_unreported", sum(n for (n,) in dropped))
            log.warning("eviction records over %d: dropped the %d oldest", MAX_EVICTION_RECORDS, len(dropped))

    def evicted_runs(self, limit: int) -> list[Eviction]:
        """Eviction records not yet confirmed, oldest first (at most `limit`)."""
        if not self._eviction_records:
            return []
        rows = self._db.execute(
            "SELECT device, first_seq, last_seq, first_ts, last_ts, reason, cls FROM evictions "
            "ORDER BY first_ts LIMIT ?",
            (limit,),
        ).fetchall()
        return [Eviction(self._by_idx[idx].id, *rest) for idx, *rest in rows]

    @property
    def eviction_records(self) -> int:
        """Eviction records waiting for their confirmation."""
        return self._eviction_records

    def _strip_oldest(self, *, before_ts: int | None = None, target: int | None = None) -> int:
        """Remove the instantaneous values of MIXED readings, oldest first: they become REGISTER readings."""
        stripped = 0
        while target is None or self._bytes > target:
            rows = self._oldest(ReadingClass.MIXED, before_ts, "body")
            updates = []
            for idx, seq, body in rows:
                if target is not None and self._bytes <= target:
                    break
                keep = self._by_idx[idx].keep
                new_body = encode_values({k: v for k, v in json.loads(str(body)).items() if k in keep})
                self._bytes -= len(str(body)) - len(new_body)
                updates.append((new_body, int(ReadingClass.REGISTER), idx, seq))
            self._db.executemany("UPDATE readings SET body = ?, cls = ? WHERE device = ? AND seq = ?", updates)
            stripped += len(updates)
            if len(rows) < _EVICT_CHUNK:
                break
        return stripped

    def _evict_bytes(self) -> None:
        target = int(self.limits.max_bytes * (1 - _HEADROOM))
        before = self._bytes
        for cls in ReadingClass:
            if self._bytes <= target:
                break
            if cls is ReadingClass.MIXED:
                self._count("stripped_bytes_limit", self._strip_oldest(target=target))
            else:
                self._count(f"evicted_bytes_limit_{cls.name.lower()}", self._delete_oldest(cls, target=target))
        log.warning("spool over %d bytes: shed %d bytes", self.limits.max_bytes, before - self._bytes)

    def enforce_age(self, now_ms: int | None = None) -> None:
        """Apply the age bounds (the gateway calls this about once a minute)."""
        now = self._now_ms() if now_ms is None else now_ms
        instant_cutoff = now - int(self.limits.instantaneous_max_age_s * 1000)
        cutoff = now - int(self.limits.max_age_s * 1000)
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            self._count("evicted_age_instant", self._delete_oldest(ReadingClass.INSTANT, before_ts=instant_cutoff))
            self._count("stripped_age", self._strip_oldest(before_ts=instant_cutoff))
            for cls in (ReadingClass.REGISTER, ReadingClass.EVENT):
                self._count(f"evicted_age_{cls.name.lower()}", self._delete_oldest(cls, before_ts=cutoff))
            self._flush_counters()
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise SpoolError(f"spool age eviction failed: {exc}") from exc

    # -- reporting ------------------------------------------------------------------------------------------------
    @property
    def readings(self) -> int:
        """Committed readings in the spool."""
        return self._readings

    @property
    def bytes(self) -> int:
        """Accounted bytes of the committed readings (what `max_bytes` bounds)."""
        return self._bytes

    @property
    def buffered(self) -> int:
        with self._lock:
            return len(self._buffer)

    @property
    def counters(self) -> dict[str, int]:
        return dict(self._counters)

    @property
    def evicted(self) -> int:
        """Readings deleted by the bounds, over the spool's whole life."""
        return sum(v for k, v in self._counters.items() if k.startswith("evicted_"))

    def oldest_ts(self) -> int | None:
        """The smallest timestamp spooled: one index probe per class."""
        found = [
            row[0]
            for cls in ReadingClass
            if (row := self._db.execute("SELECT min(ts) FROM readings WHERE cls = ?", (int(cls),)).fetchone())[0]
            is not None
        ]
        return min(found) if found else None

    def stats(self) -> SpoolStats:
        return SpoolStats(self._readings, self._bytes, self.oldest_ts(), self.buffered, self.counters)

    def close(self) -> None:
        """Commit what is buffered and close the database."""
        self.commit()
        self._db.close()

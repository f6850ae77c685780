"""The quarantine keeps whole payloads once per message, is bounded in rows and in bytes (oldest evicted first,
counted and logged), ignores redeliveries, migrates the first schema on open, and `replay` honours the
configured batch size and stops, keeping every row, when InfluxDB refuses."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from dashboard.sources import QuarantineReader
from devices import Registry, encode_batch, readings_topic, units_for
from devices.backoff import FULL, Backoff
from ingest import IngestSettings, IngestStats, Pipeline
from ingest.mqtt import MqttConfig
from ingest.quarantine_cli import replay
from storage.errors import QuarantineUnusable, SinkRefused
from storage.quarantine import (
    PAYLOAD_OVERHEAD,
    ROW_OVERHEAD,
    SCHEMA_VERSION,
    Quarantine,
    QuarantineEntry,
    payload_digest,
    row_bytes,
)
from tests.support.ingest_fakes import FakeSource, FakeWriter
from tests.support.readings import T0, em_messages, em_values
from tests.support.waiting import wait_until

TOPIC = readings_topic("u1", "u1-gw1", "u1-em", "electricity_meter")


@pytest.fixture
def registry(make_registry: Callable[[str], Registry]) -> Registry:
    return make_registry("u1")


def _batch(n: int, *, nan_at: frozenset[int] = frozenset(), first_seq: int = 0) -> bytes:
    readings = []
    for i in range(n):
        values = em_values(first_seq + i)
        if i in nan_at:
            values = {**values, "power": math.nan}
        readings.append((T0 + (first_seq + i) * 1000, values))
    return encode_batch("u1-em", first_seq, units_for("electricity_meter"), readings)


async def _ingest(tmp_path: Path, registry: Registry, deliveries: list[tuple[str, bytes]]) -> tuple[IngestStats, int]:
    settings = IngestSettings(
        registry=tmp_path / "unused.toml", quarantine=tmp_path / "q.sqlite", mqtt=MqttConfig(), batch_interval_s=0.01
    )
    stats = IngestStats()
    source = FakeSource()
    writer = FakeWriter()
    pipeline = Pipeline(settings, registry, stats=stats, writer=writer, source=source)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    for delivery in deliveries:  # one at a time: a redelivery comes after the first was handled
        acked = len(source.acked)
        source.feed([delivery])
        await wait_until(lambda: len(source.acked) == acked + 1, what="ack")  # noqa: B023
    stop.set()
    await asyncio.wait_for(task, 10)
    return stats, len(writer.lines)


async def test_a_500_reading_batch_with_one_bad_reading_keeps_its_whole_payload_once(
    tmp_path: Path, registry: Registry
) -> None:
    payload = _batch(500, nan_at=frozenset({250}))
    assert len(payload) > 8192 * 3  # far beyond the 8 KiB the first schema kept
    stats, written = await _ingest(tmp_path, registry, [(TOPIC, payload), (TOPIC, payload)])  # and redelivered
    assert written == 499
    assert dict(stats.readings_quarantined) == {"non_finite": 2}  # counted per delivery, stored once
    q = Quarantine(tmp_path / "q.sqlite")
    try:
        rows = q.rows()
        assert [(r.reason, r.reading_index, r.readings) for r in rows] == [("non_finite", 250, 1)]
        assert rows[0].payload == payload and not rows[0].payload_truncated
        assert q.usage.rows == 1 and q.usage.payloads == 1
        (stored,) = q._db.execute("SELECT count(*) FROM payloads").fetchone()
        assert stored == 1
    finally:
        q.close()


async def test_several_rejected_readings_of_one_message_share_one_payload(tmp_path: Path, registry: Registry) -> None:
    payload = _batch(40, nan_at=frozenset({3, 17, 31}))
    _, written = await _ingest(tmp_path, registry, [(TOPIC, payload)])
    assert written == 37
    q = Quarantine(tmp_path / "q.sqlite")
    try:
        rows = q.rows()
        assert [r.reading_index for r in rows] == [3, 17, 31]
        assert {r.payload_digest for r in rows} == {payload_digest(payload)}
        assert q.usage.payloads == 1
        expected = sum(row_bytes(r.topic, r.device, r.reason, r.detail, r.errors) for r in rows)
        assert q.usage.bytes == expected + len(payload) + PAYLOAD_OVERHEAD
        assert q.delete([rows[0].id, rows[1].id]) == 2
        assert q.payload(rows[0].payload_digest) == payload  # still referenced by the third row
        assert q.delete([rows[2].id]) == 1
        assert q.payload(rows[0].payload_digest) is None  # gone with its last row
        assert (q.usage.rows, q.usage.bytes, q.usage.payloads) == (0, 0, 0)
    finally:
        q.close()


async def test_a_reading_republished_in_another_message_is_quarantined_once(tmp_path: Path, registry: Registry) -> None:
    """A gateway publishes what ingest has not confirmed again from its spool, in whatever message that makes:
    the rejected reading (seq 7) arrives first at index 7 of [0, 9], then at index 2 of [5, 9]. It is the same
    reading, kept once (`scripts/chaos_long.py` found it kept twice); another bad reading is a row of its own."""
    whole = _batch(10, nan_at=frozenset({7}))
    tail = _batch(5, nan_at=frozenset({2}), first_seq=5)
    other = _batch(5, nan_at=frozenset({3}), first_seq=5)  # seq 8: another reading
    stats, _ = await _ingest(tmp_path, registry, [(TOPIC, whole), (TOPIC, tail), (TOPIC, other)])
    assert dict(stats.readings_quarantined) == {"non_finite": 3}  # counted per delivery
    q = Quarantine(tmp_path / "q.sqlite")
    try:
        rows = q.rows()
        assert [(r.payload, r.reading_index) for r in rows] == [(whole, 7), (other, 3)]
        assert q.count_readings() == {"non_finite": 2}
    finally:
        q.close()


def _entry(n: int, index: int, payload: bytes) -> QuarantineEntry:
    return QuarantineEntry("t", None, "r", "", index, 1, (), payload, n)


def test_eviction_by_bytes_removes_exactly_the_oldest_rows_and_counts_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows cost 100 bytes, payloads 1,000. Message 0 has two rows on one payload (1,200), messages 1-9 one
    row each (1,100). With 5,000 bytes allowed: adding message 4 (5,600) evicts both rows of message 0 (the
    first frees only its own 100 bytes), each of the five later ones the oldest row: 7 rows, 6,700 bytes."""
    size = 1000 - PAYLOAD_OVERHEAD
    assert row_bytes("t", None, "r", "", "[]") == ROW_OVERHEAD + 4 == 100
    caplog.set_level(logging.INFO, logger="ingest")
    q = Quarantine(tmp_path / "q.sqlite", max_bytes=5000)
    try:
        payloads = [bytes([m]) * size for m in range(10)]
        ids: list[list[int]] = []
        for m, payload in enumerate(payloads):
            entries = [_entry(m, 0, payload)] + ([_entry(m, 1, payload)] if m == 0 else [])
            assert q.add(entries) == len(entries)
            ids.append([r.id for r in q.rows() if r.received_ms == m])
            assert q.usage.bytes <= 5000
        assert q.evicted_rows == 2 + 5
        assert q.evicted_bytes == 1200 + 5 * 1100
        assert (q.usage.rows, q.usage.bytes, q.usage.payloads) == (4, 4400, 4)
        assert [r.received_ms for r in q.rows()] == [6, 7, 8, 9]
        assert [r.id for r in q.rows()] == [i for m in range(6, 10) for i in ids[m]]
        assert all(q.payload(payload_digest(p)) is None for p in payloads[:6])
    finally:
        q.close()
    logged = [r for r in caplog.records if r.getMessage() == "quarantine full: oldest rows evicted"]
    assert len(logged) == 1  # at once, then at most once a minute
    assert {k: logged[0].fields[k] for k in ("evicted_rows", "evicted_bytes", "max_bytes")} == {  # type: ignore[attr-defined]
        "evicted_rows": 2,
        "evicted_bytes": 1200,
        "max_bytes": 5000,
    }


def test_eviction_by_rows_and_the_totals_survive_reopening(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q.sqlite", max_rows=5)
    try:
        assert q.add(_entry(n, 0, f"p{n}".encode()) for n in range(8)) == 8  # inserted, then 3 evicted
        assert q.evicted_rows == 3
        assert [r.received_ms for r in q.rows()] == [3, 4, 5, 6, 7]
        usage = q.usage
    finally:
        q.close()
    again = Quarantine(tmp_path / "q.sqlite", max_rows=5)
    try:
        assert again.usage == usage
        assert again.add([_entry(3, 0, b"p3")]) == 0  # a repeat of a stored row: nothing added, nothing evicted
        assert again.evicted_rows == 0
    finally:
        again.close()


def test_an_entry_larger_than_the_whole_quarantine_is_counted_not_kept_and_evicts_nothing(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q.sqlite", max_bytes=3000)
    try:
        q.add([_entry(0, 0, b"small")])
        assert q.add([_entry(1, 0, b"x" * 5000), _entry(2, 0, b"also small")]) == 1
        assert [r.received_ms for r in q.rows()] == [0, 2]
        assert q.evicted_rows == 1
        assert q.evicted_bytes == 5000 + PAYLOAD_OVERHEAD + 100
    finally:
        q.close()


# -- the first schema ------------------------------------------------------------------------------------

V1_SCHEMA = """
CREATE TABLE quarantine (
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
CREATE INDEX quarantine_received ON quarantine (received_ms);
"""


def _write_v1(path: Path, entries: list[QuarantineEntry]) -> None:
    """A quarantine file exactly as the first schema's `Quarantine.add` wrote it."""
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    for e in entries:
        digest = hashlib.sha256(e.topic.encode())
        digest.update(b"\0" + e.payload + b"\0")
        digest.update(f"{e.index}:{e.reason}".encode())
        db.execute(
            "INSERT INTO quarantine (received_ms, topic, device, reason, detail, reading_index, readings, errors,"
            " payload, payload_truncated, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                e.received_ms,
                e.topic,
                e.device,
                e.reason,
                e.detail,
                e.index,
                e.readings,
                json.dumps(list(e.errors)),
                e.payload[:8192],
                int(len(e.payload) > 8192),
                digest.hexdigest()[:32],
            ),
        )
    db.commit()
    db.close()


async def test_a_first_schema_quarantine_is_migrated_on_open(tmp_path: Path, registry: Registry) -> None:
    big = _batch(500, nan_at=frozenset({10, 20}))
    small = _batch(5, nan_at=frozenset({1, 2, 3}), first_seq=1000)
    other = TOPIC.replace("u1-em", "u1-ghost")
    entries = [
        QuarantineEntry(TOPIC, "u1-em", "non_finite", "nan", 10, 1, (), big, 1),
        QuarantineEntry(TOPIC, "u1-em", "non_finite", "nan", 20, 1, (), big, 2),
        *(QuarantineEntry(TOPIC, "u1-em", "non_finite", "nan", i, 1, (), small, 3) for i in (1, 2, 3)),
        QuarantineEntry(other, None, "bad_topic", "?", None, 5, ({"k": "v"},), small, 4),
    ]
    path = tmp_path / "q.sqlite"
    _write_v1(path, entries)

    q = Quarantine(path)
    try:
        assert q._db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        rows = q.rows()
        assert [r.id for r in rows] == [1, 2, 3, 4, 5, 6]
        assert [(r.reason, r.reading_index, r.readings, r.payload_truncated) for r in rows] == [
            ("non_finite", 10, 1, True),
            ("non_finite", 20, 1, True),
            ("non_finite", 1, 1, False),
            ("non_finite", 2, 1, False),
            ("non_finite", 3, 1, False),
            ("bad_topic", None, 5, False),
        ]
        assert rows[0].payload == big[:8192] and rows[2].payload == rows[5].payload == small
        assert q.usage.payloads == 2  # the truncated copy of `big` once, `small` once for both topics
        assert q.usage.rows == 6
        assert q.count_readings() == {"non_finite": 5, "bad_topic": 5}
        assert q.add(entries) == 0  # fingerprints kept: a redelivery of an old message adds nothing
        assert q.add([QuarantineEntry(TOPIC, "u1-em", "non_finite", "nan", 30, 1, (), big, 7)]) == 1
        assert q.usage.payloads == 3  # the whole payload now, apart from the truncated copy

        result = await replay(q, registry, FakeWriter(), dry_run=True)
        assert result.rows_truncated == 2  # never guessed at
    finally:
        q.close()
    assert QuarantineReader(path).by_reason("u1", 0) == {"non_finite": 6, "bad_topic": 5}  # read as before
    again = Quarantine(path)  # opening a migrated file again changes nothing
    try:
        assert again.usage.rows == 7
    finally:
        again.close()


def test_a_newer_or_unknown_schema_is_refused_with_what_to_do(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite"
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(QuarantineUnusable, match=r"newer than this ingest reads .* upgrade districtpulse"):
        Quarantine(newer)
    odd = tmp_path / "odd.sqlite"
    db = sqlite3.connect(odd)
    db.execute("CREATE TABLE quarantine (id INTEGER PRIMARY KEY, what TEXT)")
    db.commit()
    db.close()
    with pytest.raises(QuarantineUnusable, match=r"unknown layout .* move it aside"):
        Quarantine(odd)


# -- replay ----------------------------------------------------------------------------------------------


async def test_replay_writes_in_requests_of_batch_readings_and_removes_the_rows(
    tmp_path: Path, registry: Registry
) -> None:
    """30 messages of 5 readings from a device added to the registry since, plus one of 50: with
    batch_readings = 20, requests of 20 lines (the 50 split across three), every row removed."""
    q = Quarantine(tmp_path / "q.sqlite")
    messages = [*em_messages("u1", 150, 5), (TOPIC, _batch(50, first_seq=150))]
    q.add(QuarantineEntry(t, None, "unknown_device", "?", None, 5, (), p, 0) for t, p in messages)
    writer = FakeWriter()
    try:
        result = await replay(q, registry, writer, batch_readings=20)
        assert (result.rows_replayed, result.readings_written, result.write_requests) == (31, 200, 10)
        assert [len(body.splitlines()) for body in writer.requests] == [20] * 10
        assert len(writer.lines) == 200
        assert (q.usage.rows, q.usage.payloads, q.usage.bytes) == (0, 0, 0)
    finally:
        q.close()


async def test_replay_stops_when_influxdb_refuses_and_keeps_every_row(tmp_path: Path, registry: Registry) -> None:
    class Refusing(FakeWriter):
        async def write(self, body: bytes) -> None:
            self.calls += 1
            raise SinkRefused("InfluxDB database 'x' not found (404)", status=404, reason="not_found", body="")

    q = Quarantine(tmp_path / "q.sqlite")
    q.add(QuarantineEntry(t, None, "unknown_device", "?", None, 5, (), p, 0) for t, p in em_messages("u1", 50, 5))
    writer = Refusing()
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)

    try:
        result = await replay(
            q, registry, writer, batch_readings=20, backoff=Backoff(0.5, 30.0, FULL), attempts=5, sleep=record
        )
        assert result.aborted == "InfluxDB database 'x' not found (404)"
        assert (result.rows_replayed, result.write_requests, writer.calls, delays) == (0, 1, 1, [])
        assert q.usage.rows == 10
    finally:
        q.close()


async def test_replay_retries_an_unavailable_influxdb_then_gives_up_keeping_the_rows(
    tmp_path: Path, registry: Registry
) -> None:
    q = Quarantine(tmp_path / "q.sqlite")
    q.add(QuarantineEntry(t, None, "unknown_device", "?", None, 5, (), p, 0) for t, p in em_messages("u1", 50, 5))
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)

    try:
        flaky = FakeWriter(fail_first=2)
        result = await replay(q, registry, flaky, batch_readings=100, attempts=3, sleep=record)
        assert (result.aborted, result.rows_replayed, result.write_requests, len(delays)) == (None, 10, 3, 2)
        q.add(QuarantineEntry(t, None, "unknown_device", "?", None, 5, (), p, 1) for t, p in em_messages("u1", 5, 5))
        down = FakeWriter()
        down.down = True
        result = await replay(q, registry, down, attempts=3, sleep=record)
        assert (result.aborted, result.rows_replayed, result.write_requests) == ("down", 0, 3)
        assert q.usage.rows == 1
    finally:
        q.close()

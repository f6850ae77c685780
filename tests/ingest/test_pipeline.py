"""The pipeline with an in-memory broker and database: acknowledgement order, the in-flight cap during an
outage, the drain deadline, retries and the per-line isolation of refused points."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from devices import Registry
from ingest import IngestStats, Pipeline, Quarantine
from tests.support.ingest_fakes import FakeSource, FakeWriter, fake_pipeline
from tests.support.readings import em_messages
from tests.support.waiting import wait_until


def _pipeline(
    tmp_path: Path, registry: Registry, writer: FakeWriter, **overrides: object
) -> tuple[Pipeline, FakeSource, IngestStats]:
    pipeline, source, stats = fake_pipeline(tmp_path, registry, writer, **overrides)
    return pipeline, source, stats


@pytest.fixture
def registry(make_registry: Callable[[str], Registry]) -> Registry:
    return make_registry("u1")


async def test_every_message_is_acked_once_after_its_readings_are_written(tmp_path: Path, registry: Registry) -> None:
    writer = FakeWriter(fail_first=3)
    pipeline, source, stats = _pipeline(tmp_path, registry, writer, batch_readings=70)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    delivered = source.feed(em_messages("u1", 1000, 25))
    await wait_until(lambda: len(source.acked) == 40, what="40 acks")
    stop.set()
    await asyncio.wait_for(task, 10)

    assert sorted(m.mid for m in source.acked) == sorted(m.mid for m in delivered)
    assert len(writer.lines) == 1000
    assert stats.readings_stored == 1000 and stats.readings_valid == 1000 and stats.readings_received == 1000
    assert stats.write_retries == 3
    assert stats.inflight_readings == 0
    assert source.stopped


async def test_inflight_readings_stay_under_the_cap_while_the_database_is_down(
    tmp_path: Path, registry: Registry
) -> None:
    writer = FakeWriter()
    writer.down = True
    pipeline, source, stats = _pipeline(tmp_path, registry, writer, max_inflight_readings=300, batch_readings=100)
    writer.down = False  # prepare() succeeds, then the outage starts
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    await wait_until(lambda: writer.prepared, what="prepared")
    writer.down = True
    source.feed(em_messages("u1", 2000, 40))  # 50 messages of 40 readings
    await wait_until(lambda: stats.write_retries >= 20, what="retries during the outage")

    assert stats.inflight_readings_max <= 300
    assert stats.inflight_readings_max > 300 - 40  # the cap, not something else, stopped the intake
    assert source.acked == []
    assert stats.messages < 50  # the rest waits (in the broker, in real life)

    writer.down = False
    await wait_until(lambda: len(source.acked) == 50, what="all acked after recovery")
    stop.set()
    await asyncio.wait_for(task, 10)
    assert len(writer.lines) == 2000
    assert stats.inflight_readings_max <= 300
    assert stats.inflight_readings == 0


async def test_a_message_larger_than_the_cap_is_admitted_alone(tmp_path: Path, registry: Registry) -> None:
    writer = FakeWriter()
    pipeline, source, stats = _pipeline(tmp_path, registry, writer, max_inflight_readings=50)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    source.feed(em_messages("u1", 300, 120))  # 120, 120, 60
    await wait_until(lambda: len(source.acked) == 3, what="acks")
    stop.set()
    await asyncio.wait_for(task, 10)
    assert stats.inflight_readings_max == 120
    assert len(writer.lines) == 300


async def test_shutdown_with_the_database_down_stops_at_the_deadline_and_acks_nothing(
    tmp_path: Path, registry: Registry
) -> None:
    writer = FakeWriter()
    pipeline, source, stats = _pipeline(tmp_path, registry, writer, drain_timeout_s=0.3, max_inflight_readings=500)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    await wait_until(lambda: writer.prepared, what="prepared")
    writer.down = True
    source.feed(em_messages("u1", 1000, 50))
    await wait_until(lambda: stats.write_retries >= 5, what="retries")
    stop.set()
    await asyncio.wait_for(task, 10)  # without the deadline this waits for the database forever

    assert source.acked == []
    assert writer.lines == set()
    assert 0 < stats.abandoned_readings <= 500
    assert source.stopped


async def test_shutdown_drains_what_was_received_when_the_database_is_up(tmp_path: Path, registry: Registry) -> None:
    writer = FakeWriter()
    pipeline, source, stats = _pipeline(tmp_path, registry, writer, batch_interval_s=30.0, batch_readings=10_000)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    source.feed(em_messages("u1", 500, 50))
    await wait_until(lambda: stats.messages == 10, what="received")
    stop.set()  # the partial batch (waiting for its 30 s interval) is flushed, written and acked
    await asyncio.wait_for(task, 10)
    assert len(source.acked) == 10
    assert len(writer.lines) == 500
    assert stats.abandoned_readings == 0


async def test_refused_points_are_isolated_line_by_line(tmp_path: Path, registry: Registry) -> None:
    """Three readings that the database refuses, in two of 20 messages: only those three are quarantined
    (with their index in the payload), every other reading is written, and every message is acked."""
    messages = em_messages("u1", 400, 20)
    bad = {"power=917.0", "power=1103.0", "power=1111.0"}  # readings 17, 203 and 211
    writer = FakeWriter(refuse=sorted(bad))
    pipeline, source, stats = _pipeline(tmp_path, registry, writer, batch_readings=400, batch_interval_s=1.0)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    source.feed(messages)
    await wait_until(lambda: len(source.acked) == 20, what="acks")
    stop.set()
    await asyncio.wait_for(task, 10)

    assert len(writer.lines) == 397
    assert stats.readings_stored == 397
    assert dict(stats.readings_quarantined) == {"write_rejected": 3}
    q = Quarantine(tmp_path / "q.sqlite")
    try:
        rows = q._db.execute("SELECT topic, reason, reading_index, readings FROM quarantine ORDER BY id").fetchall()
    finally:
        q.close()
    topic = messages[0][0]
    assert sorted(rows) == [
        (topic, "write_rejected", 3, 1),  # message 10 (readings 200-219), reading 203
        (topic, "write_rejected", 11, 1),  # message 10, reading 211
        (topic, "write_rejected", 17, 1),  # message 0, reading 17
    ]


async def test_a_refused_line_maps_back_to_its_reading_around_readings_validation_rejected(
    tmp_path: Path, registry: Registry
) -> None:
    """Reading 2 fails validation (NaN) and reading 4 is refused by the database: the quarantine names
    index 2 and index 4 of the payload, though the refused line is the fourth line written."""
    import math

    from devices import encode_batch, readings_topic, units_for
    from tests.support.readings import T0, em_values

    readings = [(T0 + i * 1000, em_values(i)) for i in range(6)]
    readings[2] = (readings[2][0], {**readings[2][1], "power": math.nan})
    topic = readings_topic("u1", "u1-gw1", "u1-em", "electricity_meter")
    payload = encode_batch("u1-em", 0, units_for("electricity_meter"), readings)
    writer = FakeWriter(refuse=["power=904.0"])
    pipeline, source, _ = _pipeline(tmp_path, registry, writer)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    source.feed([(topic, payload)])
    await wait_until(lambda: len(source.acked) == 1, what="ack")
    stop.set()
    await asyncio.wait_for(task, 10)
    q = Quarantine(tmp_path / "q.sqlite")
    try:
        rows = q._db.execute("SELECT reason, reading_index FROM quarantine ORDER BY reading_index").fetchall()
    finally:
        q.close()
    assert rows == [("non_finite", 2), ("write_rejected", 4)]
    assert len(writer.lines) == 4

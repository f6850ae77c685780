"""Confirmations and what must precede them, with an in-memory broker and database: a message's rejections are
in the quarantine before it is acknowledged or confirmed; only stored ranges are confirmed, merged per gateway;
and a run ends, instead of hanging, when the drain deadline passes or a writer crashes."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from devices import Registry, encode_batch, readings_topic, units_for
from devices.wire import decode_confirm, merge_ranges
from ingest import IngestStats, Pipeline
from ingest.mqtt import Message, MqttConfig
from tests.support.ingest_fakes import FakeSource, FakeWriter, fake_pipeline
from tests.support.readings import T0, em_messages, em_values
from tests.support.waiting import wait_until


def _pipeline(
    tmp_path: Path, registry: Registry, writer: FakeWriter, **overrides: object
) -> tuple[Pipeline, FakeSource, IngestStats]:
    options = {"confirm_delay_s": 0.01, "mqtt": MqttConfig(client_id="ingest-under-test")}
    pipeline, source, stats = fake_pipeline(tmp_path, registry, writer, **(options | overrides))
    return pipeline, source, stats


@pytest.fixture
def registry(make_registry: Callable[[str], Registry]) -> Registry:
    return make_registry("c1")


def _confirmed(source: FakeSource) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """(topic, device) -> every confirmed range, in the order published."""
    out: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for topic, payload in source.published:
        for device, ranges in decode_confirm(payload).items():
            out.setdefault((topic, device), []).extend(ranges)
    return out


def _partly_bad(district: str, first: int, n: int, bad: int) -> tuple[str, bytes]:
    """One meter message of `n` readings whose reading `bad` is out of range (negative energy)."""
    readings = [(T0 + (first + k) * 1000, em_values(first + k)) for k in range(n)]
    readings[bad] = (readings[bad][0], {**readings[bad][1], "voltage": -5.0})
    topic = readings_topic(district, f"{district}-gw1", f"{district}-em", "electricity_meter")
    return topic, encode_batch(f"{district}-em", first, units_for("electricity_meter"), readings)


async def test_stored_ranges_are_confirmed_to_their_gateway_merged_after_the_write(
    tmp_path: Path, registry: Registry
) -> None:
    writer = FakeWriter()
    pipeline, source, stats = _pipeline(tmp_path, registry, writer, batch_readings=10_000)
    lines_at_confirm: list[int] = []
    source.on_publish = lambda _t, _p: lines_at_confirm.append(len(writer.lines))
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    source.feed(em_messages("c1", 1000, 100))
    await wait_until(lambda: pipeline.confirmer.stats.ranges == 10 and not pipeline.confirmer.pending_ranges)
    stop.set()
    await asyncio.wait_for(task, 10)

    assert _confirmed(source) == {("dp/v1/c1/c1-gw1/confirm", "c1-em"): [(0, 999)]}
    assert lines_at_confirm == [1000]  # confirmed only once all 1,000 points were written
    doc = json.loads(source.published[0][1])
    assert doc["by"] == "ingest-under-test" and doc["v"] == 1
    assert stats.readings_stored == 1000
    # what /metrics exports (dp_ingest_confirmed_messages_total, _confirmations_sent_total): the pipeline's figures
    assert (stats.confirmations.ranges, stats.confirmations.documents) == (10, len(source.published)) == (10, 1)


async def test_with_confirmations_off_messages_are_stored_and_acked_and_nothing_is_published(
    tmp_path: Path, registry: Registry
) -> None:
    writer = FakeWriter()
    pipeline, source, stats = _pipeline(tmp_path, registry, writer, confirm=False)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    source.feed(em_messages("c1", 500, 100))
    await wait_until(lambda: len(source.acked) == 5, what="acks")
    stop.set()
    await asyncio.wait_for(task, 10)

    assert source.published == [] and stats.confirmations.ranges == 0
    assert stats.readings_stored == 500 and len(writer.lines) == 500


async def test_nothing_is_confirmed_while_the_database_is_down(tmp_path: Path, registry: Registry) -> None:
    writer = FakeWriter()
    pipeline, source, stats = _pipeline(tmp_path, registry, writer, drain_timeout_s=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    await wait_until(lambda: writer.prepared, what="prepared")
    writer.down = True
    source.feed(em_messages("c1", 300, 100))
    await wait_until(lambda: stats.write_retries >= 10, what="retries")
    stop.set()
    await asyncio.wait_for(task, 10)
    assert source.published == [] and source.acked == []


async def test_a_partly_invalid_message_is_quarantined_before_it_is_acked_or_confirmed(
    tmp_path: Path, registry: Registry
) -> None:
    """The batch fills up with the good readings of a partly invalid message: the batch reaches a writer (and
    is acknowledged) while its rejected reading was not yet committed, unless the rejections go first."""
    writer = FakeWriter()
    pipeline, source, _stats = _pipeline(tmp_path, registry, writer, batch_readings=50)
    quarantine = tmp_path / "q.sqlite"
    rows_at_ack: list[tuple[int, int]] = []
    rows_at_confirm: list[int] = []

    def count() -> int:
        with sqlite3.connect(quarantine) as db:  # another connection: sees only what is committed
            return int(db.execute("SELECT count(*) FROM quarantine").fetchone()[0])

    def on_ack(messages: Sequence[Message]) -> None:
        rows_at_ack.extend((m.mid, count()) for m in messages)

    source.on_ack = on_ack
    source.on_publish = lambda _t, _p: rows_at_confirm.append(count())
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    await wait_until(lambda: writer.prepared, what="prepared")
    # 59 good readings fill a batch of 50; the messages after it keep the receive loop validating (and letting
    # the writers run) before the chunk is done
    bad, *_rest = source.feed([_partly_bad("c1", 100_000, 60, bad=59), *em_messages("c1", 6000, 10)])
    await wait_until(lambda: len(source.acked) == 601, what="acks")
    await wait_until(lambda: not pipeline.confirmer.pending_ranges, what="confirmations")
    stop.set()
    await asyncio.wait_for(task, 10)

    assert dict(rows_at_ack)[bad.mid] == 1
    assert rows_at_confirm[0] >= 1 and set(rows_at_confirm) == {1}
    confirmed = _confirmed(source)
    assert list(confirmed) == [("dp/v1/c1/c1-gw1/confirm", "c1-em")]
    assert merge_ranges(confirmed["dp/v1/c1/c1-gw1/confirm", "c1-em"]) == [(0, 5999), (100_000, 100_059)]
    assert len(writer.lines) == 6059


async def test_a_wholly_rejected_message_is_confirmed_and_one_without_a_range_is_counted(
    tmp_path: Path, registry: Registry
) -> None:
    writer = FakeWriter()
    pipeline, source, _stats = _pipeline(tmp_path, registry, writer)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    topic = readings_topic("c1", "c1-gw1", "c1-ghost", "electricity_meter")  # not in the registry
    ghost = encode_batch("c1-ghost", 7, units_for("electricity_meter"), [(T0, em_values(0)), (T0 + 1, em_values(1))])
    source.feed([(topic, ghost), (topic, b"not json"), ("elsewhere/x", b"{}")])
    await wait_until(lambda: len(source.acked) == 3, what="acks")
    await wait_until(lambda: bool(source.published), what="confirmation")
    stop.set()
    await asyncio.wait_for(task, 10)
    assert _confirmed(source) == {("dp/v1/c1/c1-gw1/confirm", "c1-ghost"): [(7, 8)]}
    assert pipeline.confirmer.stats.unconfirmable == 2


async def test_a_light_stream_during_an_outage_stops_at_the_deadline(tmp_path: Path, registry: Registry) -> None:
    """SIGTERM while InfluxDB is down: the writers are cancelled at the deadline with the queue full."""
    writer = FakeWriter()
    pipeline, source, stats = _pipeline(
        tmp_path, registry, writer, drain_timeout_s=0.3, writers=1, batch_readings=1, max_inflight_readings=10_000
    )
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    await wait_until(lambda: writer.prepared, what="prepared")
    writer.down = True
    source.feed(em_messages("c1", 10, 1))  # ten batches of one reading: one writer, a queue of two
    await wait_until(lambda: stats.write_retries >= 5, what="retries")
    stop.set()
    await asyncio.wait_for(task, 10)
    assert source.acked == [] and source.published == []
    assert source.stopped


async def test_a_writer_that_crashes_ends_the_run_instead_of_hanging_it(tmp_path: Path, registry: Registry) -> None:
    class Crashing(FakeWriter):
        async def write(self, body: bytes) -> None:
            raise RuntimeError("bug in a writer")

    writer = Crashing()
    pipeline, source, _stats = _pipeline(tmp_path, registry, writer, writers=1, batch_readings=1)
    stop = asyncio.Event()
    source.feed(em_messages("c1", 10, 1))
    with pytest.raises(ExceptionGroup) as raised:
        await asyncio.wait_for(pipeline.run(stop), 10)
    assert raised.group_contains(RuntimeError, match="bug in a writer")
    assert source.acked == [] and source.published == []
    assert source.stopped

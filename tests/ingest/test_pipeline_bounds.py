"""The pipeline with an in-memory broker and database on the payload bounds: an oversized message is
quarantined whole with only its start kept, a repeated timestamp costs only the later reading, and every
message is acknowledged."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from devices import Registry
from devices.validation import TOO_LARGE_KEPT_BYTES
from devices.wire import MAX_MESSAGE_BYTES
from ingest import IngestSettings, IngestStats, Pipeline, Quarantine
from ingest.mqtt import MqttConfig
from tests.support.ingest_fakes import FakeSource, FakeWriter
from tests.support.readings import T0, em_messages
from tests.support.waiting import wait_until


@pytest.fixture
def registry(make_registry: Callable[[str], Registry]) -> Registry:
    return make_registry("u1")


async def test_oversized_and_repeated_timestamps_lose_nothing_else(tmp_path: Path, registry: Registry) -> None:
    good = em_messages("u1", 100, 25)  # seq 0-99 in 4 messages
    topic, payload = em_messages("u1", 125, 25)[4]  # seq 100-124 ...
    oversized = payload + b" " * (MAX_MESSAGE_BYTES + 1 - len(payload))  # ... valid JSON, one byte too long
    doc = json.loads(em_messages("u1", 130, 5, start=T0 + 3_600_000)[-1][1])  # seq 125-129
    doc["readings"][3]["ts"] = doc["readings"][1]["ts"]
    repeated = json.dumps(doc).encode()
    settings = IngestSettings(
        registry=tmp_path / "unused.toml", quarantine=tmp_path / "q.sqlite", mqtt=MqttConfig(), batch_interval_s=0.01
    )
    source, writer, stats = FakeSource(), FakeWriter(), IngestStats()
    pipeline = Pipeline(settings, registry, stats=stats, writer=writer, source=source)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    delivered = source.feed([*good[:2], (topic, oversized), *good[2:], (topic, repeated)])
    await wait_until(lambda: len(source.acked) == 6, what="every message acknowledged")
    stop.set()
    await asyncio.wait_for(task, 10)

    assert {m.mid for m in source.acked} == {m.mid for m in delivered}
    assert stats.readings_stored == len(writer.lines) == 104  # 4 x 25, and 4 of the 5 with a repeated ts
    assert dict(stats.readings_quarantined) == {"too_large": 1, "duplicate_timestamp": 1}
    assert stats.write_requests == stats.batches_written  # nothing refused, nothing retried
    assert stats.inflight_readings == 0
    q = Quarantine(tmp_path / "q.sqlite")
    try:
        rows = {row.reason: row for row in q.rows()}
    finally:
        q.close()
    assert rows.keys() == {"too_large", "duplicate_timestamp"}
    big = rows["too_large"]
    assert (big.device, big.reading_index, big.readings) == ("u1-em", None, 1)
    assert big.payload == oversized[:TOO_LARGE_KEPT_BYTES]  # the start only, not 2 MiB
    assert f"payload of {MAX_MESSAGE_BYTES + 1} bytes" in big.detail
    assert json.loads(big.errors)[0]["bytes"] == MAX_MESSAGE_BYTES + 1
    dup = rows["duplicate_timestamp"]
    assert dup.reading_index == 3 and "readings[1]" in dup.detail
    assert dup.payload == repeated  # an ordinary rejection keeps its payload

"""The `unstored` points (storage.unstored) on an in-memory broker and database: quarantined runs of a known
device and gateways' eviction notices are written before their message is acknowledged and confirmed,
exactly once however often the message is delivered; a wrong notice is quarantined, not stored."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from devices import Registry, encode_batch, readings_topic, units_for
from devices.topics import evicted_topic
from devices.wire import Eviction, decode_confirm, encode_eviction
from ingest import IngestStats, Pipeline
from ingest.metrics import IngestMetrics
from ingest.mqtt import MqttConfig
from tests.support.ingest_fakes import FakeSource, FakeWriter, fake_pipeline
from tests.support.readings import T0, em_values
from tests.support.waiting import wait_until

TAGS = "unstored,district=a1,building=a1-b1,device=a1-em"


@pytest.fixture
def registry(make_registry: Callable[[str], Registry]) -> Registry:
    return make_registry("a1")


def _pipeline(tmp_path: Path, registry: Registry, writer: FakeWriter) -> tuple[Pipeline, FakeSource, IngestStats]:
    options = {"confirm_delay_s": 0.01, "mqtt": MqttConfig(client_id="ingest-acc")}
    pipeline, source, stats = fake_pipeline(tmp_path, registry, writer, **options)
    return pipeline, source, stats


async def _run(pipeline: Pipeline, source: FakeSource, messages: list[tuple[str, bytes]], acks: int) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    source.feed(messages)
    await wait_until(lambda: len(source.acked) == acks and not pipeline.confirmer.pending_ranges, what="acks")
    stop.set()
    await asyncio.wait_for(task, 10)


def _confirmed(source: FakeSource) -> list[tuple[str, str, list[tuple[int, int]]]]:
    return [(t, d, r) for t, p in source.published for d, r in decode_confirm(p).items()]


def _meter_message(first: int, n: int, bad: dict[int, dict[str, object]]) -> tuple[str, bytes]:
    readings = [(T0 + (first + k) * 1000, {**em_values(first + k), **bad.get(k, {})}) for k in range(n)]
    topic = readings_topic("a1", "a1-gw1", "a1-em", "electricity_meter")
    return topic, encode_batch("a1-em", first, units_for("electricity_meter"), readings)


async def test_quarantined_runs_are_unstored_points_stamped_with_their_readings_time_once_however_often_delivered(
    tmp_path: Path, registry: Registry
) -> None:
    writer = FakeWriter()
    pipeline, source, stats = _pipeline(tmp_path, registry, writer)
    bad_voltage = {"voltage": -5.0}
    message = _meter_message(100, 10, {2: bad_voltage, 3: bad_voltage, 7: {"power": float("nan")}})
    await _run(pipeline, source, [message, message], acks=2)  # the second: a redelivery

    assert len(writer.lines) == 7
    assert writer.unstored == {
        f"{TAGS},stage=ingest,reason=out_of_range first_seq=102i,last_seq=103i,readings=2i {T0 + 102_000}",
        f"{TAGS},stage=ingest,reason=non_finite first_seq=107i,last_seq=107i,readings=1i {T0 + 107_000}",
    }
    assert stats.readings_stored == 14 and stats.accounting_points == 4  # each delivery wrote its 2 points
    assert {(d, tuple(r)) for _, d, rs in _confirmed(source) for r in rs} == {("a1-em", (100, 109))}


async def test_a_wholly_rejected_message_of_a_known_device_is_one_point_written_before_its_ack(
    tmp_path: Path, registry: Registry
) -> None:
    writer = FakeWriter()
    pipeline, source, _ = _pipeline(tmp_path, registry, writer)
    topic, payload = _meter_message(0, 5, {})
    payload = payload.replace(b'"energy_import":"kWh"', b'"energy_import":"Wh"')  # wrong unit: all 5 refused
    acked_before_write: list[bool] = []
    source.on_publish = lambda _t, _p: acked_before_write.append(not writer.unstored)
    await _run(pipeline, source, [(topic, payload)], acks=1)

    assert writer.lines == set()
    assert writer.unstored == {f"{TAGS},stage=ingest,reason=wrong_unit first_seq=0i,last_seq=4i,readings=5i {T0}"}
    assert acked_before_write == [False]  # the confirmation came after the point was written


async def test_an_eviction_notice_is_stored_and_its_range_confirmed(tmp_path: Path, registry: Registry) -> None:
    writer = FakeWriter()
    pipeline, source, stats = _pipeline(tmp_path, registry, writer)
    notice = Eviction("a1-em", 40, 59, T0, T0 + 19_000, "bytes_limit", "register")
    topic = evicted_topic("a1", "a1-gw1", "a1-em")
    await _run(pipeline, source, [(topic, encode_eviction(notice))] * 2, acks=2)

    assert writer.lines == set()
    assert writer.unstored == {
        f"{TAGS},stage=edge,reason=bytes_limit,class=register first_seq=40i,last_seq=59i,readings=20i,"
        f"last_ts={T0 + 19_000}i {T0}"
    }
    assert {(t, d, tuple(r)) for t, d, rs in _confirmed(source) for r in rs} == {
        ("dp/v1/a1/a1-gw1/confirm", "a1-em", (40, 59))
    }
    assert stats.eviction_notices == 2 and stats.readings_evicted_at_edge == 40 and stats.readings_stored == 0
    scraped = {
        s.name: s.value
        for family in text_string_to_metric_families(generate_latest(IngestMetrics(stats).registry).decode())
        for s in family.samples
    }
    assert scraped["dp_ingest_eviction_notices_total"] == 2
    assert scraped["dp_ingest_readings_evicted_at_edge_total"] == 40
    assert scraped["dp_ingest_accounting_points_total"] == stats.accounting_points >= 1
    assert scraped["dp_ingest_accounting_refused_total"] == 0


async def test_a_wrong_eviction_notice_is_quarantined_and_only_a_notice_of_the_topic_device_is_confirmed(
    tmp_path: Path, registry: Registry
) -> None:
    writer = FakeWriter()
    pipeline, source, stats = _pipeline(tmp_path, registry, writer)
    good = Eviction("a1-em", 1, 2, T0, T0 + 1000, "age", "instant")
    messages = [
        (evicted_topic("a1", "a1-gw1", "a1-em"), b'{"v":1,"device":"a1-em","seq":[5,1]}'),  # not a notice
        (evicted_topic("a1", "a1-gw1", "a1-em"), encode_eviction(Eviction("a1-pv", 1, 2, T0, T0, "age", "instant"))),
        (evicted_topic("a1", "a1-gw1", "ghost"), encode_eviction(Eviction("ghost", 7, 8, T0, T0, "age", "instant"))),
        (evicted_topic("a1", "a1-gw2", "a1-em"), encode_eviction(good)),  # not behind that gateway
    ]
    await _run(pipeline, source, messages, acks=4)

    assert writer.unstored == set() and stats.eviction_notices == 0
    with sqlite3.connect(tmp_path / "q.sqlite") as db:
        reasons = [r for (r,) in db.execute("SELECT reason FROM quarantine ORDER BY id")]
    assert reasons == ["invalid_schema", "device_mismatch", "unknown_device", "wrong_gateway"]
    confirmed = {(t, d, tuple(r)) for t, d, rs in _confirmed(source) for r in rs}
    assert confirmed == {("dp/v1/a1/a1-gw1/confirm", "ghost", (7, 8)), ("dp/v1/a1/a1-gw2/confirm", "a1-em", (1, 2))}

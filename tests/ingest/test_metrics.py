"""Prometheus metrics: what one pipeline run counted, scraped over HTTP, with exact values."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from devices import Registry
from ingest import IngestSettings, IngestStats, Pipeline
from ingest.metrics import IngestMetrics, serve_metrics
from ingest.mqtt import MqttConfig
from tests.support.ingest_fakes import FakeSource, FakeWriter
from tests.support.readings import em_messages
from tests.support.waiting import wait_until


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_count_what_the_pipeline_did(tmp_path: Path, make_registry: Callable[[str], Registry]) -> None:
    registry = make_registry("m1")
    settings = IngestSettings(
        registry=tmp_path / "r.toml",
        quarantine=tmp_path / "q.sqlite",
        mqtt=MqttConfig(),
        batch_readings=100,
        batch_interval_s=0.01,
        retry_base_s=0.001,
        retry_max_s=0.002,
    )
    stats = IngestStats()
    metrics = IngestMetrics(stats)
    source = FakeSource()
    writer = FakeWriter(fail_first=2)
    pipeline = Pipeline(settings, registry, stats=stats, writer=writer, source=source, observer=metrics)
    metrics.attach(pipeline.source)
    server, _ = serve_metrics(metrics, "127.0.0.1", 0)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    started = time.time()
    try:
        good = em_messages("m1", 500, 50)  # 10 messages
        topic = good[0][0]
        source.feed([*good, (topic, b"{not json"), (topic.replace("m1-em", "m1-ghost"), good[0][1])])
        await wait_until(lambda: len(source.acked) == 12, what="acks")
        stop.set()
        await asyncio.wait_for(task, 10)
        response = await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 200
    m = _samples(response.text)
    assert m[("dp_ingest_messages_received_total", ())] == 12
    assert m[("dp_ingest_readings_received_total", ())] == 500 + 1 + 50
    assert m[("dp_ingest_readings_valid_total", ())] == 500
    assert m[("dp_ingest_readings_written_total", ())] == 500
    assert m[("dp_ingest_readings_quarantined_total", (("reason", "decode_error"),))] == 1
    assert m[("dp_ingest_readings_quarantined_total", (("reason", "unknown_device"),))] == 50
    assert m[("dp_ingest_messages_acked_total", ())] == 12
    assert started <= m[("dp_ingest_last_ack_timestamp_seconds", ())] <= time.time()
    assert m[("dp_ingest_write_retries_total", ())] == 2
    assert m[("dp_ingest_write_requests_total", ())] == len(writer.requests) + 2
    assert m[("dp_ingest_inflight_readings", ())] == 0
    assert 100 <= m[("dp_ingest_inflight_readings_max", ())] <= 500
    # one observation per successful write request, summing to every reading written
    assert m[("dp_ingest_batch_readings_count", ())] == len(writer.requests)
    assert m[("dp_ingest_batch_readings_sum", ())] == 500
    assert m[("dp_ingest_write_duration_seconds_count", ())] == len(writer.requests)
    assert m[("dp_ingest_ack_lag_seconds_count", ())] == stats.batches_written

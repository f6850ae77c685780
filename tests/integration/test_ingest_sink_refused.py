"""The database dropped under a running ingest (InfluxDB 1.6.7 answers every write 404 "database not found"):
an outage of the sink, not bad points. Nothing is quarantined or acknowledged while it lasts, the outage is
logged once and shows in /metrics; once the database is created again every reading is stored, exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from districtpulse.config import Endpoints
from ingest import IngestStats, Pipeline
from ingest.metrics import IngestMetrics, serve_metrics
from tests.support.gateway_mqtt import Publishing
from tests.support.ingest import ingest_settings
from tests.support.readings import em_messages
from tests.support.registries import unique, write_registry
from tests.support.services import count_points, drop_database, influx_query
from tests.support.waiting import wait_until


def _metric(port: int, name: str, **labels: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    raise AssertionError(f"no sample {name}{labels}")


def _influxql(endpoints: Endpoints, q: str) -> None:
    httpx.post(f"{endpoints.influx_url}/query", data={"q": q}, timeout=30).raise_for_status()


async def test_a_dropped_database_quarantines_nothing_acks_nothing_and_loses_nothing(
    endpoints: Endpoints, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    district = unique("sr")
    database = f"test_{district}"
    registry = write_registry(tmp_path / "registry.toml", district)
    settings = ingest_settings(
        endpoints, tmp_path, district, database, f"ingest-{district}", mqtt={"session_expiry_s": 0}, batch_readings=100
    )
    messages = em_messages(district, 1000, 10)  # 100 messages: 50 before the outage, 50 during it
    stats = IngestStats()
    metrics = IngestMetrics(stats)
    pipeline = Pipeline(settings, registry, stats=stats, observer=metrics)
    metrics.attach(pipeline.source, pipeline.quarantine)
    server, _ = serve_metrics(metrics, "127.0.0.1", 0)
    port = server.server_port
    caplog.set_level(logging.INFO, logger="ingest")
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    try:
        await asyncio.wait_for(pipeline.source.subscribed.wait(), 15)
        await asyncio.to_thread(Publishing(endpoints, messages[:50]).start().join)
        await wait_until(lambda: stats.messages_acked == 50, 30, "the first 50 messages")
        assert count_points(endpoints, database) == 500

        await asyncio.to_thread(_influxql, endpoints, f'DROP DATABASE "{database}"')
        await asyncio.to_thread(Publishing(endpoints, messages[50:]).start().join)
        await wait_until(lambda: stats.sink.refused_by_status[404] >= 5, 30, "refused writes")
        await asyncio.sleep(1.0)  # more refused attempts
        assert stats.messages_acked == 50  # nothing acknowledged while nothing is stored
        assert stats.readings_stored == 500
        assert dict(stats.readings_quarantined) == {}
        assert pipeline.quarantine.usage.rows == 0
        assert stats.inflight_readings == 500  # all 50 messages held, unacknowledged
        assert stats.write_retries == stats.sink.refused_by_status[404]  # every failure was the refusal
        assert await asyncio.to_thread(_metric, port, "dp_ingest_sink_down", reason="not_found") == 1
        refused = await asyncio.to_thread(_metric, port, "dp_ingest_sink_refused_total", status="404")
        assert refused >= 5

        await asyncio.to_thread(_influxql, endpoints, f'CREATE DATABASE "{database}"')
        await wait_until(lambda: stats.messages_acked == 100, 30, "every message acknowledged")
        assert await asyncio.to_thread(_metric, port, "dp_ingest_sink_down", reason="not_found") == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        server.shutdown()
        server.server_close()
    try:
        # the 500 stored before the drop went with the database; the 500 of the outage are all there, once
        series = influx_query(endpoints, database, f'SELECT "seq" FROM "electricity" WHERE device = \'{district}-em\'')
        assert sorted(row[1] for s in series for row in s["values"]) == list(range(500, 1000))
        assert stats.readings_stored == 1000
        assert dict(stats.readings_quarantined) == {}
        assert stats.inflight_readings == 0
    finally:
        drop_database(endpoints, database)
    outage_logs = [
        (r.levelname, getattr(r, "fields", {}).get("status")) for r in caplog.records if r.name == "ingest.sinkstate"
    ]
    assert outage_logs == [("ERROR", 404), ("WARNING", 404)]  # once when it started, once when it ended
    first = next(r for r in caplog.records if r.name == "ingest.sinkstate")
    assert f"InfluxDB database '{database}' not found (404)" in first.getMessage()

"""InfluxDB refusing every write (401/403/404, a dropped retention policy) is an outage, not bad points: the
1.x and 2.x writers raise SinkRefused with the status and a clear message, the pipeline retries with backoff,
quarantines and acknowledges nothing meanwhile, logs the outage once and exports it. The answers scripted
here are the ones InfluxDB 1.6.7 gives (measured with auth-enabled; see storage.influx)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devices import Registry
from ingest import IngestSettings, IngestStats, Pipeline, Quarantine
from ingest.metrics import IngestMetrics, serve_metrics
from ingest.mqtt import MqttConfig
from storage.errors import SinkRefused, SinkRejected, SinkUnavailable
from storage.influx import InfluxConfig, InfluxV1
from storage.influx2 import InfluxV2
from tests.support.influx_servers import BODY, FakeInflux, Reply, answer, influx2_config, scripted_server
from tests.support.ingest_fakes import FakeSource, FakeWriter
from tests.support.readings import em_messages
from tests.support.waiting import wait_until


def _json(status: str, body: bytes, *extra: str) -> Reply:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n" + "".join(f"{h}\r\n" for h in extra)
    return answer(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


UNAUTHORIZED = _json(
    "401 Unauthorized", b'{"error":"authorization failed"}', 'Www-Authenticate: Basic realm="InfluxDB"'
)
FORBIDDEN = _json("403 Forbidden", b'{"error":"\\"reader\\" user is not authorized to write to database \\"city\\""}')
DB_NOT_FOUND = _json("404 Not Found", b'{"error":"database not found: \\"city\\""}')
NO_SUCH_PATH = answer(
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 19\r\n\r\n404 page not found\n"
)
RP_NOT_FOUND = _json("500 Internal Server Error", b'{"error":"retention policy not found: raw"}')
PARTIAL_WRITE = _json(
    "400 Bad Request",
    b'{"error":"partial write: field type conflict: input field \\"v\\" on measurement \\"m\\" is type float,'
    b' already exists as type string dropped=1"}',
)
UNPARSABLE = _json("400 Bad Request", b'{"error":"unable to parse \'m,t=a v= 1\': missing field value"}')
BEYOND_RETENTION = _json("400 Bad Request", b'{"error":"partial write: points beyond retention policy dropped=1"}')
QUERY_OK = _json("200 OK", b'{"results":[{"statement_id":0}]}')
CREATE_FORBIDDEN = _json(
    "403 Forbidden",
    b'{"error":"error authorizing query: reader not authorized to execute statement \'CREATE DATABASE city\','
    b' requires admin privilege"}',
)


@pytest.mark.parametrize(
    ("reply", "status", "reason", "message"),
    [
        (
            UNAUTHORIZED,
            401,
            "unauthorized",
            "InfluxDB refused the credentials (user 'ingest') (401): authorization failed",
        ),
        (FORBIDDEN, 403, "forbidden", "InfluxDB forbids /write to user 'ingest' (403): \"reader\" user is not auth"),
        (DB_NOT_FOUND, 404, "not_found", "InfluxDB database 'city' not found (404)"),
        (NO_SUCH_PATH, 404, "not_found", "has no /write (404: 404 page not found): check the URL"),
        (RP_NOT_FOUND, 500, "not_found", "InfluxDB retention policy 'raw' of 'city' not found (500)"),
    ],
    ids=["401", "403", "404-database", "404-path", "500-retention-policy"],
)
async def test_v1_refusals_are_sink_refused_with_the_status_and_a_clear_message(
    reply: Reply, status: int, reason: str, message: str
) -> None:
    async with scripted_server() as server:
        server.replies = [reply]
        config = InfluxConfig(url=server.url, database="city", retention_policy="raw", username="ingest", password="x")
        influx = InfluxV1(config)
        try:
            with pytest.raises(SinkRefused) as refused:
                await influx.write(BODY)
        finally:
            await influx.aclose()
    assert isinstance(refused.value, SinkUnavailable)  # retried by the pipeline's loop
    assert (refused.value.status, refused.value.reason) == (status, reason)
    assert message in str(refused.value)


@pytest.mark.parametrize("reply", [PARTIAL_WRITE, UNPARSABLE, BEYOND_RETENTION], ids=["conflict", "parse", "retention"])
async def test_v1_400s_are_about_the_points_not_an_outage(reply: Reply) -> None:
    async with scripted_server() as server:
        server.replies = [reply]
        influx = InfluxV1(InfluxConfig(url=server.url, database="city"))
        try:
            with pytest.raises(SinkRejected) as rejected:
                await influx.write(BODY)
        finally:
            await influx.aclose()
    assert rejected.value.status == 400
    assert not isinstance(rejected.value, SinkUnavailable)


async def test_v1_prepare_tolerates_a_writer_that_may_not_create_databases_but_not_bad_credentials() -> None:
    async with scripted_server() as server:
        server.replies = [CREATE_FORBIDDEN, UNAUTHORIZED]
        influx = InfluxV1(InfluxConfig(url=server.url, database="city", username="writer", password="pw"))
        try:
            await influx.prepare()  # 403 "requires admin privilege": the database may exist, writes will tell
            with pytest.raises(SinkRefused) as refused:
                await influx.prepare()
        finally:
            await influx.aclose()
    assert refused.value.status == 401
    assert [r.target.split("?")[0] for r in server.requests] == ["/query", "/query"]


@pytest.mark.parametrize(
    ("status", "body", "reason", "message"),
    [
        (
            401,
            b'{"code":"unauthorized","message":"unauthorized access"}',
            "unauthorized",
            "refused the API token (401)",
        ),
        (
            403,
            b'{"code":"forbidden","message":"insufficient permissions for write"}',
            "forbidden",
            "forbids writing to bucket 'raw' of org 'city' with this token (403): insufficient permissions",
        ),
        (
            404,
            b'{"code":"not found","message":"bucket \\"raw\\" not found"}',
            "not_found",
            "InfluxDB bucket 'raw' of org 'city' not found (404): bucket \"raw\" not found",
        ),
    ],
    ids=["401", "403", "404"],
)
async def test_v2_refusals_are_sink_refused(
    influx2_server: FakeInflux, status: int, body: bytes, reason: str, message: str
) -> None:
    influx2_server.replies = [(status, {"Content-Type": "application/json"}, body)]
    writer = InfluxV2(influx2_config(influx2_server.url))
    try:
        with pytest.raises(SinkRefused) as refused:
            await writer.write(BODY)
        await writer.write(BODY)  # then it works
    finally:
        await writer.aclose()
    assert (refused.value.status, refused.value.reason) == (status, reason)
    assert message in str(refused.value)


# -- the pipeline -----------------------------------------------------------------------------------------


def _settings(tmp_path: Path, **overrides: object) -> IngestSettings:
    options: dict[str, object] = {"batch_interval_s": 0.01, "retry_base_s": 0.001, "retry_max_s": 0.01}
    return IngestSettings(
        registry=tmp_path / "unused.toml",
        quarantine=tmp_path / "q.sqlite",
        mqtt=MqttConfig(),
        **(options | overrides),  # type: ignore[arg-type]
    )


@pytest.fixture
def registry(make_registry: Callable[[str], Registry]) -> Registry:
    return make_registry("u1")


async def test_a_dropped_database_is_retried_not_bisected_or_quarantined(tmp_path: Path, registry: Registry) -> None:
    """200 readings while the database is missing: 5 refused attempts, then one request stores all 200
    (before: 399 requests, 0 stored, 200 quarantined as write_rejected and acknowledged)."""
    async with scripted_server() as server:
        server.replies = [QUERY_OK] + [DB_NOT_FOUND] * 5  # CREATE DATABASE, then the writes
        influx = InfluxV1(InfluxConfig(url=server.url, database="city", timeout=5))
        source = FakeSource()
        stats = IngestStats()
        pipeline = Pipeline(
            _settings(tmp_path, batch_readings=200, batch_interval_s=0.5),
            registry,
            stats=stats,
            writer=influx,
            source=source,
        )
        delays: list[float] = []

        async def record(delay: float) -> None:
            delays.append(delay)

        pipeline.sleep = record
        stop = asyncio.Event()
        task = asyncio.create_task(pipeline.run(stop))
        source.feed(em_messages("u1", 200, 20))
        await wait_until(lambda: len(source.acked) == 10, what="acks")
        stop.set()
        await asyncio.wait_for(task, 10)
    writes = [r for r in server.requests if r.target.startswith("/write")]
    assert len(writes) == 6
    assert all(len(w.body.splitlines()) == 200 for w in writes)  # the same batch each time, never halved
    assert stats.readings_stored == 200
    assert dict(stats.readings_quarantined) == {}
    assert stats.write_retries == 5
    assert stats.sink.refused_by_status == {404: 5}
    assert stats.sink.down_reason is None  # over: the sixth write was accepted
    assert len(delays) == 5
    q = Quarantine(tmp_path / "q.sqlite")
    try:
        assert q.usage.rows == 0
    finally:
        q.close()


class RefusingWriter(FakeWriter):
    """Refuses every write with `refusal` while it is set."""

    def __init__(self) -> None:
        super().__init__()
        self.refusal: SinkRefused | None = None

    async def write(self, body: bytes) -> None:
        refusal = self.refusal  # decided when the request arrives, as a server does: a switch meanwhile
        if refusal is not None:  # applies to the next requests (the test counted this one as refused before)
            self.calls += 1
            await asyncio.sleep(0)
            raise refusal
        await super().write(body)


def _samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_an_outage_acks_nothing_logs_once_per_streak_and_shows_in_the_metrics(
    tmp_path: Path, registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    writer = RefusingWriter()
    writer.refusal = SinkRefused("InfluxDB refused the credentials (401)", status=401, reason="unauthorized", body="")
    stats = IngestStats()
    metrics = IngestMetrics(stats)
    source = FakeSource()
    pipeline = Pipeline(
        _settings(tmp_path, batch_readings=50, writers=4),
        registry,
        stats=stats,
        writer=writer,
        source=source,
        observer=metrics,
    )
    metrics.attach(pipeline.source, pipeline.quarantine)
    server, _ = serve_metrics(metrics, "127.0.0.1", 0)
    port = server.server_port
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="ingest")
    task = asyncio.create_task(pipeline.run(stop))
    try:
        source.feed(em_messages("u1", 300, 10))  # 30 messages
        await wait_until(lambda: writer.calls >= 40, what="refused attempts")
        writer.refusal = SinkRefused("InfluxDB database 'x' not found (404)", status=404, reason="not_found", body="")
        calls = writer.calls
        await wait_until(lambda: writer.calls >= calls + 20, what="more refused attempts")
        assert source.acked == []
        assert stats.readings_stored == 0 and dict(stats.readings_quarantined) == {}
        down = await asyncio.to_thread(_samples, port)
        assert down[("dp_ingest_sink_down", (("reason", "not_found"),))] == 1
        assert down[("dp_ingest_sink_down", (("reason", "unauthorized"),))] == 0
        assert down[("dp_ingest_sink_down", (("reason", "forbidden"),))] == 0
        assert down[("dp_ingest_sink_down_since_timestamp_seconds", ())] > 0
        refused = {s: down[("dp_ingest_sink_refused_total", (("status", s),))] for s in ("401", "404")}
        assert refused["401"] == stats.sink.refused_by_status[401] >= 40  # no 401 since the switch
        assert 1 <= refused["404"] <= stats.sink.refused_by_status[404]  # the writers go on meanwhile

        writer.refusal = None
        await wait_until(lambda: len(source.acked) == 30, what="every message acknowledged")
        up = await asyncio.to_thread(_samples, port)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        server.shutdown()
        server.server_close()
    assert stats.readings_stored == 300 and len(writer.lines) == 300
    assert dict(stats.readings_quarantined) == {}
    assert up[("dp_ingest_sink_down", (("reason", "not_found"),))] == 0
    assert up[("dp_ingest_sink_down_since_timestamp_seconds", ())] == 0
    assert up[("dp_ingest_quarantine_rows", ())] == 0
    assert up[("dp_ingest_quarantine_max_bytes", ())] == 1 << 30
    records = [r for r in caplog.records if r.name == "ingest.sinkstate"]
    # one error when it started (401), one when the refusal changed (404), one when it ended
    assert [(r.levelname, getattr(r, "fields", {}).get("status")) for r in records] == [
        ("ERROR", 401),
        ("ERROR", 404),
        ("WARNING", 404),
    ]
    assert "InfluxDB refused the credentials (401)" in records[0].getMessage()
    assert records[2].fields["refused_attempts"] == stats.write_retries  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if r.name == "ingest.pipeline" and r.levelno >= logging.WARNING]

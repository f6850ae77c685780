"""InfluxDB 2.x writer (influxdb-client) and version detection, against a fake InfluxDB on loopback (the
`influx2_server` fixture, tests/support/influx_servers.py) that checks every request: path, org, bucket, precision,
token and body. (2.x cannot be installed here.)"""

from __future__ import annotations

import pytest

from storage.errors import SinkRejected, SinkUnavailable
from storage.influx import InfluxConfig, InfluxV1
from storage.influx2 import InfluxV2
from storage.writers import AutoWriter, major_version, open_writer
from tests.support.influx_servers import FakeInflux, influx2_config

BODY = (
    b"electricity,district=d,building=b,device=em energy_import=1000.25,power=900.0,seq=1i 1790000000000\n"
    b"electricity,district=d,building=b,device=em energy_import=1000.5,power=901.0,seq=2i 1790000060000"
)


async def test_auto_detects_2x_and_writes_with_org_bucket_precision_and_token(influx2_server: FakeInflux) -> None:
    writer = await open_writer(influx2_config(influx2_server.url, "auto"))
    assert isinstance(writer, AutoWriter)
    try:
        await writer.prepare()
        await writer.write(BODY)
    finally:
        await writer.aclose()
    assert isinstance(writer.chosen, InfluxV2)
    writes = [r for r in influx2_server.requests if r.method == "POST"]
    assert len(writes) == 1
    w = writes[0]
    assert w.path == "/api/v2/write"
    assert w.query == {"org": ["city"], "bucket": ["raw"], "precision": ["ms"]}
    assert w.headers["Authorization"] == "Token s3cret"
    assert w.body == BODY
    assert influx2_server.requests[0].path == "/ping"


async def test_2x_errors_become_retry_or_reject_and_retry_after_is_kept(influx2_server: FakeInflux) -> None:
    influx2_server.replies = [
        (503, {"Retry-After": "7"}, b'{"code":"unavailable","message":"busy"}'),
        (429, {}, b'{"code":"too many requests"}'),
        (422, {}, b'{"code":"unprocessable entity","message":"field type conflict"}'),
    ]
    writer = InfluxV2(influx2_config(influx2_server.url))
    try:
        with pytest.raises(SinkUnavailable) as unavailable:
            await writer.write(BODY)
        assert unavailable.value.retry_after == 7.0
        with pytest.raises(SinkUnavailable) as throttled:
            await writer.write(BODY)
        assert throttled.value.retry_after is None
        with pytest.raises(SinkRejected) as rejected:
            await writer.write(BODY)
        assert rejected.value.status == 422
        assert "field type conflict" in rejected.value.body
        await writer.write(BODY)  # then it works
    finally:
        await writer.aclose()
    assert len([r for r in influx2_server.requests if r.method == "POST"]) == 4


async def test_auto_detects_1x_and_uses_write_with_database(influx2_server: FakeInflux) -> None:
    influx2_server.version = "1.6.7~rc0"
    writer = AutoWriter(InfluxConfig(url=influx2_server.url, database="city", version="auto", retention_policy="raw"))
    try:
        await writer.write(BODY)  # prepares (detects) on first use
    finally:
        await writer.aclose()
    assert isinstance(writer.chosen, InfluxV1)
    post = [r for r in influx2_server.requests if r.method == "POST"]
    assert [r.path for r in post] == ["/query", "/write"]  # CREATE DATABASE, then the write
    assert post[1].query == {"db": ["city"], "precision": ["ms"], "rp": ["raw"]}
    assert post[1].body == BODY


async def test_an_unreachable_server_is_unavailable_not_a_crash() -> None:
    writer = AutoWriter(InfluxConfig(url="http://127.0.0.1:9", version="auto"))
    with pytest.raises(SinkUnavailable):
        await writer.prepare()


@pytest.mark.parametrize(
    ("header", "major"), [("1.6.7~rc0", "1"), ("1.8.10", "1"), ("v2.7.11", "2"), ("2.7.11", "2"), ("V2.0.0", "2")]
)
def test_major_version(header: str, major: str) -> None:
    assert major_version(header) == major


@pytest.mark.parametrize("header", [None, "", "3.0.0", "OSS", "v"])
def test_unknown_versions_are_refused(header: str | None) -> None:
    with pytest.raises(ValueError, match="unsupported InfluxDB version"):
        major_version(header)

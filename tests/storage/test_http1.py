"""storage.http1, the write client of the 1.x writer, against a scripted HTTP server on loopback (every answer
written byte by byte by the test), and InfluxV1's translation of its answers into SinkUnavailable/SinkRejected.
The real InfluxDB 1.6.7 is behind every integration test of ingest."""

from __future__ import annotations

import asyncio
import base64

import pytest

from storage.errors import SinkRejected, SinkUnavailable
from storage.http1 import MAX_RESPONSE_BYTES, Http1Client, HttpUnavailable
from storage.influx import InfluxConfig, InfluxV1
from tests.support.influx_servers import BODY, NO_CONTENT, answer, scripted_server


async def test_writes_reuse_one_connection_and_send_path_query_headers_and_body_intact() -> None:
    async with scripted_server() as server:
        client = Http1Client(server.url + "/influx/", timeout=5, auth=("ingest", "pa:ss"))
        try:
            for _ in range(5):
                response = await client.post("/write", {"db": "city", "precision": "ms"}, BODY)
                assert response.status == 204
                assert response.headers["x-influxdb-version"] == "1.6.7"
        finally:
            await client.aclose()
    assert server.connections == 1
    assert len(server.requests) == 5
    first = server.requests[0]
    assert first.head[0] == "POST /influx/write?db=city&precision=ms HTTP/1.1"
    assert first.header("host") == server.url.removeprefix("http://")
    assert first.header("content-type") == "text/plain; charset=utf-8"
    assert first.header("authorization") == "Basic " + base64.b64encode(b"ingest:pa:ss").decode()
    assert all(r.body == BODY for r in server.requests)


async def test_a_connection_the_server_closed_is_replaced_without_an_error() -> None:
    async with scripted_server() as server:
        # the first answer says nothing of closing, but the server closes anyway (an idle timeout)
        server.replies = [answer(NO_CONTENT, close=True), answer(NO_CONTENT), answer(NO_CONTENT, close=True)]
        client = Http1Client(server.url, timeout=5)
        try:
            for _ in range(4):
                await asyncio.sleep(0.01)  # the close reaches the client before the next write
                assert (await client.post("/write", {"db": "x"}, BODY)).status == 204
        finally:
            await client.aclose()
    assert len(server.requests) == 4
    assert server.connections == 3  # requests 1 | 2, 3 | 4


async def test_connection_close_and_http_1_0_answers_are_not_reused() -> None:
    async with scripted_server() as server:
        server.replies = [
            answer(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"),
            answer(b"HTTP/1.0 204 No Content\r\n\r\n"),
        ]
        client = Http1Client(server.url, timeout=5)
        try:
            for _ in range(3):
                await client.post("/write", {}, b"x")
        finally:
            await client.aclose()
    assert server.connections == 3


async def test_chunked_content_length_and_read_to_close_bodies() -> None:
    async with scripted_server() as server:
        server.replies = [
            answer(
                b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
                b'5;x=1\r\n{"err\r\n7\r\nor": 1}\r\n0\r\n\r\n'
            ),
            answer(b'HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\n\r\n{"error": 2}'),
            answer(b"HTTP/1.1 500 Oops\r\n\r\nthe rest of the connection", close=True),
        ]
        client = Http1Client(server.url, timeout=5)
        try:
            bodies = [(await client.post("/write", {}, b"x")).body for _ in range(3)]
        finally:
            await client.aclose()
    assert bodies == [b'{"error": 1}', b'{"error": 2}', b"the rest of the connection"]
    assert server.connections == 1  # the chunked and sized answers left the connection usable


@pytest.mark.parametrize(
    "reply",
    [
        b"",  # closed without a word
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nno colon here\r\n\r\n",
        f"HTTP/1.1 400 Bad\r\nContent-Length: {MAX_RESPONSE_BYTES + 1}\r\n\r\n".encode(),
        b"HTTP/1.1 400 Bad\r\nContent-Length: 50\r\n\r\nshort",  # then closed
    ],
)
async def test_a_broken_answer_is_unavailable_not_a_crash(reply: bytes) -> None:
    async with scripted_server() as server:
        server.replies = [answer(reply, close=True)] * 2  # the retry on a fresh connection breaks alike
        client = Http1Client(server.url, timeout=5)
        try:
            with pytest.raises(HttpUnavailable):
                await client.post("/write", {}, b"x")
        finally:
            await client.aclose()


async def test_a_server_that_never_answers_times_out_once_even_on_a_pooled_connection() -> None:
    async with scripted_server() as server:
        # the first write leaves a pooled connection; the second is read and never answered
        server.replies = [answer(NO_CONTENT), lambda _r: (b"", False)]
        client = Http1Client(server.url, timeout=0.3)
        try:
            await client.post("/write", {}, b"x")
            with pytest.raises(HttpUnavailable, match="TimeoutError") as timed_out:
                await asyncio.wait_for(client.post("/write", {}, b"x"), 5)
            assert timed_out.value.timed_out
        finally:
            await client.aclose()
    assert len(server.requests) == 2  # not sent a third time on a fresh connection


async def test_influx_v1_translates_statuses_and_transport_failures() -> None:
    async with scripted_server() as server:
        server.replies = [
            answer(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nslow"),
            answer(b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n"),
            answer(b'HTTP/1.1 400 Bad Request\r\nContent-Length: 37\r\n\r\n{"error":"partial write: field type"}'),
        ]
        influx = InfluxV1(InfluxConfig(url=server.url, database="city", retention_policy="raw", timeout=5))
        try:
            with pytest.raises(SinkUnavailable) as throttled:
                await influx.write(BODY)
            assert throttled.value.retry_after == 7.0
            with pytest.raises(SinkUnavailable) as unavailable:
                await influx.write(BODY)
            assert unavailable.value.retry_after is None
            with pytest.raises(SinkRejected) as rejected:
                await influx.write(BODY)
            assert (rejected.value.status, rejected.value.body) == (400, '{"error":"partial write: field type"}')
            await influx.write(BODY)
        finally:
            await influx.aclose()
    assert [r.target for r in server.requests] == ["/write?db=city&precision=ms&rp=raw"] * 4
    assert server.connections == 1


async def test_an_unreachable_influxdb_is_unavailable() -> None:
    influx = InfluxV1(InfluxConfig(url="http://127.0.0.1:9", database="city", timeout=5))
    try:
        with pytest.raises(SinkUnavailable, match="unreachable"):
            await influx.write(BODY)
    finally:
        await influx.aclose()


def test_only_http_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="not an http"):
        Http1Client("ftp://127.0.0.1", timeout=1)

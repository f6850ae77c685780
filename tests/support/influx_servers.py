"""InfluxDB's HTTP side, faked on loopback for the storage and ingest tests.

- `scripted_server()`: an asyncio HTTP/1.1 server whose every answer is written byte by byte by the test
  (`answer(...)`, or any `Reply`), recording the requests and connections; `BODY` is a 2000-line write.
- `fake_influx2()`: a threaded server that answers as InfluxDB 2.x (or 1.x, by `version`) and records every
  request: path, query, headers and body; `influx2_config(url)` the writer configuration that goes with it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from storage.influx import InfluxConfig

# --- a scripted HTTP/1.1 server ----------------------------------------------------------------------------

BODY = b"electricity,district=d,building=b,device=em energy_import=1000.25,seq=1i 1790000000000\n" * 2000
NO_CONTENT = b"HTTP/1.1 204 No Content\r\nX-Influxdb-Version: 1.6.7\r\n\r\n"


@dataclass
class Request:
    connection: int
    head: list[str]
    body: bytes

    @property
    def target(self) -> str:
        return self.head[0].split(" ")[1]

    def header(self, name: str) -> str | None:
        for line in self.head[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name:
                return value.strip()
        return None


#: What the server does with a request: the bytes to answer, then whether to close the connection.
Reply = Callable[[Request], tuple[bytes, bool]]


@dataclass
class Server:
    replies: list[Reply] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    url: str = ""


@asynccontextmanager
async def scripted_server() -> AsyncIterator[Server]:
    server = Server()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        number = server.connections
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                head = raw.decode("latin-1").split("\r\n")[:-2]
                request = Request(number, head, b"")
                length = int(request.header("content-length") or 0)
                request.body = await reader.readexactly(length)
                server.requests.append(request)
                reply = server.replies.pop(0) if server.replies else (lambda _r: (NO_CONTENT, False))
                data, close = reply(request)
                writer.write(data)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    tcp = await asyncio.start_server(handle, "127.0.0.1", 0)
    server.url = f"http://127.0.0.1:{tcp.sockets[0].getsockname()[1]}"
    try:
        yield server
    finally:
        tcp.close()


def answer(data: bytes, *, close: bool = False) -> Reply:
    return lambda _r: (data, close)


# --- a fake InfluxDB 2.x -----------------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeInflux:
    version: str
    requests: list[Recorded] = field(default_factory=list)
    #: responses for write requests, in order: (status, headers, body); then 204
    replies: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


@contextmanager
def fake_influx2() -> Iterator[FakeInflux]:
    """A threaded HTTP server on loopback that answers as InfluxDB `version` (v2.7.11 until a test changes it)
    and records every request; write requests get `replies` in order, then 204."""
    fake = FakeInflux(version="v2.7.11")

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            parts = urlsplit(self.path)
            fake.requests.append(
                Recorded(self.command, parts.path, parse_qs(parts.query), dict(self.headers), self.rfile.read(length))
            )

        def do_GET(self) -> None:
            self._record()
            self.send_response(204)
            self.send_header("X-Influxdb-Version", fake.version)
            self.end_headers()

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_POST(self) -> None:
            self._record()
            if self.path.startswith("/query"):  # 1.x: CREATE DATABASE
                status, headers, body = 200, {"Content-Type": "application/json"}, b'{"results":[{"statement_id":0}]}'
            else:
                status, headers, body = fake.replies.pop(0) if fake.replies else (204, {}, b"")
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()


def influx2_config(url: str, version: str = "2") -> InfluxConfig:
    return InfluxConfig(url=url, version=version, org="city", bucket="raw", token="s3cret", timeout=5.0)

"""A small HTTP/1.1 client for ingest's one hot request: POST a body of line protocol, read the answer.

Why not httpx here: on this machine httpx spends about 1 ms of CPU on a 5,000-line write to InfluxDB, and a
plain asyncio stream 0.25 ms for the same exchange (`benchmarks/influx_write_client.py` measures both). At
the rates ingest is built for that difference is a tenth of its CPU, on a machine where InfluxDB needs the
rest. Queries, /ping and the 2.x client keep httpx; only the 1.x write goes through here.

What it does, and no more:
- keep-alive connections, one per concurrent request, at most `max_idle` kept between requests;
- `http` and `https` (the system's CAs, or `ssl_context`), basic auth, one timeout per exchange (connect
  included);
- responses with Content-Length, chunked, or read to the end of the connection, with a cap on their size;
- a request that fails on a connection taken from the pool is sent once more on a fresh connection, because
  the server may have closed it while it was idle (a write of the same points is idempotent); not one that
  timed out, which would only double the wait.

It raises only `HttpUnavailable` (the server cannot be reached or the exchange broke: retry later), so that the
caller (`storage.influx`, the boundary) translates one exception.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

#: A response body beyond this is refused: InfluxDB's answers to writes are empty or a short JSON error.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
_MAX_HEADERS = 100


class HttpUnavailable(ConnectionError):
    """The exchange did not complete: refused or reset connection, timeout, or a malformed answer."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    #: lower-case names
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class Http1Client:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        auth: tuple[str, str] | None = None,
        max_idle: int = 8,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        self._prefix = parts.path.rstrip("/")
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._host_header = host if parts.port is None else f"{host}:{parts.port}"
        self._auth = ""
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            self._auth = f"Authorization: Basic {token}\r\n"
        self._timeout = timeout
        self._max_idle = max_idle
        self._idle: list[_Connection] = []

    async def post(
        self, path: str, params: Mapping[str, str], body: bytes, *, content_type: str = "text/plain; charset=utf-8"
    ) -> Response:
        """POST `body` to `path?params`; the response, whatever its status. Raises HttpUnavailable."""
        target = f"{self._prefix}{path}?{urlencode(params)}" if params else f"{self._prefix}{path}"
        head = (
            f"POST {target} HTTP/1.1\r\nHost: {self._host_header}\r\n{self._auth}"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        if self._idle:
            try:
                return await self._exchange(self._idle.pop(), head, body)
            except HttpUnavailable as exc:
                if exc.timed_out:  # the server is slow, not gone: another try would double the wait
                    raise
                # closed while idle, most likely: once more on a fresh connection
        return await self._exchange(None, head, body)

    async def _exchange(self, conn: _Connection | None, head: bytes, body: bytes) -> Response:
        try:
            async with asyncio.timeout(self._timeout):
                if conn is None:
                    reader, writer = await asyncio.open_connection(
                        self._host, self._port, ssl=self._ssl, server_hostname=self._host if self._ssl else None
                    )
                    conn = _Connection(reader, writer)
                conn.writer.write(head)
                conn.writer.write(body)
                await conn.writer.drain()
                response, keep = await _read_response(conn.reader)
        except (OSError, EOFError, TimeoutError, ValueError, asyncio.LimitOverrunError) as exc:
            if conn is not None:
                conn.close()
            raise HttpUnavailable(
                f"{self._host}:{self._port}: {type(exc).__name__}: {exc}", timed_out=isinstance(exc, TimeoutError)
            ) from exc
        if keep and len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.close()
        return response

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            with contextlib.suppress(OSError, ssl.SSLError):
                await conn.writer.wait_closed()


async def _read_response(reader: asyncio.StreamReader) -> tuple[Response, bool]:
    """The response and whether the connection may carry another request. ValueError on anything malformed."""
    line = await reader.readline()
    if not line.endswith(b"\n"):
        raise EOFError("connection closed before a response")
    version, _, rest = line.rstrip(b"\r\n").partition(b" ")
    if not version.startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP/1.x status line: {line[:80]!r}")
    status = int(rest[:3])
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS):
        line = await reader.readline()
        if line in (b"\r\n", b"\n"):
            break
        if not line.endswith(b"\n"):
            raise EOFError("connection closed in the headers")
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            raise ValueError(f"malformed header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    else:
        raise ValueError(f"more than {_MAX_HEADERS} headers")
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection and (version == b"HTTP/1.1" or "keep-alive" in connection)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if not 0 <= length <= MAX_RESPONSE_BYTES:
            raise ValueError(f"response body of {length} bytes")
        body = await reader.readexactly(length)
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:  # the body runs to the end of the connection
        body = await reader.read(MAX_RESPONSE_BYTES + 1)
        if len(body) > MAX_RESPONSE_BYTES:
            raise ValueError("response body too large")
        keep = False
    return Response(status, headers, body), keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readline()
        if not size_line.endswith(b"\n"):
            raise EOFError("connection closed in a chunked body")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            break
        total += size
        if total > MAX_RESPONSE_BYTES:
            raise ValueError("response body too large")
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("chunk not followed by CRLF")
    while (line := await reader.readline()) not in (b"\r\n", b"\n"):  # trailers
        if not line.endswith(b"\n"):
            raise EOFError("connection closed in the trailers")
    return b"".join(parts)

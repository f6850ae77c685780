"""InfluxDB 1.x over HTTP: `/write` (line protocol) and `/query` (InfluxQL).

This module is the one boundary where transport errors (httpx's, and `ingest.http1`'s for writes) and HTTP
statuses become `SinkUnavailable` (retry) or `SinkRejected` (the points are bad). Writes, the hot path, go
through `ingest.http1` (a quarter of httpx's CPU per request); queries and /ping through httpx. The 2.x
writer is `ingest.influx2` (influxdb-client); InfluxQL queries work on 2.x too through its v1 compatibility API.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from ingest.errors import SinkRejected, SinkUnavailable
from ingest.http1 import Http1Client, HttpUnavailable
from ingest.retry import parse_retry_after


@dataclass(frozen=True, slots=True)
class InfluxConfig:
    url: str = "http://127.0.0.1:8086"
    database: str = "districtpulse"
    retention_policy: str | None = None
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    #: "1", "2", or "auto": ask /ping (see `ingest.writers.open_writer`)
    version: str = "1"
    org: str | None = None
    bucket: str | None = None
    token: str | None = None


class Writer(Protocol):
    """What the pipeline needs from a database: the 1.x client here, the 2.x one in `ingest.influx2`.

    `write` returns only when the database has stored every point of the body (line protocol, ms), and
    raises `SinkUnavailable` (retry later) or `SinkRejected` (some points can never be stored)."""

    async def prepare(self) -> None:
        """Make sure the target (database, bucket) exists; raises SinkUnavailable while unreachable."""

    async def write(self, body: bytes) -> None: ...

    async def aclose(self) -> None: ...


def _check_status(path: str, status: int, headers: Mapping[str, str], text: str) -> None:
    """HTTP 5xx and 429 are SinkUnavailable (with the Retry-After hint), other 4xx SinkRejected."""
    if status >= 500 or status == 429:
        raise SinkUnavailable(
            f"InfluxDB {path} answered {status}: {text[:300]}",
            retry_after=parse_retry_after(headers.get("retry-after")),
        )
    if status >= 400:
        raise SinkRejected(f"InfluxDB {path} refused the request ({status}): {text[:300]}", status=status, body=text)


class InfluxV1:
    """An async client for one database of an InfluxDB 1.x server."""

    def __init__(self, config: InfluxConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        auth = (config.username, config.password or "") if config.username else None
        self._http = httpx.AsyncClient(base_url=config.url, timeout=config.timeout, auth=auth, transport=transport)
        self._writes = Http1Client(config.url, timeout=config.timeout, auth=auth)

    async def __aenter__(self) -> InfluxV1:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._writes.aclose()
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:  # connection refused, reset, timeout
            raise SinkUnavailable(f"InfluxDB at {self.config.url} unreachable: {exc!r}") from exc
        if response.status_code >= 400:
            _check_status(path, response.status_code, response.headers, response.text)
        return response

    async def ping(self) -> str:
        """The server's version (X-Influxdb-Version header)."""
        response = await self._request("GET", "/ping")
        return str(response.headers.get("X-Influxdb-Version", "unknown"))

    async def write(self, body: bytes) -> None:
        """Write line protocol with millisecond timestamps; returns only when InfluxDB has stored it."""
        params = {"db": self.config.database, "precision": "ms"}
        if self.config.retention_policy:
            params["rp"] = self.config.retention_policy
        try:
            response = await self._writes.post("/write", params, body)
        except HttpUnavailable as exc:
            raise SinkUnavailable(f"InfluxDB at {self.config.url} unreachable: {exc}") from exc
        if response.status >= 400:
            _check_status("/write", response.status, response.headers, response.text)

    async def query(self, influxql: str, *, database: str | None = None) -> list[dict[str, Any]]:
        """Run InfluxQL and return the series of the first statement (each: name, tags, columns, values)."""
        response = await self._request(
            "POST", "/query", params={"db": database or self.config.database, "epoch": "ms"}, data={"q": influxql}
        )
        result = json.loads(response.content)["results"][0]
        if "error" in result:
            raise SinkRejected(f"InfluxQL error: {result['error']}", status=400, body=result["error"])
        series: list[dict[str, Any]] = result.get("series", [])
        return series

    async def prepare(self) -> None:
        await self.create_database()

    async def create_database(self) -> None:
        name = self.config.database.replace('"', "")
        await self.query(f'CREATE DATABASE "{name}"', database=name)

"""InfluxDB 1.x over HTTP: `/write` (line protocol) and `/query` (InfluxQL).

This module is the one boundary where transport errors (httpx's, and `storage.http1`'s for writes) and HTTP
statuses become `SinkUnavailable` (retry), `SinkRefused` (an outage that needs an operator: retry) or
`SinkRejected` (the points are bad). What InfluxDB 1.6.7 answers, measured:

    401 {"error":"authorization failed"}                 wrong user or password (auth-enabled)
    403 {"error":"\"u\" user is not authorized to write to database \"d\""}   no WRITE privilege
    404 {"error":"database not found: \"d\""}              the database was dropped
    404 "404 page not found" (text/plain)                 not an InfluxDB path: a wrong URL or proxy prefix
    500 {"error":"retention policy not found: rp"}         the retention policy was dropped
    400 {"error":"partial write: field type conflict: ... dropped=1"}   bad points, the others stored
    400 {"error":"partial write: points beyond retention policy dropped=1"}
    400 {"error":"unable to parse '...': missing field value"}

The first five refuse every point whatever it holds, so they are `SinkRefused`; a 400 is about the points.
Writes, the hot path, go
through `storage.http1` (a quarter of httpx's CPU per request); queries and /ping through httpx. The 2.x
writer is `storage.influx2` (influxdb-client); InfluxQL queries work on 2.x too through its v1 compatibility API.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from storage.errors import REFUSAL_REASONS, SinkRefused, SinkRejected, SinkUnavailable, parse_retry_after
from storage.http1 import Http1Client, HttpUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InfluxConfig:
    url: str = "http://127.0.0.1:8086"
    database: str = "districtpulse"
    retention_policy: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # secrets never in a repr (a log line, a traceback)
    timeout: float = 30.0
    #: "1", "2", or "auto": ask /ping (see `storage.writers.open_writer`)
    version: str = "1"
    org: str | None = None
    bucket: str | None = None
    token: str | None = field(default=None, repr=False)


class Writer(Protocol):
    """What the pipeline needs from a database: the 1.x client here, the 2.x one in `storage.influx2`.

    `write` returns only when the database has stored every point of the body (line protocol, ms), and
    raises `SinkUnavailable` (retry later) or `SinkRejected` (some points can never be stored)."""

    async def prepare(self) -> None:
        """Make sure the target (database, bucket) exists; raises SinkUnavailable while unreachable."""

    async def write(self, body: bytes) -> None: ...

    async def aclose(self) -> None: ...


def error_text(body: str) -> str:
    """InfluxDB's own words from an error body: `error` (1.x) or `message` (2.x) of its JSON, else the text."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body.strip()
    if isinstance(doc, dict):
        for key in ("error", "message"):
            if isinstance(doc.get(key), str):
                return str(doc[key])
    return body.strip()


def _refusal(config: InfluxConfig, path: str, status: int, text: str) -> SinkRefused | None:
    """The outage a 1.x answer reports, if it is one (see the module docstring), else None."""
    error = error_text(text)[:300]
    who = f"user {config.username!r}" if config.username else "no credentials"
    if status == 401:
        message = f"InfluxDB refused the credentials ({who}) (401): {error}"
    elif status == 403:
        message = f"InfluxDB forbids {path} to {who} (403): {error}"
    elif status == 404 and "database not found" in error:
        message = f"InfluxDB database {config.database!r} not found (404)"
    elif status == 404:
        message = f"InfluxDB at {config.url} has no {path} (404: {error}): check the URL"
    elif status == 500 and "retention policy not found" in error:
        message = f"InfluxDB retention policy {config.retention_policy!r} of {config.database!r} not found (500)"
    else:
        return None
    return SinkRefused(message, status=status, reason=REFUSAL_REASONS.get(status, "not_found"), body=text)


def _check_status(config: InfluxConfig, path: str, status: int, headers: Mapping[str, str], text: str) -> None:
    """401/403/404 (and a missing retention policy) are SinkRefused, other 5xx and 429 SinkUnavailable (with
    the Retry-After hint), other 4xx SinkRejected."""
    refused = _refusal(config, path, status, text)
    if refused is not None:
        raise refused
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
            _check_status(self.config, path, response.status_code, response.headers, response.text)
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
            _check_status(self.config, "/write", response.status, response.headers, response.text)

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
        """Create the database. A user with WRITE but not ALL privileges may not (403, "requires admin
        privilege"): the database may well exist then, and the writes will tell (404 if it does not)."""
        try:
            await self.create_database()
        except SinkRefused as exc:
            if exc.status != 403:
                raise
            fields = {"database": self.config.database, "status": exc.status, "detail": error_text(exc.body)[:300]}
            log.info("may not create the database, assuming it exists", extra={"fields": fields})

    async def create_database(self) -> None:
        name = self.config.database.replace('"', "")
        await self.query(f'CREATE DATABASE "{name}"', database=name)

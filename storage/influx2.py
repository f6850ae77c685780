"""InfluxDB 2.x through influxdb-client: `/api/v2/write` with org, bucket and an API token.

The client's synchronous write API runs in a worker thread (`asyncio.to_thread`): its async API needs
aiohttp, which the server extra does not install, and one write per batch (thousands of readings) makes the
thread hop negligible. The client's own batching and retries are off (SYNCHRONOUS, `retries=False`): the
pipeline batches, retries with backoff and honours Retry-After itself, in one place for both versions.

This module is the boundary where influxdb-client and urllib3 errors become `SinkUnavailable` (5xx, 429,
connection errors: retry), `SinkRefused` (401 a revoked or wrong token, 403 a token without write permission,
404 a deleted bucket or org: an outage, retried) or `SinkRejected` (other 4xx: bad points, e.g. a field type
conflict, which 2.x reports as 422 for the whole request).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import cast

import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from storage.errors import REFUSAL_REASONS, SinkRefused, SinkRejected, SinkUnavailable, parse_retry_after
from storage.influx import InfluxConfig, error_text

_MS = cast(WritePrecision, WritePrecision.MS)  # the class holds plain str constants; the API is annotated


def _retry_after(exc: ApiException) -> float | None:
    headers: Mapping[str, str] = exc.headers or {}
    return parse_retry_after(headers.get("Retry-After") or headers.get("retry-after"))


class InfluxV2:
    """Writes line protocol (ms precision) to one bucket of an InfluxDB 2.x server."""

    def __init__(self, config: InfluxConfig) -> None:
        if not (config.org and config.bucket and config.token):
            raise ValueError("InfluxDB 2.x needs org, bucket and token")
        self.config = config
        self.org: str = config.org
        self.bucket: str = config.bucket
        self._client = InfluxDBClient(
            url=config.url, token=config.token, org=config.org, timeout=int(config.timeout * 1000), retries=False
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    async def prepare(self) -> None:
        """The bucket is created with the org (docker-compose initialises both); nothing to do but be reachable."""
        await asyncio.to_thread(self._ping)

    def _ping(self) -> None:
        try:
            ok = self._client.ping()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SinkUnavailable(f"InfluxDB at {self.config.url} unreachable: {exc!r}") from exc
        if not ok:
            raise SinkUnavailable(f"InfluxDB at {self.config.url} did not answer /ping")

    def _write(self, body: bytes) -> None:
        try:
            self._write_api.write(bucket=self.bucket, org=self.org, record=body, write_precision=_MS)
        except ApiException as exc:
            status = int(exc.status or 0)
            text = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body or exc.reason)
            refused = self._refusal(status, text)
            if refused is not None:
                raise refused from exc
            if status >= 500 or status == 429 or status == 0:
                raise SinkUnavailable(
                    f"InfluxDB write answered {status}: {text[:300]}", retry_after=_retry_after(exc)
                ) from exc
            message = f"InfluxDB refused the write ({status}): {text[:300]}"
            raise SinkRejected(message, status=status, body=text) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SinkUnavailable(f"InfluxDB at {self.config.url} unreachable: {exc!r}") from exc

    def _refusal(self, status: int, text: str) -> SinkRefused | None:
        reason = REFUSAL_REASONS.get(status)
        if reason is None:
            return None
        error = error_text(text)[:300]
        target = f"bucket {self.bucket!r} of org {self.org!r}"
        if status == 401:
            message = f"InfluxDB refused the API token (401): {error}"
        elif status == 403:
            message = f"InfluxDB forbids writing to {target} with this token (403): {error}"
        else:
            message = f"InfluxDB {target} not found (404): {error}"
        return SinkRefused(message, status=status, reason=reason, body=text)

    async def write(self, body: bytes) -> None:
        await asyncio.to_thread(self._write, body)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._client.close)

"""The storage exception family. Library exceptions (httpx's, `storage.http1`'s, influxdb-client's and
urllib3's) are translated into these at one boundary per client (`storage.influx` for 1.x, `storage.influx2`
for 2.x); nothing above `storage` sees a library exception from the database:

    StorageError
    └── SinkError                 the database did not store a batch (or answer a query)
        ├── SinkUnavailable       retried with jittered exponential backoff; the broker keeps the messages meanwhile
        │   └── SinkRefused       the database is up but refuses every write (HTTP 401/403/404, a missing retention
        │                         policy): an outage, retried and alerted on, never blamed on the points
        └── SinkRejected          the database refused the points (other 4xx): quarantine the offending points
    └── QuarantineUnusable        the quarantine file cannot be opened or migrated: ingest does not start without it
"""

from __future__ import annotations

import email.utils
import time


class StorageError(Exception):
    """Base of every error `storage` raises on purpose."""


class QuarantineUnusable(StorageError):
    """The quarantine file has a schema this version cannot read or migrate; the message says what to do."""


class SinkError(StorageError):
    """The database did not store a batch."""


class SinkUnavailable(SinkError):
    """The database is unreachable, overloaded or timed out: try again later.

    `retry_after` is the server's Retry-After hint in seconds, if it sent one."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SinkRefused(SinkUnavailable):
    """InfluxDB answers but refuses every write whatever the points: rotated credentials (401), a user or
    token without write permission (403), a dropped database or bucket (404), a dropped retention policy
    (1.x answers 500). Nothing is acknowledged or quarantined meanwhile; it lasts until an operator acts.

    `reason` is one of `REFUSAL_REASONS` (the label of `dp_ingest_sink_down`)."""

    def __init__(self, message: str, *, status: int, reason: str, body: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.body = body


#: `SinkRefused.reason` by HTTP status; a missing retention policy (1.x: 500) is "not_found" too.
REFUSAL_REASONS: dict[int, str] = {401: "unauthorized", 403: "forbidden", 404: "not_found"}


class SinkRejected(SinkError):
    """The database refused the batch (bad points): retrying the same request cannot succeed."""

    def __init__(self, message: str, *, status: int, body: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date (RFC 9110 10.2.3); None when
    absent or unreadable (the backoff alone decides then)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))

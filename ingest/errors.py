"""The ingest exception tree. Library exceptions (httpx, paho) are translated into these at one boundary
each (`ingest.influx` for the database, `ingest.mqtt` for the broker):

    TelemetryError
    ├── BadInput              never retried: the readings go to quarantine with a reason
    ├── SinkError
    │   ├── SinkUnavailable   retried with jittered exponential backoff; the broker keeps the messages meanwhile
    │   │   └── SinkRefused   the database is up but refuses every write (HTTP 401/403/404, a missing retention
    │   │                     policy): an outage, retried and alerted on, never blamed on the points
    │   └── SinkRejected      the database refused the points (other 4xx): quarantine the offending points
    └── QuarantineUnusable    the quarantine file cannot be opened or migrated: ingest does not start without it

Anything else is a bug: it leaves the TaskGroup and stops the process rather than being swallowed.
"""

from __future__ import annotations


class TelemetryError(Exception):
    """Base of every error ingest raises on purpose."""


class BadInput(TelemetryError):
    """A message or reading that can never be stored as it is."""


class SinkError(TelemetryError):
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


class QuarantineUnusable(TelemetryError):
    """The quarantine file has a schema this version cannot read or migrate; the message says what to do."""

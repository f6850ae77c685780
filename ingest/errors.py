"""The ingest exception tree. Library exceptions (httpx, paho) are translated into these at one boundary
each (`ingest.influx` for the database, `ingest.mqtt` for the broker):

    TelemetryError
    ├── BadInput              never retried: the readings go to quarantine with a reason
    └── SinkError
        ├── SinkUnavailable   retried with jittered exponential backoff; the broker keeps the messages meanwhile
        └── SinkRejected      the database refused the points (HTTP 4xx): quarantine the offending points

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


class SinkRejected(SinkError):
    """The database refused the batch (bad points): retrying the same request cannot succeed."""

    def __init__(self, message: str, *, status: int, body: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = body

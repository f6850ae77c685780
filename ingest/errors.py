"""The ingest exception tree. The database's errors are `storage.errors` (translated at `storage`'s client
boundary), the broker's are translated in `ingest.mqtt`; what is ingest's own:

    TelemetryError
    ├── BadInput              never retried: the readings go to quarantine with a reason
    └── QuarantineUnusable    the quarantine file cannot be opened or migrated: ingest does not start without it

Anything else is a bug: it leaves the TaskGroup and stops the process rather than being swallowed.
"""

from __future__ import annotations


class TelemetryError(Exception):
    """Base of every error ingest raises on purpose (the database's are `storage.errors.StorageError`)."""


class BadInput(TelemetryError):
    """A message or reading that can never be stored as it is."""


class QuarantineUnusable(TelemetryError):
    """The quarantine file has a schema this version cannot read or migrate; the message says what to do."""

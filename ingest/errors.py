"""The ingest exception tree. The database's errors are `storage.errors` (translated at `storage`'s client
boundary), the broker's are translated in `ingest.mqtt`; what is ingest's own:

    TelemetryError
    └── BadInput              never retried: the readings go to quarantine with a reason

The quarantine file's own error (`QuarantineUnusable`: it cannot be opened or migrated, ingest does not start
without it) is `storage.errors`', where the quarantine store lives (`storage.quarantine`).

Anything else is a bug: it leaves the TaskGroup and stops the process rather than being swallowed.
"""

from __future__ import annotations


class TelemetryError(Exception):
    """Base of every error ingest raises on purpose (the database's are `storage.errors.StorageError`)."""


class BadInput(TelemetryError):
    """A message or reading that can never be stored as it is."""

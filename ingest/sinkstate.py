"""Whether InfluxDB refuses every write (`SinkRefused`: rotated credentials, a missing privilege, a dropped
database, bucket or retention policy), shared by the writers of one pipeline.

Such an outage lasts until an operator acts, and eight writers retry it with backoff meanwhile: it is logged
once when it starts (at error level, with the status), again only if the refusal changes (401 fixed, now 404),
and once when a write succeeds again. `dp_ingest_sink_down{reason}` and `dp_ingest_sink_refused_total{status}`
(`ingest.metrics`) export it, so the alert does not depend on reading logs.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from storage.errors import SinkRefused

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SinkState:
    #: `SinkRefused.reason` of the current outage, None while writes are accepted
    down_reason: str | None = None
    down_status: int | None = None
    #: Unix time the current outage started (0.0: none)
    down_since: float = 0.0
    #: refused write attempts, by HTTP status, since the start
    refused_by_status: Counter[int] = field(default_factory=Counter)
    #: refused attempts in the current outage
    streak: int = 0

    def refused(self, exc: SinkRefused) -> None:
        """A write (or the preparation of the database) was refused; it will be retried."""
        self.refused_by_status[exc.status] += 1
        self.streak += 1
        if (exc.reason, exc.status) == (self.down_reason, self.down_status):
            return
        if self.down_reason is None:
            self.down_since = time.time()
        self.down_reason, self.down_status = exc.reason, exc.status
        fields = {"status": exc.status, "reason": exc.reason, "detail": str(exc)[:300], "body": exc.body[:300]}
        log.error(
            "InfluxDB refuses writes: %s; retrying with backoff, nothing is acknowledged or quarantined meanwhile",
            exc,
            extra={"fields": fields},
        )

    def accepted(self) -> None:
        """A write succeeded: the outage, if there was one, is over."""
        if self.down_reason is None:
            return
        fields = {
            "status": self.down_status,
            "reason": self.down_reason,
            "refused_attempts": self.streak,
            "down_s": round(time.time() - self.down_since, 3),
        }
        log.warning("InfluxDB accepts writes again", extra={"fields": fields})
        self.down_reason, self.down_status, self.down_since, self.streak = None, None, 0.0, 0

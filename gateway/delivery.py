"""What the gateway has published and ingest has not confirmed yet: the delivery ledger.

A reading goes through four states, and only the last lets it leave the spool:

    spooled ──publish──► in flight ──PUBACK 0──► with the broker ──confirmation──► confirmed (deleted)
                            │                         │
                            │ PUBACK 0x10 / >= 0x80   │ no confirmation within the timeout
                            ▼                         ▼
                         published again, later (exponential backoff with jitter, per message)

The broker is not storage: a PUBACK means it took the message, not that anyone will get it (0x10 says that
nobody was subscribed, and a broker that crashes loses what it had not saved). Ingest publishes a
confirmation (`devices.wire`) once every reading of a message is stored in InfluxDB or durably quarantined;
then, and only then, the gateway deletes the readings. What is not confirmed in time is published again from
the spool: the same sequence numbers and contents, which InfluxDB stores once.

Bounds. The ledger holds metadata only (device, sequence range, attempts, deadline), never payloads; paho
holds a payload only until its PUBACK (bounded by the publisher's window and `max_inflight_bytes`). The
readings published and not confirmed are bounded too (`max_unconfirmed_readings`): at the bound the gateway
stops publishing new readings, which then wait in the spool, the one place made to keep them. So a long
outage of ingest costs one window per gateway in the broker, not the whole backlog, and the republishing is
one window per backoff period (at most `timeout_max_s`), not a storm. When a confirmation arrives again after
a silence, whatever was waiting for its retry is retried soon (`timeout_s`), so the backlog drains as soon as
ingest is back.

`delete_on = "puback"` keeps the old behaviour (delete on a successful PUBACK) for a deployment whose ingest
does not confirm yet; failure codes never delete in either mode.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal

from devices.backoff import NEAR, Backoff

log = logging.getLogger(__name__)

DeleteOn = Literal["confirm", "puback"]
#: Confirmation latencies kept for the heartbeat's percentiles.
LATENCY_SAMPLES = 2048

#: PUBACK reason codes by value, for logs and the heartbeat (MQTT 5.0, 3.4.2.1).
REASON_NAMES = {
    0x10: "no matching subscribers",
    0x80: "unspecified error",
    0x83: "implementation specific error",
    0x87: "not authorized",
    0x90: "topic name invalid",
    0x91: "packet identifier in use",
    0x97: "quota exceeded",
    0x99: "payload format invalid",
}


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    delete_on: DeleteOn = "confirm"
    #: Without a confirmation this long after a successful PUBACK, a message is published again; the wait
    #: doubles with every attempt, up to `timeout_max_s`.
    timeout_s: float = 30.0
    timeout_max_s: float = 600.0
    #: After a PUBACK that says the broker did not take the message (0x10, >= 0x80): the first retry's wait,
    #: doubling likewise.
    retry_min_s: float = 2.0
    #: Readings published and not confirmed, at most (per gateway).
    max_unconfirmed_readings: int = 20_000

    def __post_init__(self) -> None:
        if not 0 < self.timeout_s <= self.timeout_max_s or not 0 < self.retry_min_s <= self.timeout_max_s:
            raise ValueError("need 0 < timeout_s <= timeout_max_s and 0 < retry_min_s <= timeout_max_s")
        if self.max_unconfirmed_readings < 1:
            raise ValueError("max_unconfirmed_readings must be >= 1")


@dataclass(slots=True, eq=False)
class Sent:
    """One published message: a run of consecutive readings of one device."""

    device: str
    first: int
    last: int
    size: int  #: payload bytes, held by paho until the PUBACK
    attempts: int  #: how many times this range has been published
    deadline: float = 0.0  #: monotonic time of the next publication, unless confirmed before
    mid: int | None = None  #: the message id while the PUBACK is awaited
    published_at: float = 0.0  #: monotonic time of this publication
    done: bool = False  #: confirmed (or dropped): its heap entry is stale

    @property
    def readings(self) -> int:
        return self.last - self.first + 1


@dataclass(slots=True)
class DeliveryCounts:
    confirmed_readings: int = 0
    confirmations: int = 0
    republished_messages: int = 0
    republished_readings: int = 0
    #: confirmations dropped because the main loop fell `max_pending_confirms` behind, or not decodable
    confirms_dropped: int = 0
    confirms_invalid: int = 0
    #: PUBACK reason codes other than 0, by value
    puback_reasons: Counter[int] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "confirmed_readings": self.confirmed_readings,
            "confirmations": self.confirmations,
            "republished_messages": self.republished_messages,
            "republished_readings": self.republished_readings,
            "confirms_dropped": self.confirms_dropped,
            "confirms_invalid": self.confirms_invalid,
            "puback_reasons": {str(code): n for code, n in sorted(self.puback_reasons.items())},
        }


class Ledger:
    """The gateway's main thread owns it (no lock): PUBACKs and confirmations reach it through queues."""

    def __init__(self, policy: DeliveryPolicy, *, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.counts = DeliveryCounts()
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not crypto)
        self._by_mid: dict[int, Sent] = {}
        self._by_device: dict[str, dict[int, Sent]] = {}  # device -> first seq -> message
        self._due: list[tuple[float, int, Sent]] = []  # (deadline, tie-breaker, message), stale entries skipped
        self._tie = 0
        self.inflight_bytes = 0
        self.unconfirmed_readings = 0
        self.last_confirmation: float | None = None  # monotonic
        self._logged: dict[int, float] = {}  # reason code -> when it was last logged
        #: seconds from publication to confirmation of the last `LATENCY_SAMPLES` confirmed messages
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)

    # -- publishing -----------------------------------------------------------------------------------------
    def has_room(self) -> bool:
        return self.unconfirmed_readings < self.policy.max_unconfirmed_readings

    def sent(
        self, mid: int, device: str, first: int, last: int, size: int, *, attempts: int = 1, now: float = 0.0
    ) -> Sent:
        """A message was handed to the publisher; until its PUBACK, paho resends it itself after a reconnect."""
        entry = Sent(device, first, last, size, attempts, mid=mid, published_at=now)
        self._by_mid[mid] = entry
        self._by_device.setdefault(device, {})[first] = entry
        self.inflight_bytes += size
        self.unconfirmed_readings += entry.readings
        if attempts > 1:
            self.counts.republished_messages += 1
            self.counts.republished_readings += entry.readings
        return entry

    def puback(self, mid: int, code: int, now: float) -> Sent | None:
        """The broker answered message `mid`: returns its entry if the broker took it (code 0), else None.

        With `delete_on = "puback"` that entry is forgotten (the caller deletes its readings); otherwise it
        waits for its confirmation until its deadline. Unknown ids (the status message) are ignored."""
        entry = self._by_mid.pop(mid, None)
        if entry is None:
            return None
        entry.mid = None
        self.inflight_bytes -= entry.size
        if code:
            self.counts.puback_reasons[code] += 1
            self._log_reason(code, entry, now)
            if not entry.done:  # the broker did not take it: nobody subscribed, not authorized, over quota...
                self._schedule(entry, now + self.backoff(self.policy.retry_min_s, entry.attempts))
            return None
        if not entry.done:
            if self.policy.delete_on == "puback":
                self._forget(entry)
            else:
                self._schedule(entry, now + self.backoff(self.policy.timeout_s, entry.attempts))
        return entry

    def backoff(self, base: float, attempts: int) -> float:
        """How long to wait before attempt `attempts + 1`: `base` doubling per attempt up to `timeout_max_s`,
        ±20 % (`devices.backoff.NEAR`: gateways that lost the same broker do not retry together)."""
        return Backoff(base, max(base, self.policy.timeout_max_s), NEAR, uniform=self._rng.uniform).delay(attempts)

    def _schedule(self, entry: Sent, deadline: float) -> None:
        entry.deadline = deadline
        self._tie += 1
        heapq.heappush(self._due, (deadline, self._tie, entry))

    def _log_reason(self, code: int, entry: Sent, now: float) -> None:
        last = self._logged.get(code)
        if last is not None and now - last < 60.0:
            return  # once a minute per code: a broker without subscribers would otherwise log every message
        self._logged[code] = now
        fields = {
            "reason_code": code,
            "reason": REASON_NAMES.get(code, "unknown"),
            "device": entry.device,
            "seq": [entry.first, entry.last],
            "count": self.counts.puback_reasons[code],
        }
        log.warning("broker did not take a message: kept in the spool, published again later", extra={"fields": fields})

    # -- confirmations ---------------------------------------------------------------------------------------
    def confirmed(self, device: str, first: int, last: int, now: float) -> None:
        """Ingest stored (or quarantined) readings `first`..`last` of `device`: forget the messages inside.

        A message only partly inside stays (its other readings are not confirmed); its retry publishes only
        what is still spooled. The first confirmation after a silence brings the retries waiting longer than
        `timeout_s` forward: ingest is back, so the backlog should not wait out its backoff."""
        if self.last_confirmation is None or now - self.last_confirmation > self.policy.timeout_s:
            self._bring_forward(now + self.policy.timeout_s)
        self.last_confirmation = now
        entries = self._by_device.get(device)
        if not entries:
            return
        for start in [s for s, e in entries.items() if first <= s and e.last <= last]:
            entry = entries[start]
            self._latencies.append(now - entry.published_at)
            self._forget(entry)

    def _bring_forward(self, deadline: float) -> None:
        moved = [entry for _, _, entry in self._due if not entry.done and entry.deadline > deadline]
        for entry in moved:
            self._schedule(entry, deadline)  # the old heap entry is skipped: its deadline no longer matches

    def _forget(self, entry: Sent) -> None:
        entry.done = True
        entries = self._by_device.get(entry.device)
        if entries is not None and entries.get(entry.first) is entry:
            del entries[entry.first]
        # (confirmed before its PUBACK came back: `_by_mid` keeps it, and the PUBACK then only frees the bytes)
        self.unconfirmed_readings -= entry.readings
        self.counts.confirmed_readings += entry.readings

    def take_due(self, now: float, limit: int) -> list[Sent]:
        """Up to `limit` messages whose wait is over, earliest first; they leave the ledger (the caller
        publishes what of them is still spooled, as new entries)."""
        out: list[Sent] = []
        due = self._due
        while due and len(out) < limit and due[0][0] <= now:
            deadline, _, entry = heapq.heappop(due)
            if entry.done or entry.deadline != deadline or entry.mid is not None:
                continue  # confirmed, rescheduled, or back in flight
            entry.done = True
            entries = self._by_device.get(entry.device)
            if entries is not None and entries.get(entry.first) is entry:
                del entries[entry.first]
            self.unconfirmed_readings -= entry.readings
            out.append(entry)
        return out

    def next_due(self) -> float | None:
        """The earliest retry deadline of a message still waiting for one. Stale heap entries (confirmed,
        rescheduled, back in flight) are dropped from the top first: a confirmed message's old deadline
        would otherwise wake the gateway for nothing, 30 s after every message it ever published."""
        due = self._due
        while due and (due[0][2].done or due[0][2].deadline != due[0][0] or due[0][2].mid is not None):
            heapq.heappop(due)
        return due[0][0] if due else None

    def latency(self) -> dict[str, float] | None:
        """Publication to confirmation over the last confirmed messages: median, 99th percentile, maximum."""
        if not self._latencies:
            return None
        ordered = sorted(self._latencies)
        n = len(ordered)
        return {
            "p50": round(ordered[(n - 1) // 2], 3),
            "p99": round(ordered[min(n - 1, math.ceil(0.99 * n) - 1)], 3),
            "max": round(ordered[-1], 3),
            "samples": n,
        }

    # -- reporting -------------------------------------------------------------------------------------------
    @property
    def unconfirmed_messages(self) -> int:
        return sum(len(e) for e in self._by_device.values())

    @property
    def awaiting_puback(self) -> int:
        return len(self._by_mid)

    def status(self, now: float) -> dict[str, object]:
        return {
            **self.counts.as_dict(),
            "delete_on": self.policy.delete_on,
            "unconfirmed_readings": self.unconfirmed_readings,
            "unconfirmed_messages": self.unconfirmed_messages,
            "last_confirmation_age_s": None
            if self.last_confirmation is None
            else round(now - self.last_confirmation, 1),
            "confirm_latency_s": self.latency(),
        }

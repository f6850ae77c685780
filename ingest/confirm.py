"""Confirmations back to the gateways: which sequence ranges are now stored or quarantined.

The pipeline settles a message (every reading in InfluxDB or durably in the quarantine), acknowledges it to
the broker, and hands its (district, gateway, device, first seq, last seq) here. Ranges are gathered per
gateway and merged, and a gateway's pending ranges are published once none has been added for `delay_s`
(0.25 s by default), or at the latest `max_delay_s` (1 s) after the first of them: a gateway publishes one
message per device per interval, in one burst, whose messages ingest settles over a few hundred
milliseconds; waiting for the burst to go quiet sends its confirmations together, in one document
(`devices.wire.encode_confirms`), at QoS 1 on `dp/v1/<district>/<gateway>/confirm`. (A fixed wait after the
first range split a burst that took longer than the wait into two documents: 1.2 per gateway and interval
in `benchmarks/confirm_latency.py`.)

Nothing here is durable, and need not be: a confirmation lost (ingest killed before it left, the broker
restarted, the gateway offline) only means the gateway publishes those readings again after its timeout;
ingest stores them again (the same InfluxDB points) and confirms them again.

Bounded: at most `max_ranges` ranges wait; past that the oldest gateway's pending document is sent at once,
so memory holds a bounded number of ranges whatever arrives (a flood of topics for made-up gateways too).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from devices.topics import confirm_topic, source_of
from devices.wire import MAX_SEQ, Ranges, encode_confirms

#: (district, gateway, device, first seq, last seq)
Key = tuple[str, str, str, int, int]


def confirm_key(topic: str, seq: tuple[int, int] | None) -> Key | None:
    """What to confirm for a settled message, or None if it cannot be confirmed (no gateway and device in its
    topic, no sequence range in its payload): such a message did not come from a gateway that could use it.

    The device is the topic's: a message quarantined because the registry does not know its device yet is
    confirmed like any other (`quarantine replay` stores it once the registry is fixed)."""
    if seq is None or not 0 <= seq[0] <= seq[1] <= MAX_SEQ:
        return None
    source = source_of(topic)
    if source is None:
        return None
    return source[0], source[1], source[2], seq[0], seq[1]


@dataclass(slots=True)
class _Pending:
    since: float  #: when the first range came
    last: float  #: when the latest range came
    ranges: Ranges = field(default_factory=dict)
    count: int = 0

    def due(self, quiet_s: float, max_s: float) -> float:
        return min(self.last + quiet_s, self.since + max_s)


@dataclass(slots=True)
class ConfirmStats:
    ranges: int = 0  #: settled messages whose range was queued
    unconfirmable: int = 0  #: settled messages without a gateway, device or range to confirm
    documents: int = 0  #: confirmation documents published
    dropped: int = 0  #: documents the MQTT client refused (not connected for long, its queue full)


class Confirmer:
    """Gathers settled ranges per gateway; `flush` publishes those that have waited long enough."""

    def __init__(
        self,
        publish: Callable[[str, bytes], bool],
        *,
        by: str,
        delay_s: float = 0.25,
        max_delay_s: float = 1.0,
        max_ranges: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        stats: ConfirmStats | None = None,
    ) -> None:
        self._publish = publish
        self.by = by
        self.delay_s = delay_s
        self.max_delay_s = max(delay_s, max_delay_s)
        self.max_ranges = max_ranges
        self._clock = clock
        self._wall_ms = wall_ms
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._count = 0
        self.stats = stats if stats is not None else ConfirmStats()

    def add(self, key: Key | None) -> None:
        if key is None:
            self.stats.unconfirmable += 1
            return
        district, gateway, device, first, last = key
        now = self._clock()
        pending = self._pending.get((district, gateway))
        if pending is None:
            pending = self._pending[(district, gateway)] = _Pending(now, now)
        pending.last = now
        pending.ranges.setdefault(device, []).append((first, last))
        pending.count += 1
        self._count += 1
        self.stats.ranges += 1
        if self._count > self.max_ranges:
            oldest = min(self._pending, key=lambda g: self._pending[g].since)
            self._send(oldest)

    @property
    def pending_ranges(self) -> int:
        return self._count

    def next_due(self) -> float | None:
        """When the oldest pending document is due (monotonic), or None."""
        if not self._pending:
            return None
        return min(p.due(self.delay_s, self.max_delay_s) for p in self._pending.values())

    def flush(self, *, everything: bool = False) -> int:
        """Publish the documents that are due (quiet for `delay_s`, or `max_delay_s` old; all of them with
        `everything`); returns how many."""
        now = self._clock()
        due = [g for g, p in self._pending.items() if everything or now >= p.due(self.delay_s, self.max_delay_s)]
        return sum(self._send(g) for g in due)

    def _send(self, gateway: tuple[str, str]) -> int:
        pending = self._pending.pop(gateway)
        self._count -= pending.count
        topic = confirm_topic(*gateway)
        sent = 0
        for doc in encode_confirms(pending.ranges, by=self.by, ts_ms=self._wall_ms()):
            if self._publish(topic, doc):
                sent += 1
            else:
                self.stats.dropped += 1
        self.stats.documents += sent
        return sent

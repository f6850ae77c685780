"""The gateway service: adapters -> spool -> publisher, the status topic, and the heartbeat.

Threads:
- one per adapter, putting readings into the spool's bounded buffer;
- paho's network thread, which only appends each PUBACK (message id, reason code) and each confirmation
  payload to a deque;
- the main loop (`Gateway.run`), which alone touches the SQLite connection. Every `commit_interval` it
  turns the confirmations into deletes and commits them with the new readings (one transaction); every
  `publish_interval` it publishes at most one message per device (the device's oldest unpublished run of
  consecutive sequence numbers) while there is room: in the publisher's in-flight window (messages and
  bytes awaiting PUBACK) and in the delivery ledger (readings awaiting ingest's confirmation, see
  `gateway.delivery`). Messages not confirmed in time are published again from the spool, before new ones.
  When a device has more waiting than one message holds (after an outage), the next cycle comes as soon as
  there is room (PUBACKs and confirmations wake the loop) instead of a full interval later, so a backlog
  drains as fast as ingest stores it, and the bounds keep memory flat while it does.
  Each cycle also sends the spool's unconfirmed eviction records as eviction notices (at most
  `NOTICES_PER_CYCLE`, each again after the confirmation timeout, doubling), so ingest can tell readings
  evicted here from readings lost in transit (`aggregation.completeness`).

Nothing is published before it is committed, and nothing is deleted before ingest confirms that it is stored
(or, with `delete_on = "puback"`, before the broker's successful PUBACK): a crash of the gateway, the broker
or ingest at any point leaves every unconfirmed reading in the spool, published again with the same sequence
numbers and contents (an exact redelivery, which InfluxDB stores once).

Status: `dp/v1/<district>/<gateway>/status`, retained, QoS 1. The Last Will (set at connect) says
`"state": "offline", "reason": "connection lost"`; every (re)connection and every `heartbeat_interval`
publishes `"state": "online"` with the spool depth and age, evictions, clock state and software version;
a clean stop publishes `"state": "offline", "reason": "shutdown"`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Protocol

from devices.kinds import DeviceKind, units_for
from devices.topics import confirm_topic, evicted_topic, readings_topic, status_topic
from devices.wire import (
    CLOCK_UNSYNCED,
    REASON_CONNECTION_LOST,
    REASON_SHUTDOWN,
    SCHEMA_VERSION,
    ConfirmError,
    Eviction,
    decode_confirm,
    encode_eviction,
    encode_status,
)
from gateway.adapters import Adapter, Values
from gateway.clock import Clock
from gateway.delivery import DeliveryPolicy, Ledger, Sent
from gateway.publisher import Will
from gateway.spool import Spool, SpooledReading

log = logging.getLogger(__name__)

#: Eviction notices sent per publish cycle at most (a long outage's records go out over several cycles).
NOTICES_PER_CYCLE = 32
_NoticeKey = tuple[str, int, int]  # device, first seq, last seq


def software_version() -> str:
    try:
        return metadata.version("districtpulse")
    except metadata.PackageNotFoundError:
        return "unknown"


def encode_message(device: str, units_json: str, rows: Sequence[SpooledReading]) -> bytes:
    """The v1 batch of consecutive spooled readings, from their stored JSON without re-parsing it.

    The rows share one clock flag (`consecutive_run`): when they were stamped unsynchronised the batch says
    `"clock": "unsynced"`, so ingest flags every one of its points. Byte for byte what
    `devices.payload.encode_batch` gives for the same readings and flag (a test checks it).
    """
    readings = ",".join(f'{{"ts":{r.ts},"values":{r.body}}}' for r in rows)
    clock = f',"clock":"{CLOCK_UNSYNCED}"' if rows[0].unsynced else ""
    return (
        f'{{"v":{SCHEMA_VERSION},"device":{json.dumps(device)},"seq":[{rows[0].seq},{rows[-1].seq}]{clock},'
        f'"units":{units_json},"readings":[{readings}]}}'
    ).encode()


def _notice(run: Eviction) -> bytes:
    return encode_eviction(run)


def consecutive_run(rows: Sequence[SpooledReading], max_bytes: int | None = None) -> Sequence[SpooledReading]:
    """The leading rows with consecutive sequence numbers and the same clock flag: one message's worth.

    A gap (evicted readings) ends a message, so every message's seq range is exact; so does a change of the
    clock flag, so that a message is all synchronised or all not (the batch-level `clock` flag is exact).
    With `max_bytes`, the run also ends before its readings' JSON would pass that many bytes (one reading at
    least), so that a message stays under the broker's and ingest's size limits whatever the adapter sends.
    """
    end = 1
    size = len(rows[0].body) + _READING_OVERHEAD
    while end < len(rows) and rows[end].seq == rows[end - 1].seq + 1 and rows[end].unsynced == rows[0].unsynced:
        if max_bytes is not None:
            size += len(rows[end].body) + _READING_OVERHEAD
            if size > max_bytes:
                break
        end += 1
    return rows[:end]


#: `{"ts":1763856000000,"values":` ... `},`: what a reading adds to a message beside its values' JSON.
_READING_OVERHEAD = 32


class PublisherLike(Protocol):
    """What the service needs of `gateway.publisher.Publisher` (tests pass an in-memory fake)."""

    @property
    def connections(self) -> int: ...

    @property
    def available(self) -> int: ...

    @property
    def connected(self) -> bool: ...

    @property
    def reasons(self) -> Mapping[int, int]: ...

    def start(self) -> None: ...

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, timeout: float | None = None) -> int: ...

    def wait_acked(self, timeout: float) -> bool: ...

    def close(self) -> None: ...


#: A PUBACK's callback: message id and MQTT 5 reason code.
OnAck = Callable[[int, int], None]
#: (topic filter, callback with the payload) pairs the publisher subscribes on every connection.
Subscriptions = Sequence[tuple[str, Callable[[bytes], None]]]
#: Builds the publisher with the service's PUBACK callback, Last Will and subscriptions (its confirmations).
PublisherFactory = Callable[[OnAck, Will, Subscriptions], PublisherLike]


@dataclass(frozen=True, slots=True)
class Timing:
    commit_interval_s: float = 0.2
    publish_interval_s: float = 10.0
    heartbeat_interval_s: float = 60.0
    clock_check_interval_s: float = 30.0
    age_check_interval_s: float = 60.0
    drain_timeout_s: float = 5.0
    max_batch_readings: int = 500
    #: Payload bytes awaiting PUBACK at most (paho keeps each payload until then): bounds memory while a
    #: backlog drains, whatever the batch size.
    max_inflight_bytes: int = 1024 * 1024
    #: One message's readings JSON, at most (under the broker's `max_packet_size` and ingest's message limit).
    max_message_bytes: int = 256 * 1024
    #: When a reading may leave the spool, and when an unconfirmed one is published again.
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    #: Confirmation payloads waiting for the main loop, at most; beyond, they are dropped and counted (the
    #: readings they confirm are then published again and confirmed again: harmless).
    max_pending_confirms: int = 1000


@dataclass(slots=True)
class Counts:
    messages: int = 0
    readings: int = 0
    acked_messages: int = 0
    acked_readings: int = 0
    cycles: int = 0
    eviction_notices: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "messages": self.messages,
            "readings": self.readings,
            "acked_messages": self.acked_messages,
            "acked_readings": self.acked_readings,
            "eviction_notices": self.eviction_notices,
        }


class _Sink:
    """One adapter's view of the spool: its cursor key, the gateway clock, and its commit ticket."""

    def __init__(self, spool: Spool, clock: Clock, cursor_key: str) -> None:
        self._spool = spool
        self._clock = clock
        self._key = cursor_key
        self._cursor = spool.cursor(cursor_key)  # read here, on the thread that owns the connection
        self._ticket = 0

    def now_ms(self) -> int:
        return self._clock.now_ms()

    def put(self, device_id: str, values: Values, ts_ms: int | None = None, *, unsynced: bool | None = None) -> None:
        self._spool.append(device_id, values, ts_ms, unsynced=unsynced)
        self._ticket = self._spool.appended  # at or past this put's (another adapter's may be in between)

    def put_many(
        self,
        device_id: str,
        readings: Iterable[tuple[int, Values]],
        *,
        unsynced: bool = False,
        cursor: str | None = None,
    ) -> None:
        batch = list(readings)
        if not batch:
            if cursor is not None:
                self._spool.set_cursor(self._key, cursor)
                self._ticket = self._spool.appended
            return
        self._spool.append_many(
            device_id, batch, unsynced=unsynced, cursor=None if cursor is None else (self._key, cursor)
        )
        self._ticket = self._spool.appended

    def cursor(self) -> str | None:
        return self._cursor

    def ticket(self) -> int:
        return self._ticket

    def wait_committed(self, ticket: int, timeout: float) -> bool:
        return self._spool.wait_committed(ticket, timeout)


@dataclass(slots=True)
class _Running:
    name: str
    adapter: Adapter
    thread: threading.Thread | None = None
    error: BaseException | None = None
    finished: bool = False

    @property
    def state(self) -> str:
        return "failed" if self.error else "finished" if self.finished else "running"


@dataclass
class Gateway:
    """The service; `run()` blocks until `stop` is set (or, with `exit_when_idle`, until all is delivered)."""

    gateway_id: str
    district: str
    spool: Spool
    adapters: dict[str, Adapter]
    make_publisher: PublisherFactory
    clock: Clock
    timing: Timing = field(default_factory=Timing)
    version: str = field(default_factory=software_version)
    counts: Counts = field(default_factory=Counts)

    def __post_init__(self) -> None:
        self.status_topic = status_topic(self.district, self.gateway_id)
        self.confirm_topic = confirm_topic(self.district, self.gateway_id)
        self._acks: deque[tuple[int, int]] = deque()
        self._confirms: deque[bytes] = deque()
        self.confirms_unknown_device = 0
        self.ledger = Ledger(self.timing.delivery)
        self._sent_upto: dict[str, int] = {}
        self._topics: dict[str, str] = {}
        self._units: dict[DeviceKind, str] = {}
        self._rotation = 0
        self._started = time.monotonic()
        self._running = [_Running(name, adapter) for name, adapter in self.adapters.items()]
        self._seen_connections = 0
        self._wake = threading.Event()  # set by the spool when its buffer is half full
        self.spool.on_pressure = self._wake.set
        self._backlog = False  # some device has more committed readings than its last message took
        self._notice_due: dict[_NoticeKey, tuple[float, int]] = {}  # -> (next send, attempts so far)
        self._notice_mids: dict[int, _NoticeKey] = {}  # notices awaiting their PUBACK
        will = self._status_payload("offline", reason=REASON_CONNECTION_LOST, full=False)
        subscriptions = [(self.confirm_topic, self._on_confirm)] if self.timing.delivery.delete_on == "confirm" else []
        self.publisher = self.make_publisher(self._on_ack, Will(self.status_topic, will), subscriptions)
        self._window = self.publisher.available

    # -- status ---------------------------------------------------------------------------------------------
    def _status_payload(self, state: str, *, reason: str | None = None, full: bool = True) -> bytes:
        heartbeat: dict[str, object] | None = None
        if full:
            stats = self.spool.stats()
            now = self.clock.now_ms()
            heartbeat = {
                "ts": now,
                "uptime_s": round(time.monotonic() - self._started, 1),
                "clock": self.clock.state().as_dict(),
                "spool": {
                    "readings": stats.readings,
                    "bytes": stats.bytes,
                    "buffered": stats.buffered,
                    "oldest_age_s": None if stats.oldest_ts is None else round((now - stats.oldest_ts) / 1000, 1),
                    "evicted": self.spool.evicted,
                    "evictions_unconfirmed": self.spool.eviction_records,
                    "counters": stats.counters,
                },
                "published": self.counts.as_dict(),
                "delivery": self.ledger.status(time.monotonic()),
                "adapters": {
                    r.name: ("failed" if r.error else "finished" if r.finished else "running") for r in self._running
                },
            }
        return encode_status(
            gateway=self.gateway_id,
            district=self.district,
            state=state,
            version=self.version,
            reason=reason,
            heartbeat=heartbeat,
        )

    def _publish_status(self, state: str, reason: str | None = None) -> bool:
        """Publish the retained status if the in-flight window has room (the cycle leaves it one slot)."""
        if self.publisher.available <= 0:
            log.info("status %s not published: in-flight window full", state)
            return False
        self.publisher.publish(self.status_topic, self._status_payload(state, reason=reason), retain=True)
        return True

    # -- adapters -----------------------------------------------------------------------------------------------
    def _start_adapters(self, stop: threading.Event) -> None:
        self.spool.add_devices((d.id, d.kind) for r in self._running for d in r.adapter.devices())
        for running in self._running:
            sink = _Sink(self.spool, self.clock, running.name)

            def target(r: _Running = running, s: _Sink = sink) -> None:
                try:
                    r.adapter.run(s, stop)
                except BaseException as exc:
                    r.error = exc
                    log.exception("adapter %s failed", r.name)
                finally:
                    r.finished = True

            running.thread = threading.Thread(target=target, name=f"adapter-{running.name}", daemon=True)
            running.thread.start()

    # -- the spool -> publisher path (main thread) -----------------------------------------------------------
    def _topic(self, device: str) -> str:
        topic = self._topics.get(device)
        if topic is None:
            topic = self._topics[device] = readings_topic(
                self.district, self.gateway_id, device, self.spool.kind_of(device)
            )
        return topic

    def _units_json(self, kind: DeviceKind) -> str:
        units = self._units.get(kind)
        if units is None:
            units = self._units[kind] = json.dumps(units_for(kind), separators=(",", ":"))
        return units

    def _on_ack(self, mid: int, code: int) -> None:
        """paho's network thread: note the PUBACK; wake the main loop if a backlog waits for room."""
        self._acks.append((mid, code))
        if self._backlog and self.publisher.available >= max(2, self._window // 2):
            self._wake.set()

    def _on_confirm(self, payload: bytes) -> None:
        """paho's network thread: queue a confirmation for the main loop (bounded: see `max_pending_confirms`)."""
        if len(self._confirms) >= self.timing.max_pending_confirms:
            self.ledger.counts.confirms_dropped += 1  # (an int add: safe enough from this thread)
            return
        self._confirms.append(payload)
        self._wake.set()

    def _can_send(self) -> bool:
        """Room in the publisher's window and byte budget (one slot stays free for the status message)."""
        return self.publisher.available > 1 and self.ledger.inflight_bytes < self.timing.max_inflight_bytes

    def _has_room(self) -> bool:
        """Room for new readings: also under the bound of readings published and not confirmed."""
        return self._can_send() and self.ledger.has_room()

    def _apply_acks(self) -> None:
        now = time.monotonic()
        delete = self.timing.delivery.delete_on == "puback"
        while self._acks:
            mid, code = self._acks.popleft()
            entry = self.ledger.puback(mid, code, now)
            if entry is None:
                notice = self._notice_mids.pop(mid, None)
                if notice is not None and delete and code == 0:
                    self.spool.ack(*notice)  # (`delete_on = "puback"`: the broker's word is enough)
                continue  # the status message, or a message the broker did not take (published again later)
            self.counts.acked_messages += 1
            self.counts.acked_readings += entry.readings
            if delete:
                self.spool.ack(entry.device, entry.first, entry.last)

    def _apply_confirms(self) -> None:
        now = time.monotonic()
        while self._confirms:
            payload = self._confirms.popleft()
            try:
                ranges = decode_confirm(payload)
            except ConfirmError as exc:
                self.ledger.counts.confirms_invalid += 1
                log.warning("invalid confirmation ignored", extra={"fields": {"error": str(exc)[:300]}})
                continue
            self.ledger.counts.confirmations += 1
            for device, pairs in ranges.items():
                if not self.spool.has_device(device):
                    self.confirms_unknown_device += 1
                    continue
                for first, last in pairs:
                    self.spool.ack(device, first, last)
                    self.ledger.confirmed(device, first, last, now)

    def commit(self) -> None:
        self._apply_acks()
        self._apply_confirms()
        self.spool.commit()

    def _publish_run(self, device: str, rows: Sequence[SpooledReading], attempts: int) -> Sequence[SpooledReading]:
        run = consecutive_run(rows, self.timing.max_message_bytes)
        payload = encode_message(device, self._units_json(self.spool.kind_of(device)), run)
        mid = self.publisher.publish(self._topic(device), payload)
        self.ledger.sent(mid, device, run[0].seq, run[-1].seq, len(payload), attempts=attempts, now=time.monotonic())
        self.counts.messages += 1
        self.counts.readings += len(run)
        return run

    def _republish(self, entry: Sent) -> None:
        """Publish again what of an unconfirmed message is still spooled (eviction may have taken some)."""
        rows = self.spool.pending(entry.device, entry.first - 1, entry.readings)
        rows = [r for r in rows if r.seq <= entry.last]
        while rows:
            run = self._publish_run(entry.device, rows, entry.attempts + 1)
            rows = rows[len(run) :]

    def _publish_notices(self, now: float) -> None:
        """Send the eviction records whose turn it is (never sent, or not confirmed within the timeout)."""
        runs = self.spool.evicted_runs(NOTICES_PER_CYCLE * 4) if self.spool.eviction_records else []
        if not runs:
            self._notice_due.clear()
            return
        policy = self.timing.delivery
        live: set[_NoticeKey] = set()
        sent = 0
        for run in runs:
            key = (run.device, run.first, run.last)
            live.add(key)
            due, attempts = self._notice_due.get(key, (0.0, 0))
            if now < due or sent >= NOTICES_PER_CYCLE or not self._has_room():
                continue
            mid = self.publisher.publish(evicted_topic(self.district, self.gateway_id, run.device), _notice(run))
            if len(self._notice_mids) > 4 * NOTICES_PER_CYCLE:
                self._notice_mids.clear()  # PUBACKs lost with a connection: those notices are sent again anyway
            self._notice_mids[mid] = key
            self._notice_due[key] = (now + self.ledger.backoff(policy.timeout_s, attempts + 1), attempts + 1)
            self.counts.eviction_notices += 1
            sent += 1
        if len(runs) < NOTICES_PER_CYCLE * 4:
            for key in set(self._notice_due) - live:
                del self._notice_due[key]  # confirmed (or merged into a longer run, sent as that)

    def publish_retries(self) -> None:
        """Unconfirmed messages whose wait is over, published again from the spool.

        A retry replaces its own unconfirmed readings (take_due releases them), so it needs room in the
        window, not under the unconfirmed bound: when the broker refused a whole bound's worth (0x10 while
        ingest is away), waiting for that room would wait forever."""
        while self._can_send():
            due = self.ledger.take_due(time.monotonic(), 1)
            if not due:
                break
            self._republish(due[0])

    def publish_cycle(self) -> bool:
        """Retries whose wait is over, eviction notices, then at most one message per device; True if some
        device still has unpublished readings (or retries are waiting for room)."""
        backlog = False
        self.publish_retries()
        self._publish_notices(time.monotonic())
        devices = self.spool.device_ids
        if not devices:
            return False
        self.counts.cycles += 1
        start = self._rotation % len(devices)
        self._rotation += 1
        for device in devices[start:] + devices[:start]:
            upto = self.spool.committed_upto(device)
            sent = self._sent_upto.get(device)
            if sent is None:
                first = self.spool.first_seq(device)
                sent = self._sent_upto[device] = (upto + 1 if first is None else first) - 1
            if upto <= sent:
                continue
            if not self._has_room():
                return True  # (one slot stays free for the status message)
            rows = self.spool.pending(device, sent, self.timing.max_batch_readings)
            if not rows:  # evicted before it was published
                self._sent_upto[device] = upto
                continue
            run = self._publish_run(device, rows, 1)
            self._sent_upto[device] = run[-1].seq
            backlog = backlog or run[-1].seq < upto
        return backlog

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def _idle(self) -> bool:
        return (
            all(r.finished for r in self._running)
            and self.spool.buffered == 0
            and self.spool.readings == 0
            and self.spool.eviction_records == 0
            and self.ledger.awaiting_puback == 0
        )

    def run(self, stop: threading.Event, *, exit_when_idle: bool = False) -> int:
        """Run until `stop` (or idle); returns 0, or 1 if an adapter failed."""
        t = self.timing
        adapter_stop = threading.Event()
        self._start_adapters(adapter_stop)
        self.publisher.start()
        now = time.monotonic()
        next_commit = next_publish = now
        next_heartbeat = now + t.heartbeat_interval_s
        next_clock = now + t.clock_check_interval_s
        next_age = now
        failed = False
        pressure = self.spool.max_buffered // 2
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_commit or self.spool.buffered >= pressure or self._confirms:
                self.commit()
                next_commit = now + t.commit_interval_s
            if now >= next_age:
                self.spool.enforce_age()
                next_age = now + t.age_check_interval_s
            if now >= next_clock:
                self.clock.refresh()
                next_clock = now + t.clock_check_interval_s
            if self.publisher.connected:
                connections = self.publisher.connections
                if connections != self._seen_connections and self._publish_status("online"):
                    self._seen_connections = connections  # (re)connected: said so at once
                    next_heartbeat = now + t.heartbeat_interval_s
                self._apply_acks()
                retry = self.ledger.next_due()
                if now >= next_publish or (self._backlog and self._has_room()):
                    self._backlog = self.publish_cycle()
                    next_publish = now + t.publish_interval_s
                elif retry is not None and now >= retry:
                    self.publish_retries()  # (new readings wait for their interval: one burst per interval)
                if now >= next_heartbeat:
                    self._publish_status("online")
                    next_heartbeat = now + t.heartbeat_interval_s
            if any(r.error for r in self._running):
                failed = True
                break
            if exit_when_idle and self._idle():
                break
            if self.publisher.connected and self._backlog and self._has_room():
                continue  # catching up: the next message per device right away
            wake = min(next_commit, next_publish, next_heartbeat) if self.publisher.connected else next_commit
            retry = self.ledger.next_due()
            if retry is not None and self.publisher.connected:
                wake = min(wake, retry)
            # Woken early by a half-full spool buffer, by a confirmation, or by PUBACKs freeing the window while
            # catching up; a stop is seen within one commit interval.
            self._wake.wait(max(0.001, min(wake - time.monotonic(), t.commit_interval_s)))
            self._wake.clear()
        self._shutdown(adapter_stop)
        return 1 if failed else 0

    def _shutdown(self, adapter_stop: threading.Event) -> None:
        adapter_stop.set()
        for r in self._running:
            if r.thread is not None:
                r.thread.join(timeout=self.timing.drain_timeout_s)
                if r.thread.is_alive():
                    log.warning("adapter %s did not stop within %.1f s", r.name, self.timing.drain_timeout_s)
        self.commit()
        if self.publisher.connected:
            deadline = time.monotonic() + self.timing.drain_timeout_s
            self.publisher.wait_acked(self.timing.drain_timeout_s)  # what is in flight: acked...
            while self.ledger.unconfirmed_readings and time.monotonic() < deadline and self.publisher.connected:
                self._wake.wait(0.05)  # ... and confirmed; the rest stays spooled for the next start
                self._wake.clear()
                self.commit()
            self.commit()
            self._publish_status("offline", reason=REASON_SHUTDOWN)
            self.publisher.wait_acked(self.timing.drain_timeout_s)
        self.publisher.close()
        self.spool.close()
        log.info(
            "stopped",
            extra={
                "fields": {
                    **self.counts.as_dict(),
                    "confirmed_readings": self.ledger.counts.confirmed_readings,
                    "republished_readings": self.ledger.counts.republished_readings,
                    "spooled": self.spool.readings,
                    "evicted": self.spool.evicted,
                }
            },
        )

"""The ingest pipeline: MQTT -> validate -> batch -> InfluxDB, acknowledging each message after it is stored.

    MqttSource.receive ──► validate (devices.validate_message) ──► Batch (readings of whole messages)
          ▲                     │ rejected readings                      │ bounded queue (backpressure)
          │                     ▼                                        ▼
          └──── ack ◄──── Quarantine (SQLite, committed first)     writer tasks ──► InfluxDB /write
                  ▲                                                      │
                  └────────────────────── ack after the write ───────────┘

A message is acknowledged only when every reading in it is in InfluxDB or in quarantine, and only then is its
sequence range confirmed to the gateway that sent it (`ingest.confirm`): the gateway keeps a reading in its
spool until that confirmation, so the confirmation is the end of the proof chain, and it must never come
early. A message's rejected readings are committed to the quarantine before any part of it can reach a
writer, so neither its acknowledgement nor its confirmation can precede them.

Memory is bounded twice. The MQTT Receive Maximum bounds the messages the broker hands us before we
acknowledge them, and `max_inflight_readings` bounds the validated readings held between validation and
acknowledgement (`IngestStats.inflight_readings`, with its high-water mark): when the cap is reached the
receive loop stops taking messages, the source's bounded buffer fills, and the broker keeps the backlog
(see `ingest.mqtt` for why our own bound backs up Receive Maximum). So while InfluxDB is down the consumer
holds at most the cap, plus the message being admitted and `max_buffered_messages` raw payloads, however
long the outage.

Shutdown is ordered: stop taking input, flush the partial batch, let the writers drain, send the pending
confirmations, then disconnect. The drain has a deadline (`drain_timeout_s`): if InfluxDB is down at shutdown
the writers are cancelled when it passes, and whatever was not stored stays unacknowledged in the broker's
session for the next start (and unconfirmed in its gateway's spool). A cancelled task awaits nothing more, so
a writer that crashes, or a drain deadline that passes with the queue full, ends the run instead of hanging it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

from devices import Registry, Rejection, validate_message
from devices.backoff import FULL, Backoff
from devices.topics import EVICTED, source_of
from devices.validation import Reason, kept_payload
from devices.wire import Eviction, EvictionError, decode_eviction
from ingest.confirm import Confirmer, ConfirmStats, confirm_key
from ingest.fastpath import FastPath
from ingest.mqtt import Message, MqttConfig, MqttSource, Source
from ingest.sinkstate import SinkState
from storage.errors import SinkRefused, SinkRejected, SinkUnavailable
from storage.influx import InfluxConfig, Writer
from storage.lineprotocol import encode_readings, series_key
from storage.quarantine import Quarantine, QuarantineEntry, now_ms
from storage.unstored import eviction_line, quarantine_lines
from storage.writers import writer_for

log = logging.getLogger(__name__)

#: Quarantine reason of a reading that passed validation but that InfluxDB refused (e.g. field type conflict).
WRITE_REJECTED = "write_rejected"


@dataclass(frozen=True, slots=True)
class IngestSettings:
    registry: Path
    quarantine: Path
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    influx: InfluxConfig = field(default_factory=InfluxConfig)
    batch_readings: int = 5000
    batch_interval_s: float = 0.2
    #: concurrent write requests: InfluxDB works on several at once, so while ingest builds the next batch, or
    #: its event loop is busy validating, the database always has work (benchmarks/ingest_throughput.py on 2
    #: cores: 8 writers with 100k in flight ~357k readings/s, 4 writers with 50k ~325k)
    writers: int = 8
    retry_base_s: float = 0.5
    retry_max_s: float = 30.0
    #: Validated readings held until acknowledged, at most (see the module docstring): about 25 MB at 100k.
    max_inflight_readings: int = 100_000
    #: After SIGTERM, how long the writers may keep retrying before the rest is left to the broker.
    drain_timeout_s: float = 10.0
    quarantine_max_rows: int = 1_000_000
    #: A gateway's confirmation leaves once no range of it settled for this long (its burst is over), at the
    #: latest `confirm_max_delay_s` after the first: one document per burst.
    confirm_delay_s: float = 0.25
    confirm_max_delay_s: float = 1.0
    quarantine_max_bytes: int = 1 << 30
    #: Publish storage confirmations. Off only where no gateway waits for them (a fleet older than
    #: confirmations, a benchmark's baseline): a current gateway would keep and resend every reading.
    confirm: bool = True


@dataclass(slots=True)
class IngestStats:
    """Counters of one pipeline (the Prometheus collector reads them; tests assert on them)."""

    messages: int = 0
    readings_received: int = 0
    readings_valid: int = 0
    readings_stored: int = 0
    readings_quarantined: Counter[str] = field(default_factory=Counter)
    batches_written: int = 0
    write_requests: int = 0
    write_retries: int = 0
    messages_acked: int = 0
    #: Unix time of the last acknowledgement sent (0.0: none yet): "is anything getting through?"
    last_ack_s: float = 0.0
    inflight_readings: int = 0
    inflight_readings_max: int = 0
    abandoned_readings: int = 0
    confirmations: ConfirmStats = field(default_factory=ConfirmStats)
    #: gateways' eviction notices stored (`storage.unstored`), and the readings they say were evicted
    eviction_notices: int = 0
    readings_evicted_at_edge: int = 0
    #: `unstored` points written (quarantine runs and eviction notices), and those InfluxDB refused
    accounting_points: int = 0
    accounting_refused: int = 0
    #: InfluxDB refusing every write (401/403/404): shared by the writers, exported as dp_ingest_sink_down
    sink: SinkState = field(default_factory=SinkState)

    def as_dict(self) -> dict[str, object]:
        return {
            "messages": self.messages,
            "readings_received": self.readings_received,
            "readings_valid": self.readings_valid,
            "readings_stored": self.readings_stored,
            "readings_quarantined": sum(self.readings_quarantined.values()),
            "quarantined_by_reason": dict(self.readings_quarantined),
            "batches_written": self.batches_written,
            "write_requests": self.write_requests,
            "write_retries": self.write_retries,
            "messages_acked": self.messages_acked,
            "inflight_readings": self.inflight_readings,
            "inflight_readings_max": self.inflight_readings_max,
            "abandoned_readings": self.abandoned_readings,
            "confirmed_messages": self.confirmations.ranges,
            "unconfirmable_messages": self.confirmations.unconfirmable,
            "confirmations_sent": self.confirmations.documents,
            "confirmations_dropped": self.confirmations.dropped,
            "eviction_notices": self.eviction_notices,
            "readings_evicted_at_edge": self.readings_evicted_at_edge,
            "accounting_points": self.accounting_points,
            "accounting_refused": self.accounting_refused,
            "sink_down": self.sink.down_reason,
        }


class Observer:
    """Hooks for what counters cannot express (histograms); the default does nothing. See ingest.metrics."""

    def batch_written(self, readings: int, seconds: float) -> None:
        """A write request succeeded: its size in readings and how long it took."""

    def acked(self, oldest_received: float, now: float) -> None:
        """A batch was acknowledged; `oldest_received` is the monotonic receive time of its oldest message."""


_NO_REJECTIONS: frozenset[int] = frozenset()
_EVICTED = f"/{EVICTED}"
#: How long the receive loop may validate without letting the event loop serve the writers.
_YIELD_EVERY_S = 0.002


@dataclass(slots=True, eq=False)
class _Part:
    """One message's good readings as line protocol, travelling together to the writer, followed by its
    `unstored` points (`storage.unstored`: what of it was quarantined, or the eviction it reports)."""

    message: Message
    device: str
    lines: list[str]
    #: indexes (in the payload) of the readings validation rejected; the readings' lines are the others, in order
    rejected: frozenset[int]
    #: how many of `lines` are readings (the first ones); the rest are `unstored` points
    good: int

    def reading_index(self, line: int) -> int:
        """The payload index of the reading that line `line` (< `good`) encodes."""
        if not self.rejected:
            return line
        kept = (i for i in range(self.good + len(self.rejected)) if i not in self.rejected)
        for n, index in enumerate(kept):
            if n == line:
                return index
        raise IndexError(line)


@dataclass(slots=True)
class _Batch:
    parts: list[_Part] = field(default_factory=list)
    #: lines, readings and `unstored` points together (what the in-flight cap counts)
    readings: int = 0
    #: of which `unstored` points
    points: int = 0


class Pipeline:
    def __init__(
        self,
        settings: IngestSettings,
        registry: Registry,
        *,
        stats: IngestStats | None = None,
        writer: Writer | None = None,
        observer: Observer | None = None,
        source: Source | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.stats = stats if stats is not None else IngestStats()
        self.observer = observer if observer is not None else Observer()
        self.source: Source = source if source is not None else MqttSource(settings.mqtt)
        self.quarantine = Quarantine(
            settings.quarantine, max_rows=settings.quarantine_max_rows, max_bytes=settings.quarantine_max_bytes
        )
        self.writer: Writer = writer if writer is not None else writer_for(settings.influx)
        self.backoff = Backoff(settings.retry_base_s, settings.retry_max_s, FULL)
        #: how the writers wait between retries (a test records the delays instead of waiting)
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._queue: asyncio.Queue[_Batch | None] = asyncio.Queue(maxsize=max(2, settings.writers * 2))
        self._keys = {device.id: series_key(device) for device in registry}
        self._fast = FastPath(registry)
        self._room = asyncio.Event()
        self._batch = _Batch()
        self._deadline = 0.0
        self.confirmer = Confirmer(
            self.source.publish,
            by=settings.mqtt.client_id,
            delay_s=settings.confirm_delay_s,
            max_delay_s=settings.confirm_max_delay_s,
            stats=self.stats.confirmations,
        )
        self._confirm_wake = asyncio.Event()

    # -- receive side -----------------------------------------------------------------------------------
    def _validate(self, msg: Message, now: int, rejected: list[QuarantineEntry]) -> _Part | None:
        """Validate one message; collect its rejections in `rejected`; return its good readings, if any."""
        stats = self.stats
        if msg.topic.endswith(_EVICTED):
            return self._eviction(msg, now, rejected)
        fast = self._fast.lines(msg.topic, msg.payload, now)
        if fast is not None:  # the common case: every reading valid (see ingest.fastpath)
            n = len(fast.lines)
            stats.messages += 1
            stats.readings_received += n
            stats.readings_valid += n
            msg.confirm = (
                fast.device.district,
                fast.device.gateway,
                fast.device.id,
                fast.first_seq,
                fast.first_seq + n - 1,
            )
            return _Part(msg, fast.device.id, fast.lines, _NO_REJECTIONS, len(fast.lines))
        result = validate_message(msg.topic, msg.payload, self.registry, now_ms=now)
        msg.confirm = confirm_key(msg.topic, result.seq)
        stats.messages += 1
        good = len(result.good)
        stats.readings_received += good + (result.rejected_readings if result.rejected else 0)
        stats.readings_valid += good
        device = result.device.id if result.device is not None else None
        points: list[str] = []
        if result.rejected:
            payload = kept_payload(msg.payload)  # all of it, or of a too_large one only its start
            rejected.extend(QuarantineEntry.of(msg.topic, device, r, payload, now) for r in result.rejected)
            self._log_rejections(msg, result.rejected)
            if result.device is not None and result.seq is not None:
                points = quarantine_lines(result.device, result.seq, result.rejected, msg.payload, now)
        if (good or points) and device is not None:
            lines = encode_readings(self._keys[device], result.good, result.seqs) if good else []
            skipped = frozenset(r.index for r in result.rejected if r.index is not None)
            return _Part(msg, device, lines + points, skipped, len(lines))
        return None

    def _eviction(self, msg: Message, now: int, rejected: list[QuarantineEntry]) -> _Part | None:
        """A gateway's eviction notice (`devices.wire.Eviction`): its `unstored` point, confirmed like a message
        once written. A notice that is wrong is quarantined; it is confirmed only if it names the topic's own
        device (its seq range then means what the gateway meant), so a wrong one is sent again, not dropped."""
        self.stats.messages += 1
        source = source_of(msg.topic)
        device = self.registry.devices.get(source[2]) if source is not None else None
        notice: Eviction | None = None
        try:
            notice = decode_eviction(msg.payload)
        except EvictionError as exc:
            problem: tuple[Reason, str] | None = (Reason.INVALID_SCHEMA, f"eviction notice: {exc}")
        else:
            problem = None
            if source is None:
                problem = (Reason.BAD_TOPIC, f"eviction notice on {msg.topic[:200]!r}")
            elif notice.device != source[2]:
                problem = (Reason.DEVICE_MISMATCH, f"notice device {notice.device!r} != topic device {source[2]!r}")
            elif device is None:
                problem = (Reason.UNKNOWN_DEVICE, f"eviction notice: device {source[2]!r} is not in the registry")
            elif device.gateway != source[1] or device.district != source[0]:
                problem = (Reason.WRONG_GATEWAY, f"eviction notice: {device.id!r} is not behind {source[1]!r}")
            if source is not None and notice.device == source[2]:
                msg.confirm = confirm_key(msg.topic, (notice.first, notice.last))
        if problem is not None or device is None or notice is None:
            reason, detail = problem or (Reason.BAD_TOPIC, "eviction notice")
            rejection = Rejection(reason, detail, None, notice.readings if notice else 1)
            rejected.append(QuarantineEntry.of(msg.topic, device.id if device else None, rejection, msg.payload, now))
            self._log_rejections(msg, [rejection])
            return None
        self.stats.eviction_notices += 1
        self.stats.readings_evicted_at_edge += notice.readings
        return _Part(msg, device.id, [eviction_line(device, notice)], _NO_REJECTIONS, 0)

    def _log_rejections(self, msg: Message, rejections: list[Rejection]) -> None:
        first = rejections[0]
        log.warning(
            "quarantined",
            extra={
                "fields": {
                    "topic": msg.topic[:200],
                    "reason": first.reason.value,
                    "detail": first.detail[:300],
                    "rejections": len(rejections),
                    "readings": sum(r.readings for r in rejections),
                }
            },
        )

    def _commit_quarantine(self, entries: list[QuarantineEntry]) -> None:
        """Durably store rejections (one transaction) before anything of their messages is acknowledged."""
        if entries:
            self.quarantine.add(entries)
            for e in entries:
                self.stats.readings_quarantined[e.reason] += e.readings

    def _over_cap(self, readings: int) -> bool:
        """Would `readings` more exceed the in-flight cap? (A message larger than the cap goes in alone.)"""
        inflight = self.stats.inflight_readings
        return inflight > 0 and inflight + readings > self.settings.max_inflight_readings

    def _admit(self, readings: int) -> None:
        stats = self.stats
        stats.inflight_readings += readings
        if stats.inflight_readings > stats.inflight_readings_max:
            stats.inflight_readings_max = stats.inflight_readings

    async def _flush(self) -> None:
        """Hand the current batch to the writers (waits while the queue is full: backpressure)."""
        if self._batch.parts:
            full, self._batch = self._batch, _Batch()
            await self._queue.put(full)

    async def _take(self, messages: list[Message], stop: asyncio.Event) -> bool:
        """Validate messages one by one into the current batch, admitting each under the in-flight cap.

        Rejections are committed to the quarantine in one transaction per received chunk, and the messages
        that had nothing else are acknowledged right after; both happen before any wait for room, so a
        message is never held longer than needed. Returns False if stopped while waiting for room."""
        now = now_ms()
        rejected: list[QuarantineEntry] = []
        settled: list[Message] = []

        def settle() -> None:
            self._commit_quarantine(rejected)
            rejected.clear()
            if settled:
                self._ack(settled)
                settled.clear()

        yielded = time.monotonic()
        try:
            for msg in messages:
                if time.monotonic() - yielded > _YIELD_EVERY_S:
                    # A chunk can hold a thousand messages: let the writers' HTTP exchanges progress while
                    # it is validated, or InfluxDB idles until the whole chunk is done.
                    await asyncio.sleep(0)
                    yielded = time.monotonic()
                part = self._validate(msg, now, rejected)
                if part is None:
                    settled.append(msg)
                    continue
                n = len(part.lines)
                if self._over_cap(n):
                    settle()
                    await self._flush()  # the partial batch must reach the writers, or no room is ever freed
                    while self._over_cap(n):
                        if stop.is_set():
                            return False
                        self._room.clear()
                        await _wait_either(self._room, stop)
                self._admit(n)
                batch = self._batch
                if not batch.parts:
                    self._deadline = time.monotonic() + self.settings.batch_interval_s
                batch.parts.append(part)
                batch.readings += n
                batch.points += n - part.good
                if batch.readings >= self.settings.batch_readings:
                    settle()  # this batch may hold a message's good readings: its rejections are committed first
                    await self._flush()
            return True
        finally:
            settle()

    def _ack(self, messages: Sequence[Message]) -> None:
        """Acknowledge messages whose readings are all stored or quarantined, and queue their confirmations.

        A message delivered on an earlier connection is not acknowledged (the broker redelivers it), but it is
        confirmed: its readings are stored, which is all the gateway needs to know."""
        self.stats.messages_acked += self.source.ack(messages)
        self.stats.last_ack_s = time.time()
        if not self.settings.confirm:
            return
        confirmer = self.confirmer
        for msg in messages:
            confirmer.add(msg.confirm)
        self._confirm_wake.set()

    def _release(self, readings: int) -> None:
        self.stats.inflight_readings -= readings
        self._room.set()

    async def _receive_loop(self, stop: asyncio.Event) -> None:
        async def wake_on_stop() -> None:
            await stop.wait()
            self.source.wake()

        waker = asyncio.ensure_future(wake_on_stop())
        try:
            while not stop.is_set():
                timeout = max(0.0, self._deadline - time.monotonic()) if self._batch.parts else None
                messages = await self.source.receive(timeout)
                if messages and not await self._take(messages, stop):
                    break  # stopping: what was not taken stays unacknowledged and is redelivered
                if self._batch.parts and time.monotonic() >= self._deadline:
                    await self._flush()
        finally:
            waker.cancel()
        # Only a normal stop gets here. A cancelled task (the drain deadline passed, or a writer crashed and the
        # task group cancels the rest) must not await the queue: nobody drains it any more, and it would hang.
        await self._flush()
        for _ in range(self.settings.writers):
            await self._queue.put(None)

    async def _confirm_loop(self) -> None:
        """Publish each gateway's confirmation once it is due (`Confirmer`: its burst went quiet)."""
        confirmer = self.confirmer
        while True:
            due = confirmer.next_due()
            if due is None:
                self._confirm_wake.clear()
                await self._confirm_wake.wait()
                continue
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            confirmer.flush()

    # -- write side -------------------------------------------------------------------------------------
    async def _write_with_retry(self, body: bytes, readings: int) -> None:
        """Write until InfluxDB accepts (SinkRejected propagates: retrying the same points cannot help)."""
        attempt = 0
        while True:
            started = time.monotonic()
            self.stats.write_requests += 1
            try:
                await self.writer.write(body)
            except SinkUnavailable as exc:
                attempt += 1
                self.stats.write_retries += 1
                delay = self.backoff.delay(attempt, retry_after=exc.retry_after)
                if isinstance(exc, SinkRefused):
                    self.stats.sink.refused(exc)  # logged once per outage, not per attempt
                else:
                    log.warning("write failed (attempt %d), retrying in %.2f s: %s", attempt, delay, exc)
                await self.sleep(delay)
                continue
            self.stats.sink.accepted()
            self.observer.batch_written(readings, time.monotonic() - started)
            return

    async def _write_lines(self, lines: Sequence[tuple[_Part, int]]) -> None:
        """Write these (part, line) pairs; on rejection, bisect down to single lines and quarantine those.

        InfluxDB 1.x stores the good points of a partially refused request, so writing a half again is
        harmless: the same points are overwritten with the same values."""
        body = "\n".join(part.lines[k] for part, k in lines).encode()
        try:
            await self._write_with_retry(body, len(lines))
            points = sum(1 for part, k in lines if k >= part.good)
            self.stats.readings_stored += len(lines) - points
            self.stats.accounting_points += points
        except SinkRejected as exc:
            await self._bisect(lines, exc)

    async def _bisect(self, lines: Sequence[tuple[_Part, int]], exc: SinkRejected) -> None:
        """`lines` were refused together: quarantine a single line, or write each half on its own."""
        if len(lines) == 1:
            part, k = lines[0]
            self._quarantine_line(part, k, exc)
            return
        mid = len(lines) // 2
        await self._write_lines(lines[:mid])
        await self._write_lines(lines[mid:])

    def _quarantine_line(self, part: _Part, line: int, exc: SinkRejected) -> None:
        if line >= part.good:  # an `unstored` point: what it accounts for is in the quarantine, or evicted
            self.stats.accounting_refused += 1
            fields = {"topic": part.message.topic[:200], "status": exc.status, "body": exc.body[:300]}
            log.warning("unstored point refused: those readings will count as lost", extra={"fields": fields})
            return
        index = part.reading_index(line)
        detail = f"{WRITE_REJECTED}: InfluxDB refused readings[{index}] ({exc.status}): {exc.body[:400]}"
        entry = QuarantineEntry(
            topic=part.message.topic,
            device=part.device,
            reason=WRITE_REJECTED,
            detail=detail,
            index=index,
            readings=1,
            errors=({"status": exc.status, "body": exc.body[:1000], "line": part.lines[line][:1000]},),
            payload=part.message.payload,
            received_ms=now_ms(),
        )
        self._commit_quarantine([entry])
        fields = {"topic": part.message.topic[:200], "detail": detail}
        log.warning("write refused, quarantined", extra={"fields": fields})

    async def _write_batch(self, batch: _Batch) -> None:
        body = "\n".join(chain.from_iterable(part.lines for part in batch.parts)).encode()
        try:
            await self._write_with_retry(body, batch.readings)
            self.stats.readings_stored += batch.readings - batch.points
            self.stats.accounting_points += batch.points
        except SinkRejected as exc:
            await self._bisect([(part, k) for part in batch.parts for k in range(len(part.lines))], exc)
        self.stats.batches_written += 1
        messages = [part.message for part in batch.parts]
        self._ack(messages)
        self.observer.acked(min(m.received for m in messages), time.monotonic())
        self._release(batch.readings)

    async def _writer(self) -> None:
        while (batch := await self._queue.get()) is not None:
            await self._write_batch(batch)

    async def _drain_guard(self, stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
        await stop.wait()
        await asyncio.sleep(self.settings.drain_timeout_s)
        self.stats.abandoned_readings = self.stats.inflight_readings
        fields = {"drain_timeout_s": self.settings.drain_timeout_s, "readings": self.stats.abandoned_readings}
        log.warning("drain deadline passed: unstored readings stay unacknowledged", extra={"fields": fields})
        for task in tasks:
            task.cancel()

    async def _prepare_sink(self, stop: asyncio.Event) -> bool:
        """Create the database, retrying while InfluxDB is unreachable; False if stopped meanwhile."""
        attempt = 0
        while not stop.is_set():
            try:
                await self.writer.prepare()
                self.stats.sink.accepted()
                return True
            except SinkUnavailable as exc:
                attempt += 1
                delay = self.backoff.delay(attempt, retry_after=exc.retry_after)
                if isinstance(exc, SinkRefused):
                    self.stats.sink.refused(exc)
                else:
                    log.warning("InfluxDB not ready (attempt %d), retrying in %.2f s: %s", attempt, delay, exc)
                await _wait_either(asyncio.sleep(delay), stop)
        return False

    async def run(self, stop: asyncio.Event) -> IngestStats:
        try:
            if not await self._prepare_sink(stop):
                return self.stats
            await self.source.start()
            try:
                async with asyncio.TaskGroup() as tg:
                    workers = [tg.create_task(self._writer(), name=f"writer-{i}") for i in range(self.settings.writers)]
                    workers.append(tg.create_task(self._receive_loop(stop), name="receive"))
                    guard = tg.create_task(self._drain_guard(stop, workers), name="drain-guard")
                    confirms = tg.create_task(self._confirm_loop(), name="confirm")
                    await asyncio.wait(workers)
                    guard.cancel()
                    confirms.cancel()
                self.confirmer.flush(everything=True)  # before the disconnect: what is settled is confirmed now
            finally:
                await self.source.stop()
        finally:
            await self.writer.aclose()
            self.quarantine.close()
        return self.stats


async def _wait_either(first: asyncio.Event | Awaitable[object], stop: asyncio.Event) -> None:
    """Wait for an event (or awaitable) or for stop, whichever comes first."""
    a = asyncio.ensure_future(first.wait() if isinstance(first, asyncio.Event) else first)
    b = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({a, b}, return_when="FIRST_COMPLETED")
    finally:
        a.cancel()
        b.cancel()


async def serve(settings: IngestSettings, stop: asyncio.Event, *, stats: IngestStats | None = None) -> IngestStats:
    """Run ingest until `stop` is set, then drain and return the counters."""
    registry = Registry.load(settings.registry)
    return await Pipeline(settings, registry, stats=stats).run(stop)

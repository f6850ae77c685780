"""The ingest pipeline: MQTT -> validate -> batch -> InfluxDB, acknowledging each message after it is stored.

    MqttSource.receive ──► validate (devices.validate_message) ──► Batch (readings of whole messages)
          ▲                     │ rejected readings                      │ bounded queue (backpressure)
          │                     ▼                                        ▼
          └──── ack ◄──── Quarantine (SQLite, committed first)     writer tasks ──► InfluxDB /write
                  ▲                                                      │
                  └────────────────────── ack after the write ───────────┘

A message is acknowledged only when every reading in it is in InfluxDB or in quarantine. The number of
unacknowledged messages is bounded by the MQTT Receive Maximum, so memory stays bounded when InfluxDB is
down: the backlog waits in the broker. Shutdown is ordered: stop taking input, flush the partial batch,
let the writers drain, then disconnect.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from devices import Reason, Registry, Rejection, validate_message
from ingest.errors import SinkRejected, SinkUnavailable
from ingest.influx import InfluxConfig, InfluxV1
from ingest.lineprotocol import encode_readings, series_key
from ingest.mqtt import Message, MqttConfig, MqttSource
from ingest.quarantine import Quarantine, QuarantineEntry, now_ms

log = logging.getLogger(__name__)

WRITE_REJECTED = "write_rejected"


@dataclass(frozen=True, slots=True)
class IngestSettings:
    registry: Path
    quarantine: Path
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    influx: InfluxConfig = field(default_factory=InfluxConfig)
    batch_readings: int = 5000
    batch_interval_s: float = 0.2
    writers: int = 2
    retry_base_s: float = 0.5
    retry_max_s: float = 30.0


@dataclass(slots=True)
class IngestStats:
    messages: int = 0
    readings_received: int = 0
    readings_stored: int = 0
    readings_quarantined: Counter[str] = field(default_factory=Counter)
    batches_written: int = 0
    write_retries: int = 0
    messages_acked: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "messages": self.messages,
            "readings_received": self.readings_received,
            "readings_stored": self.readings_stored,
            "readings_quarantined": sum(self.readings_quarantined.values()),
            "quarantined_by_reason": dict(self.readings_quarantined),
            "batches_written": self.batches_written,
            "write_retries": self.write_retries,
            "messages_acked": self.messages_acked,
        }


@dataclass(slots=True)
class _Part:
    """One message's good readings as line protocol, travelling together to the writer."""

    message: Message
    lines: list[str]
    topic: str


@dataclass(slots=True)
class _Batch:
    parts: list[_Part] = field(default_factory=list)
    readings: int = 0


class Pipeline:
    def __init__(self, settings: IngestSettings, registry: Registry, *, stats: IngestStats | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.stats = stats if stats is not None else IngestStats()
        self.source = MqttSource(settings.mqtt)
        self.quarantine = Quarantine(settings.quarantine)
        self.influx = InfluxV1(settings.influx)
        self._queue: asyncio.Queue[_Batch | None] = asyncio.Queue(maxsize=max(2, settings.writers * 2))
        self._keys = {device.id: series_key(device) for device in registry}

    # -- receive side -----------------------------------------------------------------------------------
    def _quarantine(self, msg: Message, device: str | None, rejections: list[Rejection]) -> None:
        received = now_ms()
        self.quarantine.add(QuarantineEntry(msg.topic, device, r, msg.payload, received) for r in rejections)
        for r in rejections:
            self.stats.readings_quarantined[r.reason.value] += r.readings
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

    def _take(self, msg: Message, batch: _Batch) -> None:
        """Validate one message; quarantine its bad readings now, queue its good ones in `batch`."""
        result = validate_message(msg.topic, msg.payload, self.registry, now_ms=now_ms())
        self.stats.messages += 1
        self.stats.readings_received += len(result.good) + result.rejected_readings
        device = result.device.id if result.device is not None else None
        if result.rejected:
            self._quarantine(msg, device, result.rejected)
        if result.good and result.device is not None:
            lines = encode_readings(self._keys[result.device.id], result.good, result.seqs)
            batch.parts.append(_Part(msg, lines, msg.topic))
            batch.readings += len(lines)
        else:
            self.stats.messages_acked += self.source.ack([msg])

    async def _receive_loop(self, stop: asyncio.Event) -> None:
        batch = _Batch()
        deadline = time.monotonic() + self.settings.batch_interval_s
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                timeout = max(0.0, deadline - time.monotonic()) if batch.parts else None
                receiving = asyncio.ensure_future(self.source.receive())
                done, _ = await asyncio.wait({receiving, stopping}, timeout=timeout, return_when="FIRST_COMPLETED")
                if receiving in done:
                    for msg in receiving.result():
                        self._take(msg, batch)
                        if batch.readings >= self.settings.batch_readings:
                            await self._queue.put(batch)
                            batch = _Batch()
                else:
                    receiving.cancel()
                if batch.parts and (time.monotonic() >= deadline or stop.is_set()):
                    await self._queue.put(batch)
                    batch = _Batch()
                if not batch.parts:
                    deadline = time.monotonic() + self.settings.batch_interval_s
        finally:
            stopping.cancel()
            if batch.parts:
                await self._queue.put(batch)
            for _ in range(self.settings.writers):
                await self._queue.put(None)

    # -- write side -------------------------------------------------------------------------------------
    async def _write_with_retry(self, body: bytes) -> None:
        attempt = 0
        while True:
            try:
                await self.influx.write(body)
                return
            except SinkUnavailable as exc:
                attempt += 1
                self.stats.write_retries += 1
                backoff = min(self.settings.retry_max_s, self.settings.retry_base_s * 2 ** min(attempt, 16))
                delay = max(exc.retry_after or 0.0, random.uniform(0, backoff))  # noqa: S311 - jitter, not crypto
                log.warning("write failed (attempt %d), retrying in %.2f s: %s", attempt, delay, exc)
                await asyncio.sleep(delay)

    async def _write_batch(self, batch: _Batch) -> None:
        body = "\n".join(line for part in batch.parts for line in part.lines).encode()
        try:
            await self._write_with_retry(body)
            self.stats.readings_stored += batch.readings
        except SinkRejected as exc:
            if len(batch.parts) == 1:
                part = batch.parts[0]
                rejection = Rejection(
                    Reason.INVALID_READING, f"{WRITE_REJECTED}: {exc.body[:500]}", None, len(part.lines)
                )
                self.quarantine.add([QuarantineEntry(part.topic, None, rejection, part.message.payload, now_ms())])
                self.stats.readings_quarantined[WRITE_REJECTED] += len(part.lines)
            else:  # isolate the offending message(s): halves until single messages
                mid = len(batch.parts) // 2
                for half in (batch.parts[:mid], batch.parts[mid:]):
                    await self._write_batch(_Batch(half, sum(len(p.lines) for p in half)))
                return
        self.stats.batches_written += 1
        self.stats.messages_acked += self.source.ack([part.message for part in batch.parts])

    async def _writer(self) -> None:
        while (batch := await self._queue.get()) is not None:
            await self._write_batch(batch)

    async def run(self, stop: asyncio.Event) -> IngestStats:
        await self.influx.create_database()
        await self.source.start()
        try:
            async with asyncio.TaskGroup() as tg:
                for i in range(self.settings.writers):
                    tg.create_task(self._writer(), name=f"writer-{i}")
                tg.create_task(self._receive_loop(stop), name="receive")
        finally:
            await self.source.stop()
            await self.influx.aclose()
            self.quarantine.close()
        return self.stats


async def serve(settings: IngestSettings, stop: asyncio.Event, *, stats: IngestStats | None = None) -> IngestStats:
    """Run ingest until `stop` is set, then drain and return the counters."""
    registry = Registry.load(settings.registry)
    return await Pipeline(settings, registry, stats=stats).run(stop)

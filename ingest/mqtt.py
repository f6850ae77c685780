"""The MQTT side of ingest: paho-mqtt with manual acknowledgement, handing messages to asyncio.

Why paho directly and not aiomqtt: aiomqtt 2.x lets paho acknowledge a message as soon as it arrives and
drops it later if its own queue is full; here paho runs with `manual_ack=True` and a message is acknowledged
only by `ack()`, which the pipeline calls after the message's readings are stored or quarantined.

- Persistent MQTT 5 session: fixed client id, clean_start=False, a session expiry: what arrives while the
  consumer is away or crashed waits in the broker and is redelivered.
- Subscriptions are (re)made in every on_connect, so a broker restart never leaves the consumer deaf.
- Receive Maximum asks the broker to bound the unacknowledged messages it sends us, so that the broker, not
  our memory, holds the backlog while InfluxDB is slow or down.
- paho's network loop runs in its own thread (reconnects with backoff are paho's); messages cross into the
  event loop in batches through a deque and one wake-up call, not one call per message.
- The deque is bounded by us too (`max_buffered_messages`), because the broker's window cannot be trusted:
  Mosquitto before 2.0.13 miscounts its inflight quota (eclipse/mosquitto#2306) and, once messages are
  queued for us, sends far more than our Receive Maximum (measured on 2.0.11: 200 unacknowledged messages
  against a Receive Maximum of 5). When the deque is full, paho's thread waits in `on_message`, so it stops
  reading the socket and TCP pushes back on the broker. If the wait lasts `stall_timeout_s` (InfluxDB down,
  the pipeline at its in-flight cap), waiting longer would starve the keepalive, so the source sheds instead:
  it drops what arrives without acknowledging it and, once the pipeline asks for more, reconnects; the broker
  then redelivers everything unacknowledged. Memory stays bounded either way, and nothing is lost.
- An acknowledgement is only sent on the connection that delivered the message, and only once: every
  connection keeps its own table of delivered-but-unacknowledged message ids, each pointing at the very
  `Message` object that arrived with it. `ack(msg)` sends a PUBACK only if `msg` is still the owner of its
  id on the current connection. After a reconnect the broker redelivers whatever was not acknowledged and,
  once an id is acknowledged, may reuse it for a new message; a PUBACK sent for a stale copy would then
  acknowledge that new, unstored message. The table is replaced in `on_disconnect` and `on_pre_connect`,
  under the same lock that `ack` holds while it queues the PUBACK: paho clears its outgoing packet queue in
  `reconnect()` after `on_disconnect` ran, so a PUBACK queued before the switch is dropped with the old
  socket, and one attempted after it finds its id gone (see tests/ingest/test_mqtt_acks.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "districtpulse-ingest"
    topics: tuple[str, ...] = ("dp/v1/+/+/+/+",)
    session_expiry_s: int = 7 * 24 * 3600
    receive_maximum: int = 1000
    #: Received messages waiting for the pipeline, at most (0: the same as receive_maximum).
    max_buffered_messages: int = 0
    #: How long paho's thread may wait for room before the source sheds and resynchronises.
    stall_timeout_s: float = 10.0
    keepalive: int = 30
    username: str | None = None
    password: str | None = None
    #: Where the filters of the last run are remembered: a persistent session keeps its subscriptions, so
    #: filters removed from the configuration must be unsubscribed explicitly (telegraf#9703).
    subscriptions_file: Path | None = None


@dataclass(slots=True, eq=False)
class Message:
    """One received message. Compared by identity: two deliveries of the same payload are two messages."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received: float = 0.0  #: time.monotonic() when paho handed it over (for the acknowledgement lag)


class Source(Protocol):
    """What the pipeline needs from the broker side (MqttSource; an in-memory fake in unit tests)."""

    subscribed: asyncio.Event

    async def start(self) -> None: ...

    async def receive(self, wait_s: float | None = None) -> list[Message]: ...

    def wake(self) -> None: ...

    def ack(self, messages: Sequence[Message]) -> int: ...

    async def stop(self) -> None: ...


class MqttSource:
    """Receive messages from the broker into asyncio; acknowledge them explicitly."""

    def __init__(self, config: MqttConfig) -> None:
        self.config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: deque[Message] = deque()
        self._ready = asyncio.Event()
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._buffer_max = config.max_buffered_messages or config.receive_maximum
        self._shedding = False
        self._stopping = False
        self._wakeup_pending = False
        self._generation = 0
        #: mid -> the message that owns it on the current connection (delivered, not yet acknowledged).
        self._unacked: dict[int, Message] = {}
        self.connected = asyncio.Event()
        self.subscribed = asyncio.Event()
        self.stale_acks_skipped = 0
        self.connections = 0
        self.buffered_max = 0  #: high-water mark of the deque
        self.shed = 0  #: messages dropped unacknowledged while shedding (redelivered after the resync)
        self.resyncs = 0
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client

    # -- paho thread ---------------------------------------------------------------------------------------
    def _new_connection(self) -> None:
        """Forget every id of the previous connection: its messages can no longer be acknowledged."""
        with self._lock:
            self._generation += 1
            self._unacked = {}

    def _on_pre_connect(self, _c: mqtt.Client, _u: Any) -> None:
        self._new_connection()

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            log.error("broker refused connection: %s", reason)
            return
        self.connections += 1
        log.info(
            "connected to %s:%s (session present: %s); subscribing %s",
            self.config.host,
            self.config.port,
            flags.session_present,
            ",".join(self.config.topics),
        )
        self._drop_stale_subscriptions(client, session_present=bool(flags.session_present))
        client.subscribe([(topic, 1) for topic in self.config.topics])
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.connected.set)

    def _drop_stale_subscriptions(self, client: mqtt.Client, *, session_present: bool) -> None:
        path = self.config.subscriptions_file
        if path is None:
            return
        try:
            previous = set(json.loads(path.read_text())) if path.exists() else set()
        except (OSError, ValueError):
            previous = set()
        stale = sorted(previous - set(self.config.topics))
        if stale and session_present:
            log.info("unsubscribing filters no longer configured: %s", ",".join(stale))
            client.unsubscribe(stale)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(sorted(self.config.topics)))

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: list[ReasonCode], _p: Any) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            log.error("subscription refused: %s", ", ".join(failed))
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(self.subscribed.set)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self._new_connection()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.connected.clear)
            self._loop.call_soon_threadsafe(self.subscribed.clear)
        if reason.is_failure:
            log.warning("disconnected from broker: %s (paho reconnects)", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        payload = msg.payload if type(msg.payload) is bytes else bytes(msg.payload)
        with self._lock:
            # Backpressure: when the deque is full, paho's thread stops reading the socket until the pipeline
            # takes messages; if that takes too long, shed.
            if (
                len(self._inbox) >= self._buffer_max
                and not self._shedding
                and not self._stopping
                and not self._space.wait_for(
                    lambda: len(self._inbox) < self._buffer_max or self._stopping, self.config.stall_timeout_s
                )
            ):
                self._shedding = True
                log.warning(
                    "pipeline stalled for %.0f s with %d messages buffered: shedding until it catches up",
                    self.config.stall_timeout_s,
                    len(self._inbox),
                )
            if self._shedding or self._stopping:
                self.shed += 1  # not acknowledged: the broker redelivers it after the resync
                return
            message = Message(msg.topic, payload, msg.mid, msg.qos, self._generation, time.monotonic())
            if msg.qos:
                self._unacked[msg.mid] = message
            self._inbox.append(message)
            if len(self._inbox) > self.buffered_max:
                self.buffered_max = len(self._inbox)
            if self._wakeup_pending:
                return
            self._wakeup_pending = True
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._ready.set)

    # -- event loop ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        with self._lock:
            self._stopping = False
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        self._client.connect_async(
            self.config.host, self.config.port, keepalive=self.config.keepalive, clean_start=False, properties=props
        )
        self._client.loop_start()

    async def receive(self, wait_s: float | None = None) -> list[Message]:
        """Return every message that has arrived (at most `max_buffered_messages`), waiting for one if there
        is none; an empty list after `wait_s` seconds or when `wake()` is called.

        No task or future is made per call when messages are waiting: under load this is called once per
        chunk of messages, so its cost is part of the per-message budget."""
        assert self._loop is not None
        while True:
            with self._lock:
                if self._inbox:
                    batch = list(self._inbox)
                    self._inbox.clear()
                    self._ready.clear()
                    self._wakeup_pending = False
                    self._space.notify_all()
                    return batch
                resync = self._shedding
                if not resync:
                    self._ready.clear()
                    self._wakeup_pending = False
            if resync:  # the pipeline has room again and everything buffered is taken: fetch the rest
                await self._resync()
                continue
            if wait_s is not None and wait_s <= 0:
                return []
            timer = self._loop.call_later(wait_s, self._ready.set) if wait_s is not None else None
            try:
                await self._ready.wait()
            finally:
                if timer is not None:
                    timer.cancel()
            with self._lock:
                if not self._inbox and not self._shedding:
                    return []  # timed out or woken

    def wake(self) -> None:
        """Make a waiting `receive` return (the pipeline calls this when it stops)."""
        self._ready.set()

    async def _resync(self) -> None:
        """Reconnect after shedding: the broker redelivers every unacknowledged message on the new connection."""
        log.warning("resynchronising with the broker after shedding %d messages", self.shed)
        self.resyncs += 1
        await self.stop()
        with self._lock:
            self._shedding = False
        await self.start()

    def ack(self, messages: Sequence[Message]) -> int:
        """Acknowledge messages still owned on the current connection; returns how many were acknowledged.

        The check and the queueing of the PUBACK happen under the lock that a connection switch takes, so
        a PUBACK never leaves on a connection other than the one that delivered its message."""
        sent = 0
        with self._lock:
            unacked = self._unacked
            for msg in messages:
                if msg.qos == 0:
                    continue
                if unacked.get(msg.mid) is not msg:
                    self.stale_acks_skipped += 1  # delivered on an earlier connection: redelivered on this one
                    continue
                del unacked[msg.mid]
                self._client.ack(msg.mid, msg.qos)
                sent += 1
        return sent

    @property
    def unacked(self) -> int:
        """Messages delivered on the current connection and not acknowledged yet."""
        with self._lock:
            return len(self._unacked)

    async def stop(self) -> None:
        """Disconnect; unacknowledged messages stay in the broker's session for the next start."""
        with self._lock:
            self._stopping = True
            self._space.notify_all()
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        # loop_start() makes a new wake-up socket pair without closing the old one (paho 2.2): close it here,
        # as paho's own loop() does, so a resync (stop, then start) leaks no sockets.
        self._client._reset_sockets(sockpair_only=True)

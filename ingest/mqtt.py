"""The MQTT side of ingest: paho-mqtt with manual acknowledgement, handing messages to asyncio.

Why paho directly and not aiomqtt: aiomqtt 2.x lets paho acknowledge a message as soon as it arrives and
drops it later if its own queue is full; here paho runs with `manual_ack=True` and a message is acknowledged
only by `ack()`, which the pipeline calls after the message's readings are stored or quarantined.

- Persistent MQTT 5 session: fixed client id, clean_start=False, a session expiry: what arrives while the
  consumer is away or crashed waits in the broker and is redelivered.
- Subscriptions are (re)made in every on_connect, so a broker restart never leaves the consumer deaf.
- Receive Maximum bounds the unacknowledged messages the broker sends us: the broker, not our memory, holds
  the backlog while InfluxDB is slow or down.
- paho's network loop runs in its own thread (reconnects with backoff are paho's); messages cross into the
  event loop in batches through a deque and one wake-up call, not one call per message.
- An acknowledgement is only sent on the connection that delivered the message: after a reconnect the
  broker redelivers what was not acknowledged, and a stale message id could otherwise acknowledge an
  unrelated new message that reused it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    keepalive: int = 30
    username: str | None = None
    password: str | None = None
    #: Where the filters of the last run are remembered: a persistent session keeps its subscriptions, so
    #: filters removed from the configuration must be unsubscribed explicitly (telegraf#9703).
    subscriptions_file: Path | None = None


@dataclass(slots=True)
class Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int


class MqttSource:
    """Receive messages from the broker into asyncio; acknowledge them explicitly."""

    def __init__(self, config: MqttConfig) -> None:
        self.config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: deque[Message] = deque()
        self._ready = asyncio.Event()
        self._lock = threading.Lock()
        self._wakeup_pending = False
        self._generation = 0
        self.connected = asyncio.Event()
        self.subscribed = asyncio.Event()
        self.stale_acks_skipped = 0
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client

    # -- paho thread ---------------------------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            log.error("broker refused connection: %s", reason)
            return
        with self._lock:
            self._generation += 1
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
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.connected.clear)
            self._loop.call_soon_threadsafe(self.subscribed.clear)
        if reason.is_failure:
            log.warning("disconnected from broker: %s (paho reconnects)", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._inbox.append(Message(msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._generation))
            if self._wakeup_pending:
                return
            self._wakeup_pending = True
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._ready.set)

    # -- event loop ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        self._client.connect_async(
            self.config.host, self.config.port, keepalive=self.config.keepalive, clean_start=False, properties=props
        )
        self._client.loop_start()

    async def receive(self) -> list[Message]:
        """Wait for messages and return all that have arrived (at most Receive Maximum)."""
        while True:
            await self._ready.wait()
            with self._lock:
                self._ready.clear()
                self._wakeup_pending = False
                if self._inbox:
                    batch = list(self._inbox)
                    self._inbox.clear()
                    return batch

    def ack(self, messages: Sequence[Message]) -> int:
        """Acknowledge messages delivered on the current connection; returns how many were acknowledged."""
        with self._lock:
            generation = self._generation
        sent = 0
        for msg in messages:
            if msg.qos == 0:
                continue
            if msg.generation != generation:
                self.stale_acks_skipped += 1  # the broker redelivers it on this connection
                continue
            self._client.ack(msg.mid, msg.qos)
            sent += 1
        return sent

    async def stop(self) -> None:
        """Disconnect; unacknowledged messages stay in the broker's session for the next start."""
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

"""The MQTT side of ingest: paho-mqtt with manual acknowledgement, driven by the asyncio event loop.

Why paho directly and not aiomqtt: aiomqtt 2.x lets paho acknowledge a message as soon as it arrives and
drops it later if its own queue is full; here paho runs with `manual_ack=True` and a message is acknowledged
only by `ack()`, which the pipeline calls after the message's readings are stored or quarantined.

- Persistent MQTT 5 session: fixed client id, clean_start=False, a session expiry: what arrives while the
  consumer is away or crashed waits in the broker and is redelivered.
- Subscriptions are (re)made in every on_connect, so a broker restart never leaves the consumer deaf; the
  source reconnects itself with backoff (1 s doubling to 30 s).
- One thread. paho's socket is served by the event loop (`add_reader`/`add_writer`, paho's documented
  external-loop interface: `loop_read`, `loop_write`, `loop_misc`), not by paho's own network thread. With
  two threads every socket call hands the GIL over between them; measured here, a subscriber that acknowledges
  each message drains 40k QoS 1 messages/s on the event loop against 28k with paho's thread, and the
  validation work no longer competes with a network thread. Only the blocking TCP connect runs in a worker
  thread, so a slow broker never stalls the loop.
- Receive Maximum asks the broker to bound the unacknowledged messages it sends us, so that the broker, not
  our memory, holds the backlog while InfluxDB is slow or down.
- Maximum Packet Size tells the broker the largest packet we take. It sits above what the broker itself
  accepts (`devices.wire.MAX_PACKET_BYTES`, its `max_packet_size`), so a broker configured like ours never has
  to use it: Mosquitto drops a message larger than a subscriber's maximum without a trace but a NOTICE log
  line, and (2.0.11) the dropped QoS 1 message keeps its slot of our Receive Maximum until we reconnect.
  It is the bound for a broker with no limit of its own; a message between `MAX_MESSAGE_BYTES` and it
  reaches the pipeline, which quarantines it as `too_large` (ingest/README.md, "Oversized messages").
- Received messages wait in a deque for the pipeline, bounded by us too (`max_buffered_messages`), because the
  broker's window cannot be trusted: Mosquitto before 2.0.13 miscounts its inflight quota (eclipse/mosquitto
  #2306) and, once messages are queued for us, sends far more than our Receive Maximum (measured on 2.0.11:
  200 unacknowledged messages against a Receive Maximum of 5). When the deque is full the source stops
  reading the socket, so TCP pushes back on the broker. If the pause lasts `stall_timeout_s` (InfluxDB down,
  the pipeline at its in-flight cap), pausing longer would starve the keepalive, so the source sheds instead:
  it reads and drops what arrives without acknowledging it and, once the pipeline asks for more, reconnects;
  the broker then redelivers everything unacknowledged. Memory stays bounded either way, and nothing is lost.
- An acknowledgement is only sent on the connection that delivered the message, and only once: every
  connection has its own table of delivered-but-unacknowledged message ids, each pointing at the very
  `Message` object that arrived with it, and `ack(msg)` sends a PUBACK only if `msg` still owns its id.
  After a reconnect the broker redelivers whatever was not acknowledged and, once an id is acknowledged, may
  reuse it for a new message; a PUBACK sent for a stale copy would then acknowledge that new, unstored
  message. The table is replaced when the connection is lost (`on_disconnect`, on the loop, before any
  reconnect starts), so an acknowledgement of an earlier connection's message is never sent, and one for the
  current connection can only leave on it (see tests/ingest/test_mqtt_acks.py).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import functools
import json
import logging
import termios
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devices.tls import client_context
from devices.wire import MAX_PACKET_BYTES

log = logging.getLogger(__name__)

#: packets read per readable event at most, so one busy socket cannot starve the writers' HTTP exchanges
_MAX_PACKETS_PER_READ = 256
_RECONNECT_MIN_S, _RECONNECT_MAX_S = 1.0, 30.0
#: The default Maximum Packet Size: the broker's bound plus room for what it may add when it forwards a packet
#: (properties; a v3.1.1 publisher's packet grows by a byte for a v5 subscriber).
DEFAULT_MAXIMUM_PACKET_SIZE = MAX_PACKET_BYTES + 64 * 1024


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "districtpulse-ingest"
    topics: tuple[str, ...] = ("dp/v1/+/+/+/+",)
    session_expiry_s: int = 7 * 24 * 3600
    receive_maximum: int = 1000
    #: The MQTT 5 Maximum Packet Size sent on CONNECT (see the module docstring); 0: none sent, no limit.
    maximum_packet_size: int = DEFAULT_MAXIMUM_PACKET_SIZE
    #: Received messages waiting for the pipeline, at most (0: the same as receive_maximum).
    max_buffered_messages: int = 0
    #: How long reading may stay paused for a full buffer before the source sheds and resynchronises.
    stall_timeout_s: float = 10.0
    keepalive: int = 30
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # secrets never in a repr
    #: TLS: the CA that signed the broker's certificate, and this client's certificate and key (secure mode:
    #: `districtpulse services up --secure` writes them under .services/mosquitto/secure/clients/_ingest.*).
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    #: Confirmations (QoS 1) waiting in paho for their PUBACK, at most (see `MqttSource.publish`). Small on
    #: purpose: paho's `loop_read` reads one packet more for each of them per call, which is how far past
    #: `max_buffered_messages` the buffer can grow before reading pauses.
    max_queued_publishes: int = 16
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
    received: float = 0.0  #: time.monotonic() when it was read (for the acknowledgement lag)
    #: (district, gateway, device, first seq, last seq): what the pipeline confirms to the gateway once the
    #: message is settled (`ingest.confirm`); set by validation, None if there is nothing to confirm
    confirm: tuple[str, str, str, int, int] | None = None


class Source(Protocol):
    """What the pipeline needs from the broker side (MqttSource; an in-memory fake in unit tests)."""

    subscribed: asyncio.Event

    async def start(self) -> None: ...

    async def receive(self, wait_s: float | None = None) -> list[Message]: ...

    def wake(self) -> None: ...

    def ack(self, messages: Sequence[Message]) -> int: ...

    def publish(self, topic: str, payload: bytes) -> bool: ...

    async def stop(self) -> None: ...


class MqttSource:
    """Receive messages from the broker into asyncio; acknowledge them explicitly."""

    def __init__(self, config: MqttConfig) -> None:
        self.config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._inbox: deque[Message] = deque()
        self._ready = asyncio.Event()
        self._lost = asyncio.Event()
        self._buffer_max = config.max_buffered_messages or config.receive_maximum
        self._sock: Any = None
        self._reading = False
        self._paused_at: float | None = None
        self._shedding = False
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        self._connecting: asyncio.Future[MQTTErrorCode] | None = None
        self._resync_requested = False
        self._fionread = array.array("i", [0])
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
        self.published = 0  #: confirmations handed to paho
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        if config.ca_file is not None:  # the broker verified as every component does (devices.tls)
            client.tls_set_context(client_context(config.ca_file, config.cert_file, config.key_file))
        # What ingest publishes (confirmations to the gateways) is bounded too: at most this many wait in paho
        # for their PUBACK; past that `publish` refuses and the confirmation is counted as dropped (its gateway
        # publishes those readings again after its timeout, and they are confirmed then). paho 2.2's
        # `loop_read` ignores its argument and reads len(_out_messages) + len(_in_messages) packets per call,
        # so this also bounds how many messages one read can add to the buffer past its limit.
        client.max_inflight_messages_set(config.max_queued_publishes)
        client.max_queued_messages_set(config.max_queued_publishes)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        self._client = client

    # -- sockets on the event loop -------------------------------------------------------------------------
    def _on_loop(self, fn: Callable[..., object], *args: Any) -> None:
        """Run on the event loop: paho calls the socket callbacks from the connecting worker thread too."""
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._on_loop(self._opened, sock)

    def _opened(self, sock: Any) -> None:
        assert self._loop is not None
        self._sock = sock
        self._paused_at = None
        self._resume_reading()

    def _on_socket_close(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._on_loop(self._closed, sock)

    def _closed(self, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        if self._sock is sock:
            self._sock = None
            self._reading = False

    def _on_register_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._on_loop(self._add_writer, sock)

    def _add_writer(self, sock: Any) -> None:
        assert self._loop is not None
        if sock is self._sock or self._sock is None:
            self._loop.add_writer(sock, self._writable)

    def _on_unregister_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._on_loop(self._remove_writer, sock)

    def _remove_writer(self, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_writer(sock)

    def _writable(self) -> None:
        self._client.loop_write()

    def _resume_reading(self) -> None:
        if self._sock is not None and not self._reading and self._loop is not None:
            self._loop.add_reader(self._sock, self._readable)
            self._reading = True
            self._paused_at = None

    def _pause_reading(self) -> None:
        if self._sock is not None and self._reading and self._loop is not None:
            self._loop.remove_reader(self._sock)
            self._reading = False
            self._paused_at = time.monotonic()

    def _readable(self) -> None:
        """Read every complete packet the socket holds (paho reads one per call), up to a limit."""
        client, sock = self._client, self._sock
        if sock is None:
            return
        fileno = sock.fileno()
        for _ in range(_MAX_PACKETS_PER_READ):
            if client.loop_read() or client.socket() is not sock:
                return  # the connection failed: paho has called on_disconnect
            if len(self._inbox) >= self._buffer_max and not self._shedding:
                self._pause_reading()  # backpressure: TCP holds the rest until the pipeline takes messages
                return
            fcntl.ioctl(fileno, termios.FIONREAD, self._fionread)  # bytes still waiting in the socket
            if self._fionread[0] == 0:
                return

    # -- paho callbacks (on the loop, but on_pre_connect: in the connecting thread) ---------------------------
    def _on_pre_connect(self, _c: mqtt.Client, _u: Any) -> None:
        self._generation += 1  # the table was emptied when the previous connection was lost

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
        self.connected.set()

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
        else:
            self.subscribed.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        # Forget every id of this connection: its messages can no longer be acknowledged (they are redelivered).
        self._generation += 1
        self._unacked = {}
        self.connected.clear()
        self.subscribed.clear()
        self._lost.set()
        if reason.is_failure and not self._stopping:
            log.warning("disconnected from broker: %s (reconnecting)", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if self._shedding or self._stopping:
            self.shed += 1  # not acknowledged: the broker redelivers it after the resync
            return
        payload = msg.payload if type(msg.payload) is bytes else bytes(msg.payload)
        message = Message(msg.topic, payload, msg.mid, msg.qos, self._generation, time.monotonic())
        if msg.qos:
            self._unacked[msg.mid] = message
        inbox = self._inbox
        inbox.append(message)
        if len(inbox) > self.buffered_max:
            self.buffered_max = len(inbox)
        if not self._ready.is_set():
            self._ready.set()

    # -- connection supervision ----------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopping = False
        self._supervisor = asyncio.create_task(self._supervise(), name="mqtt-supervisor")

    async def _connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        if self.config.maximum_packet_size:
            props.MaximumPacketSize = self.config.maximum_packet_size
        connect = functools.partial(
            self._client.connect,
            self.config.host,
            self.config.port,
            keepalive=self.config.keepalive,
            clean_start=False,
            properties=props,
        )
        self._lost.clear()
        assert self._loop is not None
        self._connecting = self._loop.run_in_executor(None, connect)
        try:
            await asyncio.shield(self._connecting)  # stop() waits for a connect in progress, never abandons it
        finally:
            self._connecting = None

    async def _supervise(self) -> None:
        """Connect, keep the connection alive (keepalive, stall detection), reconnect with backoff."""
        delay = _RECONNECT_MIN_S
        while not self._stopping:
            connections = self.connections
            try:
                await self._connect()
            except OSError as exc:
                log.warning(
                    "cannot connect to %s:%s: %s; retrying in %.0f s", self.config.host, self.config.port, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX_S)
                continue
            while not self._lost.is_set():
                try:
                    await asyncio.wait_for(self._lost.wait(), 1.0)
                except TimeoutError:
                    self._client.loop_misc()  # keepalive: PINGREQ, or give up on a silent broker
                    self._check_stall()
            if self._stopped():  # (a method: mypy would narrow the attribute across the awaits)
                return
            if self._resync_requested:
                self._resync_requested = False
                delay = _RECONNECT_MIN_S
                continue  # at once: the pipeline is waiting for the redelivery
            delay = _RECONNECT_MIN_S if self.connections > connections else min(delay * 2, _RECONNECT_MAX_S)
            await asyncio.sleep(delay)

    def _stopped(self) -> bool:
        return self._stopping

    def _check_stall(self) -> None:
        paused_at = self._paused_at
        if paused_at is not None and not self._shedding and time.monotonic() - paused_at > self.config.stall_timeout_s:
            self._shedding = True
            log.warning(
                "pipeline stalled for %.0f s with %d messages buffered: shedding until it catches up",
                self.config.stall_timeout_s,
                len(self._inbox),
            )
            self._resume_reading()

    # -- the pipeline's side -------------------------------------------------------------------------------
    async def receive(self, wait_s: float | None = None) -> list[Message]:
        """Return every message that has arrived (at most `max_buffered_messages`), waiting for one if there
        is none; an empty list after `wait_s` seconds or when `wake()` is called.

        No task or future is made per call when messages are waiting: under load this is called once per
        chunk of messages, so its cost is part of the per-message budget."""
        assert self._loop is not None
        while True:
            if self._inbox:
                batch = list(self._inbox)
                self._inbox.clear()
                self._ready.clear()
                if not self._reading and not self._shedding:
                    self._resume_reading()
                return batch
            if self._shedding:  # the pipeline has room again and everything buffered is taken: fetch the rest
                self._resync()
            self._ready.clear()
            if wait_s is not None and wait_s <= 0:
                return []
            timer = self._loop.call_later(wait_s, self._ready.set) if wait_s is not None else None
            try:
                await self._ready.wait()
            finally:
                if timer is not None:
                    timer.cancel()
            if not self._inbox:
                return []  # timed out or woken

    def _resync(self) -> None:
        """Reconnect after shedding: the broker redelivers every unacknowledged message on the new connection."""
        log.warning("resynchronising with the broker after shedding %d messages", self.shed)
        self.resyncs += 1
        self._shedding = False
        self._resync_requested = True
        self._client.disconnect()  # written by the writer callback; paho then closes and calls on_disconnect

    def wake(self) -> None:
        """Make a waiting `receive` return (the pipeline calls this when it stops)."""
        self._ready.set()

    def ack(self, messages: Sequence[Message]) -> int:
        """Acknowledge messages still owned on the current connection; returns how many were acknowledged."""
        sent = 0
        unacked, client = self._unacked, self._client
        for msg in messages:
            if msg.qos == 0:
                continue
            if unacked.get(msg.mid) is not msg:
                self.stale_acks_skipped += 1  # delivered on an earlier connection: redelivered on this one
                continue
            del unacked[msg.mid]
            client.ack(msg.mid, msg.qos)
            sent += 1
        return sent

    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish at QoS 1 (a confirmation); False if paho refused it (its bounded queue is full).

        While the connection is down paho keeps the message and sends it after the reconnect; the session is
        persistent, so what was in flight at a disconnect is sent again too."""
        info = self._client.publish(topic, payload, qos=1)
        if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self.published += 1
            return True
        return False

    @property
    def unacked(self) -> int:
        """Messages delivered on the current connection and not acknowledged yet."""
        return len(self._unacked)

    async def stop(self) -> None:
        """Disconnect; unacknowledged messages stay in the broker's session for the next start."""
        self._stopping = True
        client = self._client
        connecting = self._connecting
        if connecting is not None:  # let paho finish opening the socket, then close it properly
            await asyncio.wait([connecting], timeout=15)
        if client.socket() is not None:
            client.disconnect()
            deadline = time.monotonic() + 5.0
            while client.socket() is not None and client.want_write() and time.monotonic() < deadline:
                if client.loop_write():
                    break
                await asyncio.sleep(0.01)
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._sock is not None:
            self._closed(self._sock)

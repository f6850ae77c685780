"""QoS 1 publishing with paho-mqtt: a bounded number of messages in flight, and a callback per PUBACK.

The publisher never holds more than `max_inflight` unacknowledged messages: `publish` blocks until the
broker has acknowledged enough of the earlier ones. paho's own queue would otherwise grow without bound
while the broker is slow or away (and past 65,535 queued QoS 1 messages paho fails with ERR_QUEUE_SIZE).
`on_ack(mid, reason)` runs on paho's network thread for each PUBACK, with the MQTT 5 reason code: 0 is
"success", 0x10 "no matching subscribers" (the broker dropped the message: nobody was subscribed), 0x80 and up
a refusal (0x87 not authorized, 0x97 quota exceeded, ...). A PUBACK only says the broker took the message (or
did not): the gateway deletes a reading when ingest confirms it is stored (`gateway.delivery`), and the codes
are counted here by value (`reasons`).

`subscriptions` are (topic filter, callback) pairs subscribed at QoS 1 on every (re)connection (the gateway's
confirmation topic); each callback gets the payload of a matching message on paho's network thread.

Two ways to connect: `connect()` waits for the CONNACK and raises `BrokerUnavailable` (a one-shot publisher
such as the simulator wants to fail fast); `start()` returns at once and keeps (re)connecting in the
background (the gateway service, which must run while the broker is away). Reconnection waits with
exponential backoff and jitter (`devices.backoff`): paho's own delay is set to zero and the wait happens in
the disconnect / connect-failure callbacks, on paho's network thread, interruptibly. After a reconnect paho
re-sends the messages still awaiting their PUBACK (the MQTT 5 session is kept across reconnects of one
process; a new process starts clean and the spool re-publishes what was never acknowledged).

Security (`BrokerConfig.tls`, `username`/`password`): TLS 1.2+ verifying the broker against a CA file (host
name included) and presenting a client certificate, as the broker of `districtpulse services up --secure`
requires. The SSL context is built once, here, from the standard library (nothing more on the Pi); a missing
or unreadable file is a `ConfigError` at construction, not a reconnect loop. The password is never logged
and is left out of `repr(BrokerConfig)`.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devices.backoff import EQUAL, Backoff
from devices.tls import TlsFilesError, client_context
from gateway.errors import BrokerUnavailable, ConfigError, PublishFailed

log = logging.getLogger(__name__)


def _payload_only(callback: Callable[[bytes], None]) -> Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None]:
    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        callback(bytes(message.payload))

    return on_message


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the TLS handshake fails.

    paho 2.2 wraps the socket, runs the handshake and, when it fails (a broker certificate that does not verify,
    a refused client certificate), drops the socket without closing it: one leaked descriptor per failed
    reconnect, for as long as the broker stays misconfigured. Installed through the documented
    `SSLContext.sslsocket_class` hook rather than by patching paho.
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS towards the broker: `ca_file` None trusts the system CAs; a client certificate needs its key."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def context(self) -> ssl.SSLContext:
        """A client context: certificate and host name verified, TLS 1.2 at least; ConfigError if unusable."""
        try:
            context = client_context(self.ca_file, self.cert_file, self.key_file)
        except TlsFilesError as exc:
            raise ConfigError(str(exc)) from exc
        context.sslsocket_class = _ClosingSSLSocket
        return context


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = ""
    keepalive: int = 30
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    tls: TlsConfig | None = None


@dataclass(frozen=True, slots=True)
class Will:
    """The Last Will: what the broker publishes for us when our connection dies without a DISCONNECT."""

    topic: str
    payload: bytes
    retain: bool = True


class Publisher:
    """A connected paho client that publishes at QoS 1 with bounded in-flight messages.

    Use as a context manager; `close()` waits for outstanding acknowledgements (up to `drain_timeout`).
    """

    def __init__(
        self,
        broker: BrokerConfig,
        *,
        max_inflight: int = 1000,
        on_ack: Callable[[int, int], None] | None = None,
        drain_timeout: float = 30.0,
        will: Will | None = None,
        rng: random.Random | None = None,
        subscriptions: Sequence[tuple[str, Callable[[bytes], None]]] = (),
    ) -> None:
        if max_inflight < 1:
            raise ValueError("max_inflight must be >= 1")
        self.broker = broker
        self.max_inflight = max_inflight
        self.drain_timeout = drain_timeout
        self._on_ack = on_ack
        self._cond = threading.Condition()
        self._inflight = 0
        self._connected = False
        self._connect_error: str | None = None
        self._closing = threading.Event()
        self._backoff = Backoff(
            broker.reconnect_min_s,
            broker.reconnect_max_s,
            EQUAL,
            uniform=(rng or random.Random()).uniform,  # noqa: S311 (jitter)
        )
        self.published = 0
        self.acked = 0
        #: PUBACKs with a failure reason (MQTT 5, >= 0x80), e.g. 0x87 "Not authorized" for a topic outside this
        #: client's ACL. Nothing is deleted for them; the owner decides whether and when to publish again.
        self.rejected = 0
        #: Every PUBACK reason code other than 0 ("success"), by value: 0x10 (16) "no matching subscribers" too.
        self.reasons: Counter[int] = Counter()
        self._subscriptions = tuple(subscriptions)
        self.connections = 0  # successful CONNACKs so far: a change tells the owner it reconnected
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=broker.client_id,
            protocol=mqtt.MQTTv5,
        )
        client.max_inflight_messages_set(max_inflight)
        client.max_queued_messages_set(0)  # we bound in-flight ourselves; paho's limit would raise instead
        client.reconnect_delay_set(min_delay=0, max_delay=0)  # we wait ourselves, with jitter
        if broker.username is not None:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls is not None:
            client.tls_set_context(broker.tls.context())
        if will is not None:
            client.will_set(will.topic, will.payload, qos=1, retain=will.retain)
        client.on_connect = self._handle_connect
        client.on_connect_fail = self._handle_connect_fail
        client.on_disconnect = self._handle_disconnect
        client.on_publish = self._handle_publish
        for topic, callback in self._subscriptions:
            client.message_callback_add(topic, _payload_only(callback))
        self._client = client

    # -- paho callbacks (network thread) -------------------------------------------------------------------
    def _handle_connect(
        self, _c: mqtt.Client, _u: Any, _flags: Any, reason: ReasonCode, _props: Properties | None
    ) -> None:
        with self._cond:
            if reason.is_failure:
                self._connect_error = str(reason)
            else:
                self._connected = True
                self._connect_error = None
                self.connections += 1
                self._backoff.reset()
            self._cond.notify_all()
        if not reason.is_failure and self._subscriptions:
            # Subscribed again on every connection: the session does not outlive the connection, and the
            # SUBSCRIBE leaves before any PUBLISH of this connection, so no confirmation of it is missed.
            self._client.subscribe([(topic, 1) for topic, _ in self._subscriptions])
        if reason.is_failure:
            log.warning("broker %s:%s refused the connection: %s", self.broker.host, self.broker.port, reason)
        else:
            log.info("connected to %s:%s", self.broker.host, self.broker.port)

    def _handle_disconnect(
        self, _c: mqtt.Client, _u: Any, _flags: Any, reason: ReasonCode, _props: Properties | None
    ) -> None:
        with self._cond:
            self._connected = False
            self._cond.notify_all()
        if reason.is_failure:
            log.warning("disconnected from %s:%s: %s", self.broker.host, self.broker.port, reason)
        self._wait_before_retry()

    def _handle_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        log.warning("cannot reach %s:%s", self.broker.host, self.broker.port)
        self._wait_before_retry()

    def _wait_before_retry(self) -> None:
        """paho retries right after this callback returns (its own delay is zero): wait here, with jitter."""
        if self._closing.is_set():
            return
        delay = self._backoff.next_delay()
        log.info("reconnecting to %s:%s in %.1f s", self.broker.host, self.broker.port, delay)
        self._closing.wait(delay)

    def _handle_publish(
        self, _c: mqtt.Client, _u: Any, mid: int, reason: ReasonCode, _props: Properties | None
    ) -> None:
        code = int(reason.value)
        with self._cond:
            self._inflight -= 1
            self.acked += 1
            if code:
                self.reasons[code] += 1
                if reason.is_failure:
                    self.rejected += 1
            self._cond.notify_all()
        if self._on_ack is not None:
            self._on_ack(mid, code)

    # -- public API ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the network thread and return at once; it connects, and reconnects, in the background."""
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=self.broker.keepalive)
        self._client.loop_start()

    def connect(self, timeout: float = 10.0) -> None:
        """Connect and start the network thread; raise BrokerUnavailable if not connected within `timeout`."""
        try:
            self._client.connect(self.broker.host, self.broker.port, keepalive=self.broker.keepalive)
        except OSError as exc:
            raise BrokerUnavailable(f"cannot connect to {self.broker.host}:{self.broker.port}: {exc}") from exc
        self._client.loop_start()
        with self._cond:
            answered = self._cond.wait_for(lambda: self._connected or self._connect_error is not None, timeout)
            refused = self._connect_error
        # The loop is stopped outside the lock: the network thread takes it in its disconnect callback (after
        # a refused CONNACK), and joining that thread while holding the lock would deadlock.
        if not answered:
            self._stop_loop()
            raise BrokerUnavailable(f"no CONNACK from {self.broker.host}:{self.broker.port} in {timeout} s")
        if refused is not None:
            self._stop_loop()
            raise BrokerUnavailable(f"broker refused the connection: {refused}")

    def _stop_loop(self) -> None:
        self._closing.set()  # interrupts a backoff wait on the network thread, which loop_stop joins
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, timeout: float | None = None) -> int:
        """Publish at QoS 1 and return the message id; blocks while `max_inflight` messages await PUBACK.

        While disconnected, paho keeps the message and sends it after reconnecting.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._inflight < self.max_inflight, timeout):
                raise PublishFailed(f"{self._inflight} messages unacknowledged for {timeout} s")
            self._inflight += 1
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            with self._cond:
                self._inflight -= 1
            raise PublishFailed(f"publish to {topic!r} refused: {mqtt.error_string(info.rc)}")
        self.published += 1
        return info.mid

    @property
    def inflight(self) -> int:
        with self._cond:
            return self._inflight

    @property
    def available(self) -> int:
        """How many messages can be published now without blocking."""
        with self._cond:
            return self.max_inflight - self._inflight

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    def wait_acked(self, timeout: float) -> bool:
        """Wait until every published message is acknowledged; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._inflight == 0, timeout)

    def close(self) -> None:
        deadline = time.monotonic() + self.drain_timeout
        if not self.wait_acked(max(0.0, deadline - time.monotonic())):
            log.warning("closing with %d messages unacknowledged", self.inflight)
        self._closing.set()
        self._client.disconnect()
        self._client.loop_stop()
        self._release_sockets()

    def _release_sockets(self) -> None:
        """Close paho's socket and its wake-up socket pair now. paho closes them only when the client is
        garbage-collected, and the client and this publisher refer to each other (callbacks), so without this
        the sockets live until a later cycle collection (a ResourceWarning in whatever runs then)."""
        reset = getattr(self._client, "_reset_sockets", None)  # paho 2.x; private, hence the guard
        if callable(reset):
            reset()

    def __enter__(self) -> Publisher:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The dashboard's one MQTT connection: gateway statuses in, alert events out (aiomqtt, in the app's event loop).

The dashboard is an asyncio app and neither of its MQTT uses needs manual acknowledgement, so it uses aiomqtt
(ingest keeps paho for its ack-after-write; the gateway keeps paho for its bounded in-flight window):

- it subscribes (QoS 1) to `dp/v1/<district>/+/status` of the registry's districts and keeps each gateway's
  newest status (`Statuses`, read by every refresh). The broker's retained statuses arrive right after the
  subscription, so a dashboard that starts knows the fleet at once. An empty retained message clears a status
  (the gateway was retired).
- it publishes alert events at QoS 1 (`alerts.MqttNotifier`); `publish` returns once the broker's PUBACK came,
  and raises `BrokerUnavailable` while the link is down or when the PUBACK does not come in time, which the
  alert dispatcher counts as a failed delivery (`dp_dashboard_alert_notifications_failed_total`).

The link reconnects by itself with jittered exponential backoff (1 s doubling to 30 s). Statuses are kept
across a reconnect (the retained ones are delivered again); `connected` says whether the link is up now.
Memory is bounded by the fleet: one status per gateway topic of the registry's districts, each one payload of at
most the broker's message size limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
import time
from collections.abc import Sequence

import aiomqtt

from dashboard.sources import GatewayStatus, parse_status
from devices.backoff import Backoff

__all__ = ["BrokerLink", "BrokerUnavailable"]

log = logging.getLogger(__name__)


class BrokerUnavailable(ConnectionError):
    """The dashboard's MQTT link is down, or the broker did not acknowledge a publish in time."""


class BrokerLink:
    """One aiomqtt client for the dashboard: `gateways()` for the snapshot, `publish()` for the alerts."""

    def __init__(
        self,
        host: str,
        port: int,
        districts: Sequence[str],
        *,
        client_id: str = "districtpulse-dashboard",
        username: str | None = None,
        password: str | None = None,
        keepalive_s: int = 30,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.filters = [f"dp/v1/{d}/+/status" for d in districts]
        # A random suffix: two dashboards (or a dashboard restarted before the broker noticed the old one left)
        # must not take each other's session over. The session is clean: nothing is kept for it in the broker.
        # (A secure broker replaces any client id with the username: there, one dashboard per identity.)
        self.client_id = f"{client_id}-{secrets.token_hex(4)}"
        self.username, self.password = username, password
        self.keepalive_s = keepalive_s
        self.tls = tls
        self.connected = asyncio.Event()
        self.connects = 0
        self._status: dict[str, GatewayStatus] = {}
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(1.0, 30.0)

    def gateways(self) -> dict[str, GatewayStatus]:
        return dict(self._status)

    async def start(self, wait_s: float = 3.0) -> None:
        """Start the link; wait up to `wait_s` for the first connection and the retained statuses behind it."""
        self._task = asyncio.create_task(self._run(), name="dashboard-mqtt")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), wait_s)
            await asyncio.sleep(0.2)  # the retained statuses arrive right after the SUBACK

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def publish(self, topic: str, payload: bytes, *, timeout_s: float = 5.0) -> None:
        """Publish at QoS 1 and wait for the PUBACK; `BrokerUnavailable` when the link is down or it is late."""
        client = self._client
        if client is None or not self.connected.is_set():
            raise BrokerUnavailable(f"not connected to the broker at {self.host}:{self.port}")
        try:
            await client.publish(topic, payload, qos=1, timeout=timeout_s)
        except aiomqtt.MqttError as exc:
            raise BrokerUnavailable(f"publish to {topic} failed: {exc}") from exc

    def _on_message(self, message: aiomqtt.Message) -> None:
        parts = message.topic.value.split("/")
        if len(parts) != 5 or parts[4] != "status":
            return
        payload = message.payload  # bytes: aiomqtt hands on what came off the wire
        if not payload:  # an empty retained message clears the status: the gateway was retired
            self._status.pop(parts[3], None)
            return
        status = parse_status(parts[3], bytes(payload), time.time_ns() // 1_000_000, bool(message.retain))
        self._status[status.gateway] = status

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=self.client_id,
                    username=self.username,
                    password=self.password,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    keepalive=self.keepalive_s,
                    clean_start=True,
                    tls_context=self.tls,
                ) as client:
                    if self.filters:
                        await client.subscribe([(f, 1) for f in self.filters])
                    self._client = client
                    self.connected.set()
                    self.connects += 1
                    self._backoff.reset()
                    log.info("dashboard mqtt connected", extra={"fields": {"broker": f"{self.host}:{self.port}"}})
                    async for message in client.messages:
                        self._on_message(message)
            except aiomqtt.MqttError as exc:
                log.warning("dashboard mqtt link down: %s", exc)
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(self._backoff.next_delay())

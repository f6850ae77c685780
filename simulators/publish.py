"""Publish a simulated or replayed stream exactly as gateways do: gateway.Publisher, QoS 1, bounded in flight.

Two connection layouts:
- one connection per gateway (default): a gateway's outage in the stream (`GatewayEvent`) really closes its
  connection, and the next batch reconnects, as a gateway with a spool would;
- a pool of `connections` shared by all gateways (fleet scale: thousands of gateways from one process), each
  gateway pinned to one connection so its batches stay in order. One paho connection does ~7.8k QoS 1
  messages/s here, so fleet-scale runs batch readings per message and spread over several connections.

Gateway statuses (`StatusEvent`) go out retained on the gateway's own connection (or its pooled one), encoded
when they are published (`simulators.status`); each per-gateway connection carries the offline Last Will of a
real gateway, so a simulator that dies leaves its gateways offline rather than online forever.

Under a `topic_root` (load tests) statuses are published but not retained.

`speed` paces by the simulated delivery time (1 = real time, N = N times faster, 0 = as fast as possible);
`topic_root` replaces the `dp/v1` root, so a load test can publish where no consumer is subscribed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from devices import Registry
from devices.topics import ROOT
from gateway import BrokerConfig, Publisher
from gateway.publisher import Will
from simulators.engine import GatewayEvent, Message
from simulators.rng import stable_hash
from simulators.status import REASON_CONNECTION_LOST, StatusEvent, encode_status

log = logging.getLogger(__name__)

Item = Message | GatewayEvent | StatusEvent


@dataclass(frozen=True, slots=True)
class PublishReport:
    messages: int
    readings: int
    seconds: float
    connections: int
    reconnects: int = 0
    stopped_early: bool = False
    statuses: int = 0  # gateway status messages (not counted in `messages`)

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds if self.seconds > 0 else 0.0


def paced(items: Iterable[Item], speed: float) -> Iterable[Item]:
    """Yield items no faster than `speed` times their simulated delivery time (speed <= 0: no pacing)."""
    t0_wall = time.monotonic()
    t0_sim: int | None = None
    for item in items:
        if speed > 0:
            at = item.deliver_ms if isinstance(item, Message) else item.at_ms
            t0_sim = at if t0_sim is None else t0_sim
            delay = t0_wall + (at - t0_sim) / 1000 / speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield item


def publish(
    items: Iterable[Item],
    *,
    host: str,
    port: int,
    connections: int | None = None,
    client_prefix: str = "dp-sim",
    max_inflight: int = 1000,
    speed: float = 0.0,
    topic_root: str | None = None,
    time_limit_s: float | None = None,
    on_message: Callable[[Message, int], None] | None = None,
) -> PublishReport:
    """Publish every message (waiting for all PUBACKs at the end); `on_message(msg, count)` after each."""
    if connections is not None and connections < 1:
        raise ValueError("connections must be >= 1")
    sent_messages = sent_readings = reconnects = statuses = 0
    stopped = False
    t0 = time.monotonic()
    with ExitStack() as stack:
        per_gateway: dict[str, Publisher] = {}
        ever_connected: set[str] = set()
        stack.callback(_close_all, per_gateway)
        pool: list[Publisher] = []
        if connections is not None:
            for i in range(connections):
                broker = BrokerConfig(host, port, client_id=f"{client_prefix}-{i}")
                pool.append(stack.enter_context(Publisher(broker, max_inflight=max_inflight)))
        for item in paced(items, speed):
            if isinstance(item, GatewayEvent):
                if not item.online and item.gateway in per_gateway:
                    per_gateway.pop(item.gateway).close()  # waits for its PUBACKs, then disconnects
                continue
            if pool:
                pub = pool[stable_hash(item.gateway) % len(pool)]
            else:
                gateway = item.gateway or item.topic.split("/")[3]
                pub_or_none = per_gateway.get(gateway)
                if pub_or_none is None:
                    will = _will(item.topic.split("/")[2], gateway, topic_root)
                    pub_or_none = Publisher(
                        BrokerConfig(host, port, client_id=f"{client_prefix}-{gateway}"),
                        max_inflight=max_inflight,
                        will=will,
                    )
                    pub_or_none.connect()
                    reconnects += gateway in ever_connected
                    ever_connected.add(gateway)
                    per_gateway[gateway] = pub_or_none
                pub = pub_or_none
            topic = _rooted(item.topic, topic_root)
            if isinstance(item, StatusEvent):
                # Under a load-test root nothing is retained: a load test leaves no state on the broker.
                payload = encode_status(item, now_ms=time.time_ns() // 1_000_000)
                pub.publish(topic, payload, retain=topic_root is None)
                statuses += 1
                continue
            pub.publish(topic, item.payload)
            sent_messages += 1
            sent_readings += item.readings
            if on_message is not None:
                on_message(item, sent_messages)
            if time_limit_s is not None and time.monotonic() - t0 > time_limit_s:
                stopped = True
                break
        for pub in [*per_gateway.values(), *pool]:
            if not pub.wait_acked(60):
                raise TimeoutError(f"{pub.inflight} messages not acknowledged by the broker within 60 s")
        seconds = time.monotonic() - t0
    return PublishReport(
        sent_messages, sent_readings, seconds, len(pool) or len(per_gateway), reconnects, stopped, statuses
    )


def _rooted(topic: str, topic_root: str | None) -> str:
    return topic if topic_root is None else topic_root + topic[len(ROOT) :]


def _will(district: str, gateway: str, topic_root: str | None) -> Will:
    """A real gateway's Last Will: offline, connection lost (the broker sends it if we die unannounced)."""
    event = StatusEvent(gateway, district, 0, "offline", REASON_CONNECTION_LOST)
    payload = encode_status(event, now_ms=0, with_sim_ts=False)
    return Will(_rooted(event.topic, topic_root), payload, retain=topic_root is None)


def _close_all(publishers: dict[str, Publisher]) -> None:
    for pub in publishers.values():
        pub.close()


def publish_messages(
    messages: Iterable[Item],
    registry: Registry,
    *,
    host: str,
    port: int,
    client_prefix: str = "dp-sim",
    max_inflight: int = 1000,
) -> tuple[int, int]:
    """The skeleton's API: one connection per gateway, as fast as possible. Returns (messages, readings).

    Pass `Simulation.stream()` (not `.messages()`) to publish the gateways' statuses as well."""
    del registry  # the gateway of a message is in its topic
    report = publish(messages, host=host, port=port, client_prefix=client_prefix, max_inflight=max_inflight)
    return report.messages, report.readings


def write_jsonl(messages: Iterable[Item], path: Path) -> tuple[int, int]:
    """`--dry-run`: the exact topic and payload of every message, one JSON object per line (what
    `districtpulse gateway --replay` publishes). Gateway events and statuses are not readings and are left out."""
    n_msg = n_read = 0
    with path.open("w", encoding="utf-8") as out:
        for msg in messages:
            if not isinstance(msg, Message):
                continue
            out.write(json.dumps({"topic": msg.topic, "payload": msg.payload.decode()}, separators=(",", ":")) + "\n")
            n_msg += 1
            n_read += msg.readings
    return n_msg, n_read

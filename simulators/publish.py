"""Publish simulated messages exactly as gateways do: one paho QoS 1 connection per gateway."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path

from devices import Registry, parse_readings_topic
from gateway import BrokerConfig, Publisher
from simulators.district import Message

log = logging.getLogger(__name__)


def publish_messages(
    messages: Iterable[Message],
    registry: Registry,
    *,
    host: str,
    port: int,
    client_prefix: str = "dp-sim",
    max_inflight: int = 1000,
    pace_ms_per_message: dict[str, int] | None = None,
) -> tuple[int, int]:
    """Publish every message on its gateway's connection; wait for all PUBACKs. Returns (messages, readings)."""
    sent_messages = sent_readings = 0
    with ExitStack() as stack:
        publishers: dict[str, Publisher] = {}
        for gateway_id in registry.gateways:
            pub = Publisher(
                BrokerConfig(host, port, client_id=f"{client_prefix}-{gateway_id}"), max_inflight=max_inflight
            )
            publishers[gateway_id] = stack.enter_context(pub)
        for msg in messages:
            gateway_id = parse_readings_topic(msg.topic).gateway
            publishers[gateway_id].publish(msg.topic, msg.payload)
            sent_messages += 1
            sent_readings += msg.readings
        for pub in publishers.values():
            if not pub.wait_acked(60):
                raise TimeoutError(f"{pub.inflight} messages not acknowledged by the broker within 60 s")
    return sent_messages, sent_readings


def paced(messages: Iterable[tuple[int, Message]], speed: float) -> Iterable[Message]:
    """Yield (sim_time_ms, message) pairs no faster than `speed` times real time (speed <= 0: no pacing)."""
    t0_wall = time.monotonic()
    t0_sim: int | None = None
    for sim_ms, msg in messages:
        if speed > 0:
            t0_sim = sim_ms if t0_sim is None else t0_sim
            due = t0_wall + (sim_ms - t0_sim) / 1000 / speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield msg


def write_jsonl(messages: Iterable[Message], path: Path) -> tuple[int, int]:
    """`--dry-run`: the exact topic and payload of every message, one JSON object per line."""
    n_msg = n_read = 0
    with path.open("w", encoding="utf-8") as out:
        for msg in messages:
            out.write(json.dumps({"topic": msg.topic, "payload": msg.payload.decode()}, separators=(",", ":")) + "\n")
            n_msg += 1
            n_read += msg.readings
    return n_msg, n_read

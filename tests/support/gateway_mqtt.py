"""MQTT on the real broker, as gateways speak it: an MQTT subscriber that records everything, the check that
every spooled reading arrived, a gateway on a thread of its own, and a publisher that sends messages as a
gateway does (QoS 1, from a thread)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices import BATCH_ADAPTER
from devices.topics import confirm_topic
from devices.wire import encode_confirms
from districtpulse.config import Endpoints
from gateway.cli import build_gateway
from gateway.config import GatewayConfig
from gateway.service import Gateway
from tests.support.registries import unique


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class Recorder:
    """Subscribes (QoS 1, clean session) to a gateway's topics and keeps every message, in arrival order.

    With `confirm` (the default) it also stands in for ingest's last step: it confirms every readings message
    it received (`devices.wire`), so that the gateway may delete it from its spool. These tests are about
    what reaches the broker; tests/integration/test_delivery*.py run the real ingest instead."""

    def __init__(self, host: str, port: int, topic_filter: str, *, confirm: bool = True) -> None:
        self.confirm = confirm
        self.confirmed = 0
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"rec-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.connect(host, port)
        self.client.loop_start()
        self.client.subscribe(topic_filter, qos=1)
        assert self._subscribed.wait(10), "no SUBACK"

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(msg.topic, msg.payload, bool(msg.retain)))
        levels = msg.topic.split("/")
        if self.confirm and len(levels) == 6:
            doc = json.loads(msg.payload)
            for payload in encode_confirms({doc["device"]: [tuple(doc["seq"])]}, by="recorder", ts_ms=0):
                self.client.publish(confirm_topic(levels[2], levels[3]), payload, qos=1)
            self.confirmed += 1

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def readings(self) -> int:
        return sum(len(json.loads(m.payload)["readings"]) for m in self.snapshot() if _is_readings(m.topic))

    def statuses(self) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.snapshot() if m.topic.endswith("/status") and m.payload]

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _is_readings(topic: str) -> bool:
    return len(topic.split("/")) == 6  # not the status or confirmation of a gateway


def clear_retained(host: str, port: int, topic: str) -> None:
    """Remove a retained message from the shared broker (an empty retained payload)."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"clr-{uuid.uuid4().hex[:8]}")
    client.connect(host, port)
    client.loop_start()
    client.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


def spooled_counters(spool: Path) -> tuple[dict[str, int], int, dict[str, int]]:
    """(next seq per device, readings left, counters): the spool's own record, read after the gateway exited."""
    with sqlite3.connect(spool) as db:
        next_seq = dict(db.execute("SELECT id, next_seq FROM devices").fetchall())
        left = db.execute("SELECT count(*) FROM readings").fetchone()[0]
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
    return next_seq, left, counters


def check_delivery(messages: list[Received], next_seq: dict[str, int]) -> dict[str, int]:
    """Every seq 0..next_seq-1 of every device arrived, each copy of a seq carries the same reading, and
    every message is a valid v1 batch of consecutive seqs. Returns counts for the report."""
    seen: dict[tuple[str, int], tuple[int, str]] = {}
    copies = 0
    batches = 0
    for m in messages:
        if not _is_readings(m.topic):
            continue
        batch = BATCH_ADAPTER.validate_json(m.payload)
        assert m.topic.split("/")[4] == batch.device
        batches += 1
        for i, reading in enumerate(batch.readings):
            key = (batch.device, batch.seq[0] + i)
            value = (reading.ts, json.dumps(reading.values, sort_keys=True))
            copies += 1
            assert seen.setdefault(key, value) == value, f"seq {key} redelivered with different content"
    for device, n in next_seq.items():
        got = sorted(seq for dev, seq in seen if dev == device)
        assert got == list(range(n)), f"{device}: {n} spooled, missing {sorted(set(range(n)) - set(got))[:20]}"
    assert {dev for dev, _ in seen} == set(next_seq)
    return {"readings": len(seen), "copies": copies, "redelivered": copies - len(seen), "messages": batches}


class GatewayThread:
    """`districtpulse gateway` on a thread of its own, as the tests drive it: built on that thread (the spool's
    SQLite connection belongs to the thread that opens it), stopped with `stop`, its exit code in `result`."""

    def __init__(self, config: GatewayConfig, *, exit_when_idle: bool = False) -> None:
        self.config = config
        self.exit_when_idle = exit_when_idle
        self.stop = threading.Event()
        self.result: list[int] = []
        self._built: list[Gateway] = []
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._serve)

    def _serve(self) -> None:
        try:
            gateway = build_gateway(self.config)
            self._built.append(gateway)
        finally:
            self._ready.set()
        self.result.append(gateway.run(self.stop, exit_when_idle=self.exit_when_idle))

    def start(self) -> Gateway:
        """Start it and return the gateway once built."""
        self.thread.start()
        assert self._ready.wait(30) and self._built, "the gateway was not built"
        return self._built[0]

    def join(self, timeout: float = 30) -> None:
        """Wait for it to end (after `stop`, or by itself when idle) and require a clean exit."""
        self.thread.join(timeout)
        assert not self.thread.is_alive()
        assert self.result == [0]

    def close(self) -> None:
        """Stop it, whatever happened (for `finally`)."""
        self.stop.set()
        self.thread.join(30)


class Publishing:
    """Publish messages at QoS 1 from a thread, optionally paced; `published` counts publish() calls."""

    def __init__(self, endpoints: Endpoints, messages: Sequence[tuple[str, bytes]], pace_s: float = 0.0) -> None:
        self.endpoints, self.messages, self.pace_s = endpoints, messages, pace_s
        self.published = 0
        self.all_acked = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Publishing:
        self._thread.start()
        return self

    def _run(self) -> None:
        from gateway import BrokerConfig, Publisher

        broker = BrokerConfig(self.endpoints.mqtt_host, self.endpoints.mqtt_port, client_id=unique("pub-"))
        try:
            with Publisher(broker, max_inflight=200, drain_timeout=60) as pub:
                for topic, payload in self.messages:
                    pub.publish(topic, payload, timeout=60)
                    self.published += 1
                    if self.pace_s:
                        time.sleep(self.pace_s)
                self.all_acked = pub.wait_acked(60)
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self, timeout: float = 90) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "publisher still running"
        if self.error is not None:
            raise self.error
        assert self.all_acked, "the broker did not acknowledge every message"

"""Acknowledgements are per connection: a PUBACK never acknowledges a message other than the one stored.

The broker keeps message ids per session: after a reconnect it redelivers what was not acknowledged, and
once an id is acknowledged it may reuse it for a new message. These tests drive MqttSource's paho
callbacks directly (no broker) with a fake client that records the PUBACKs it is asked to send. The source,
its paho callbacks and the pipeline's acks all run on the event loop, so an acknowledgement cannot interleave
with a connection switch; the table of owned ids is what makes a late acknowledgement harmless.
"""

from __future__ import annotations

import asyncio

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from ingest.mqtt import Message, MqttConfig, MqttSource


class FakeClient:
    def __init__(self) -> None:
        self.acks: list[tuple[int, int]] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acks.append((mid, qos))


class FakePahoMessage:
    def __init__(self, topic: str, payload: bytes, mid: int, qos: int = 1) -> None:
        self.topic, self.payload, self.mid, self.qos = topic, payload, mid, qos


def _source() -> tuple[MqttSource, FakeClient]:
    source = MqttSource(MqttConfig(client_id="ack-test"))
    fake = FakeClient()
    source._client = fake  # type: ignore[assignment]
    return source, fake


def _deliver(source: MqttSource, mid: int, payload: bytes = b"x", qos: int = 1) -> Message:
    """Deliver like paho's thread would and return the Message the pipeline would get."""
    source._on_message(None, None, FakePahoMessage("dp/v1/d/g/dev/electricity_meter", payload, mid, qos))  # type: ignore[arg-type]
    return source._inbox.pop()


def _disconnect(source: MqttSource) -> None:
    reason = ReasonCode(PacketTypes.DISCONNECT, identifier=0x80)  # unspecified error: the socket broke
    source._on_disconnect(None, None, None, reason, None)  # type: ignore[arg-type]


async def test_a_stale_copy_never_acknowledges_a_reused_message_id() -> None:
    source, fake = _source()
    source._loop = asyncio.get_running_loop()
    source._on_pre_connect(None, None)  # type: ignore[arg-type]

    first = _deliver(source, mid=5, payload=b"A")  # connection 1 delivers A with id 5
    _disconnect(source)
    source._on_pre_connect(None, None)  # type: ignore[arg-type]  # paho reconnects

    # The pipeline finishes storing A only now: its id belongs to the old connection, nothing is sent.
    assert source.ack([first]) == 0
    assert fake.acks == []

    copy = _deliver(source, mid=5, payload=b"A")  # the broker redelivers A on connection 2
    assert source.ack([copy]) == 1
    assert fake.acks == [(5, 1)]

    reused = _deliver(source, mid=5, payload=b"B")  # the broker reuses id 5 for a new message B
    # Late or repeated acks of A (either copy) must not acknowledge B, which is not stored yet.
    assert source.ack([copy]) == 0
    assert source.ack([first]) == 0
    assert fake.acks == [(5, 1)]
    assert source.unacked == 1

    assert source.ack([reused]) == 1  # B stored: now its PUBACK goes out
    assert fake.acks == [(5, 1), (5, 1)]
    assert source.unacked == 0
    assert source.stale_acks_skipped == 3


async def test_qos0_messages_are_never_acknowledged_and_acks_are_sent_once() -> None:
    source, fake = _source()
    source._loop = asyncio.get_running_loop()
    source._on_pre_connect(None, None)  # type: ignore[arg-type]
    m0 = _deliver(source, mid=0, qos=0)
    m1 = _deliver(source, mid=1)
    m2 = _deliver(source, mid=2)
    assert source.ack([m0, m1, m2, m1]) == 2
    assert fake.acks == [(1, 1), (2, 1)]

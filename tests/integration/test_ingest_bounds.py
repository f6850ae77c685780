"""The payload bounds on the real Mosquitto 2.0.11 and InfluxDB 1.6.7: what each bound stops, and that it stops
nothing else.

- Two readings of one device at one `ts` in one message would be one InfluxDB point: the later one is
  quarantined as `duplicate_timestamp`, and every reading counted as stored is a point.
- A `seq` beyond 2^63 - 1 would be refused by InfluxDB (the integer field `seq=...i`) and force a bisection:
  it is quarantined as `invalid_schema` before any write, and no write request fails.
- An oversized message: up to the broker's `max_packet_size` it reaches ingest, which quarantines it whole as
  `too_large` keeping only its start; beyond it the broker disconnects the publisher (MQTT 5 and 3.1.1) and
  acknowledges nothing; ingest's own Maximum Packet Size makes the broker drop a larger message for ingest.
  In every case the readings around it are all stored, and ingest holds nothing afterwards.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices import encode_batch, readings_topic, units_for
from devices.validation import TOO_LARGE_KEPT_BYTES
from devices.wire import MAX_MESSAGE_BYTES, MAX_PACKET_BYTES, MAX_SEQ
from districtpulse.config import Endpoints
from ingest import IngestStats, Pipeline, Quarantine
from ingest.mqtt import MqttSource
from tests.support.gateway_mqtt import Publishing
from tests.support.ingest import ingest_settings
from tests.support.readings import T0, em_messages, em_values
from tests.support.registries import unique, write_registry
from tests.support.services import count_points, drop_database
from tests.support.waiting import wait_until


@dataclass
class Run:
    district: str
    database: str
    topic: str
    stats: IngestStats
    pipeline: Pipeline
    quarantine_path: Path


@asynccontextmanager
async def running(endpoints: Endpoints, tmp_path: Path, **mqtt: Any) -> AsyncIterator[Run]:
    """Ingest in-process for a fresh district and database (dropped after), its session forgotten on exit."""
    district = unique("bd")
    database = f"test_{district}"
    registry = write_registry(tmp_path / "registry.toml", district)
    settings = ingest_settings(
        endpoints, tmp_path, district, database, f"ingest-{district}", mqtt={"session_expiry_s": 0} | mqtt
    )
    stats = IngestStats()
    pipeline = Pipeline(settings, registry, stats=stats)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    topic = readings_topic(district, f"{district}-gw1", f"{district}-em", "electricity_meter")
    try:
        await asyncio.wait_for(pipeline.source.subscribed.wait(), 15)
        yield Run(district, database, topic, stats, pipeline, settings.quarantine)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        drop_database(endpoints, database)


def quarantined(run: Run) -> list[Any]:
    q = Quarantine(run.quarantine_path)
    try:
        return q.rows()
    finally:
        q.close()


async def publish(endpoints: Endpoints, messages: Sequence[tuple[str, bytes]]) -> None:
    await asyncio.to_thread(Publishing(endpoints, messages).start().join)


def assert_nothing_held(run: Run) -> None:
    """Every reading is settled and every message acknowledged: ingest keeps nothing of what it received."""
    source = run.pipeline.source
    assert isinstance(source, MqttSource)
    assert run.stats.inflight_readings == 0
    assert source.unacked == 0
    assert run.stats.messages_acked == run.stats.messages


# --- duplicate timestamps -------------------------------------------------------------------------------------


async def test_every_reading_counted_as_stored_is_a_point(endpoints: Endpoints, tmp_path: Path) -> None:
    async with running(endpoints, tmp_path) as run:
        messages = em_messages(run.district, 30, 10)  # seq 0-29, all distinct ts
        readings = [(T0 + 100_000 + i * 1000, em_values(i)) for i in range(10)]  # seq 30-39 ...
        for i in (4, 7, 9):  # ... three of which repeat the ts of seq 31
            readings[i] = (readings[1][0], readings[i][1])
        repeated = encode_batch(f"{run.district}-em", 30, units_for("electricity_meter"), readings)
        await publish(endpoints, [*messages[:2], (run.topic, repeated), messages[2]])
        await wait_until(lambda: run.stats.messages_acked == 4, 30, "every message acknowledged")

        assert count_points(endpoints, run.database) == run.stats.readings_stored == 37
        assert dict(run.stats.readings_quarantined) == {"duplicate_timestamp": 3}
        rows = quarantined(run)
        assert sorted(row.reading_index for row in rows) == [4, 7, 9]
        assert all(f"ts {readings[1][0]} is the ts of readings[1]" in row.detail for row in rows)
        assert_nothing_held(run)


# --- sequence numbers beyond 64 bits --------------------------------------------------------------------------


async def test_a_seq_beyond_64_bits_is_invalid_schema_and_no_write_fails(endpoints: Endpoints, tmp_path: Path) -> None:
    async with running(endpoints, tmp_path) as run:
        # What the bound saves: InfluxDB refuses the field, so such a reading in a batch forces a bisection.
        line = f"electricity,device=probe seq={MAX_SEQ + 1}i {T0}"
        refused = httpx.post(
            f"{endpoints.influx_url}/write", params={"db": run.database, "precision": "ms"}, content=line
        )
        assert refused.status_code == 400 and "out of range" in refused.text, refused.text
        assert count_points(endpoints, run.database) == 0  # (the database exists: ingest created it)

        messages = em_messages(run.district, 30, 10)
        readings = [(T0 + 100_000 + i * 1000, em_values(i)) for i in range(5)]
        beyond = encode_batch(f"{run.district}-em", MAX_SEQ + 1, units_for("electricity_meter"), readings)
        await publish(endpoints, [messages[0], (run.topic, beyond), *messages[1:]])
        await wait_until(lambda: run.stats.messages_acked == 4, 30, "every message acknowledged")

        assert count_points(endpoints, run.database) == run.stats.readings_stored == 30
        assert dict(run.stats.readings_quarantined) == {"invalid_schema": 5}
        assert run.stats.write_requests == run.stats.batches_written  # not one request refused or retried
        assert run.stats.write_retries == 0
        [row] = quarantined(run)
        assert (row.reason, row.reading_index, row.readings) == ("invalid_schema", None, 5)
        assert str(MAX_SEQ) in row.detail
        assert_nothing_held(run)


# --- oversized messages ---------------------------------------------------------------------------------------


@dataclass
class RawResult:
    client_id: str
    acknowledged: bool
    disconnect: Any  #: the ReasonCode paho reported when the broker ended the connection, None if it did not


def raw_publish(endpoints: Endpoints, topic: str, payload: bytes, protocol: int) -> RawResult:
    """One QoS 1 message from a bare paho client that never reconnects: was it acknowledged, and did the
    broker disconnect it? (A reconnecting client would send the same packet again and be cut off again.)"""
    client_id = unique("raw-")
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    acks: list[Any] = []
    ends: list[Any] = []
    connected: list[bool] = []
    client.on_connect = lambda _c, _u, _f, rc, _p: connected.append(not rc.is_failure)
    client.on_publish = lambda _c, _u, _mid, rc, _p: acks.append(rc)
    client.on_disconnect = lambda _c, _u, _f, rc, _p: ends.append(rc)
    client.connect(endpoints.mqtt_host, endpoints.mqtt_port)
    deadline = time.monotonic() + 15
    while not connected and time.monotonic() < deadline:
        client.loop(0.05)
    assert connected == [True]
    client.publish(topic, payload, qos=1)
    while not acks and not ends and time.monotonic() < deadline:
        client.loop(0.05)
    result = RawResult(client_id, bool(acks) and not acks[0].is_failure, ends[0] if ends else None)
    if not ends:
        client.disconnect()
    return result


def broker_log(endpoints: Endpoints) -> str:
    return (endpoints.state_dir / "mosquitto" / "mosquitto.log").read_text(errors="replace")


async def test_an_oversized_message_is_stopped_and_nothing_else_is_lost(endpoints: Endpoints, tmp_path: Path) -> None:
    async with running(endpoints, tmp_path) as run:
        before, after = em_messages(run.district, 60, 10)[:3], em_messages(run.district, 60, 10)[3:]
        readings = [(T0 + 100_000 + i * 1000, em_values(i)) for i in range(5)]
        batch = encode_batch(f"{run.district}-em", 60, units_for("electricity_meter"), readings)
        over_limit = batch + b" " * (MAX_MESSAGE_BYTES + 1 - len(batch))  # valid JSON, a byte over the limit
        over_packet = batch + b" " * (MAX_PACKET_BYTES - len(batch))  # with its topic: over the broker's bound

        await publish(endpoints, before)
        within = await asyncio.to_thread(raw_publish, endpoints, run.topic, over_limit, mqtt.MQTTv5)
        v5 = await asyncio.to_thread(raw_publish, endpoints, run.topic, over_packet, mqtt.MQTTv5)
        v311 = await asyncio.to_thread(raw_publish, endpoints, run.topic, over_packet, mqtt.MQTTv311)
        await publish(endpoints, after)
        await wait_until(lambda: run.stats.messages_acked == 7, 30, "the 6 good messages and the too_large one")

        # Under the broker's bound: delivered, quarantined whole as too_large, and acknowledged.
        assert within.acknowledged and within.disconnect is None
        # Over it: the broker cuts the publisher off and acknowledges nothing. (To an MQTT 5 client it sends a
        # DISCONNECT "Packet too large" first, but closing with megabytes unread resets the connection, so
        # paho mostly sees only the connection lost: either way a failure.)
        for result in (v5, v311):
            assert not result.acknowledged and result.disconnect is not None and result.disconnect.is_failure
        log = broker_log(endpoints)
        for result in (v5, v311):
            assert f"Client {result.client_id} disconnected due to oversize packet." in log

        assert count_points(endpoints, run.database) == run.stats.readings_stored == 60
        assert dict(run.stats.readings_quarantined) == {"too_large": 1}
        assert run.stats.messages == 7  # the two over the broker's bound never reached ingest
        [row] = quarantined(run)
        assert (row.reason, row.device, row.reading_index, row.readings) == ("too_large", f"{run.district}-em", None, 1)
        assert row.payload == over_limit[:TOO_LARGE_KEPT_BYTES]
        assert f"payload of {MAX_MESSAGE_BYTES + 1} bytes" in row.detail
        assert json.loads(row.errors)[0]["bytes"] == MAX_MESSAGE_BYTES + 1
        assert run.stats.write_requests == run.stats.batches_written
        assert_nothing_held(run)


async def test_the_broker_never_sends_ingest_more_than_its_maximum_packet_size(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    """Mosquitto drops a message larger than a subscriber's Maximum Packet Size for that subscriber (the
    publisher gets its PUBACK): only a NOTICE line in its log says so. Ingest's default sits above the broker's
    own bound so that this never happens; here a small one (64 KiB) shows what it guards against."""
    async with running(endpoints, tmp_path, maximum_packet_size=64 * 1024) as run:
        messages = em_messages(run.district, 20, 10)
        readings = [(T0 + 100_000 + i * 1000, em_values(i)) for i in range(5)]
        batch = encode_batch(f"{run.district}-em", 20, units_for("electricity_meter"), readings)
        large = batch + b" " * (100 * 1024 - len(batch))  # valid, within every bound but ingest's 64 KiB

        await publish(endpoints, [messages[0], (run.topic, large), messages[1]])
        await wait_until(lambda: run.stats.messages_acked == 2, 30, "the two small messages")
        await asyncio.sleep(0.5)  # the large one would have arrived by now

        assert run.stats.messages == 2
        assert count_points(endpoints, run.database) == run.stats.readings_stored == 20
        client_id = f"ingest-{run.district}"
        assert f"Dropping too large outgoing PUBLISH for {client_id} (" in broker_log(endpoints)
        assert_nothing_held(run)

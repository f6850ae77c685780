"""MQTT-native sensors through the real gateway: sensor payloads published on the shared Mosquitto under a
private topic prefix reach the spool through the mqtt_sensors adapter and come out again on the gateway's
own topics as v1 batches with exactly the expected values; bad payloads are counted, never fatal."""

from __future__ import annotations

import json
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices import BATCH_ADAPTER
from districtpulse.config import Endpoints
from gateway.adapters import AdapterContext, build_adapter, parse_adapter_config
from gateway.adapters.mqtt_sensors import MqttSensorsAdapter
from gateway.config import GatewayConfig
from tests.support.gateway_mqtt import GatewayThread, Recorder, clear_retained
from tests.support.net import TcpProxy as Proxy

CASE = Path(__file__).resolve().parents[2] / "gateway" / "adapters" / "mqtt_sensors" / "testcases"
CASE = CASE / "four_vendors_and_bad_payloads"

CONFIG = """
[gateway]
id = "{gateway}"
district = "{district}"
publish_interval_s = 0.05
heartbeat_interval_s = 60

[mqtt]
host = "{host}"
port = {port}

[spool]
path = "spool.sqlite"
commit_interval_ms = 20
"""


def sensors_config(prefix: str, host: str, port: int) -> dict[str, Any]:
    """The test case's adapter table, on the shared broker, every sensor topic under `prefix`."""
    table = tomllib.loads((CASE / "adapter.toml").read_text())
    del table["messages"]
    for sensor in table["sensor"]:
        topics = sensor["topic"] if isinstance(sensor["topic"], list) else [sensor["topic"]]
        sensor["topic"] = [f"{prefix}/{t}" for t in topics]
    return table | {"host": host, "port": port, "subscribe": [f"{prefix}/#"], "client_id": f"{prefix}-sensors"}


def toml_value(value: Any) -> str:
    """A TOML literal (strings, numbers and booleans are written as in JSON)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def to_toml(table: dict[str, Any]) -> str:
    lines = ["[[adapter]]"] + [f"{k} = {toml_value(v)}" for k, v in table.items() if k != "sensor"]
    for sensor in table["sensor"]:
        lines += ["[[adapter.sensor]]"] + [f"{k} = {toml_value(v)}" for k, v in sensor.items()]
    return "\n".join(lines) + "\n"


def test_sensor_payloads_reach_the_spool_and_are_republished(
    endpoints: Endpoints, tmp_path: Path, unique_district: str
) -> None:
    district, gateway_id = unique_district, f"{unique_district}-gw"
    prefix = f"{unique_district}-sensors"
    host, port = endpoints.mqtt_host, endpoints.mqtt_port
    messages = [json.loads(line) for line in (CASE / "messages.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (CASE / "expected.jsonl").read_text().splitlines()]
    retained = [m for m in messages if m.get("retain")]
    live = [m for m in messages if not m.get("retain")]
    assert len(retained) == 1

    sensors = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"{prefix}-pub")
    sensors.connect(host, port)
    sensors.loop_start()
    # Published before the gateway subscribes: the broker hands it over as retained, and it must be skipped.
    sensors.publish(f"{prefix}/{retained[0]['topic']}", retained[0]["payload"], qos=1, retain=True).wait_for_publish(10)

    config_text = CONFIG.format(gateway=gateway_id, district=district, host=host, port=port)
    config = GatewayConfig.from_toml(config_text + to_toml(sensors_config(prefix, host, port)), base_dir=tmp_path)
    recorder = Recorder(host, port, f"dp/v1/{district}/{gateway_id}/#")
    runner = GatewayThread(config)
    try:
        adapter = runner.start().adapters["mqtt_sensors"]
        assert isinstance(adapter, MqttSensorsAdapter)
        assert adapter.subscribed.wait(30), "the adapter did not subscribe"
        recorder.wait_for(lambda: adapter.stats["retained_skipped"] == 1, 10, "the retained message")
        for n, m in enumerate(live, 2):  # one at a time: the readings keep the order of expected.jsonl
            sensors.publish(f"{prefix}/{m['topic']}", m["payload"], qos=1).wait_for_publish(10)
            recorder.wait_for(lambda n=n: adapter.stats["messages"] == n, 10, f"message {n}")
        recorder.wait_for(lambda: recorder.readings() >= len(expected), 30, f"{len(expected)} readings")
        assert adapter.stats == {
            "messages": 13,
            "readings": 7,
            "retained_skipped": 1,
            "bad_json": 1,
            "out_of_range": 1,
            "wrong_type": 3,
            "no_mapped_field": 1,
            "unknown_topic": 1,
            "non_finite": 1,
        }
    finally:
        runner.close()
        sensors.publish(f"{prefix}/{retained[0]['topic']}", b"", qos=1, retain=True).wait_for_publish(10)
        sensors.loop_stop()
        sensors.disconnect()
        recorder.close()
        clear_retained(host, port, f"dp/v1/{district}/{gateway_id}/status")
    assert runner.result == [0]
    got: list[tuple[str, dict[str, Any]]] = []
    for msg in recorder.snapshot():
        if msg.topic.endswith(("/status", "/confirm")):
            continue
        batch = BATCH_ADAPTER.validate_json(msg.payload)
        assert msg.topic == f"dp/v1/{district}/{gateway_id}/{batch.device}/building_sensor"
        assert batch.units == {"temperature": "degC", "relative_humidity": "%", "co2": "ppm", "occupancy": "count"}
        got += [(batch.device, dict(r.values)) for r in batch.readings]
    # per device, in order (the publisher batches per device)
    for device in sorted({e["device"] for e in expected}):
        assert [v for d, v in got if d == device] == [e["values"] for e in expected if e["device"] == device]
    assert len(got) == len(expected)


class ListSink:
    """Keeps what the adapter puts (paho's network thread calls it)."""

    def __init__(self) -> None:
        self.readings: list[dict[str, Any]] = []

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def put(self, device_id: str, values: Any, ts_ms: int | None = None, *, unsynced: bool | None = None) -> None:
        self.readings.append({"device": device_id, "values": dict(values)})

    def put_many(self, device_id: str, readings: Any, *, unsynced: bool = False, cursor: str | None = None) -> None:
        raise AssertionError("not used by mqtt_sensors")

    def cursor(self) -> str | None:
        return None


def test_the_adapter_subscribes_again_after_the_broker_connection_drops(
    endpoints: Endpoints, unique_district: str
) -> None:
    prefix = f"{unique_district}-sensors"
    topic = f"{prefix}/zigbee2mqtt/office-1"
    proxy = Proxy((endpoints.mqtt_host, endpoints.mqtt_port))
    table = {
        "type": "mqtt_sensors",
        "port": proxy.port,
        "client_id": f"{prefix}-sensors",
        "sensor": [{"device": "b1-bs-01", "topic": topic, "fields": {"temperature": "t"}}],
    }
    adapter = build_adapter(parse_adapter_config(table), AdapterContext("gw", "d", (), Path(".")))
    assert isinstance(adapter, MqttSensorsAdapter)
    sink = ListSink()
    stop = threading.Event()
    runner = threading.Thread(target=adapter.run, args=(sink, stop))
    runner.start()
    publisher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"{prefix}-pub")
    publisher.connect(endpoints.mqtt_host, endpoints.mqtt_port)
    publisher.loop_start()

    def wait(predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 20
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)

    try:
        assert adapter.subscribed.wait(20)
        publisher.publish(topic, json.dumps({"t": 21.0}), qos=1).wait_for_publish(10)
        wait(lambda: adapter.stats["readings"] == 1, "the first reading")
        proxy.cut()
        wait(lambda: not adapter.subscribed.is_set(), "the adapter to notice the cut")
        publisher.publish(topic, json.dumps({"t": 22.0}), qos=1).wait_for_publish(10)  # lost: clean session
        proxy.up.set()
        assert adapter.subscribed.wait(20), "the adapter did not subscribe again"
        publisher.publish(topic, json.dumps({"t": 23.0}), qos=1).wait_for_publish(10)
        wait(lambda: adapter.stats["readings"] == 2, "the reading after the reconnection")
    finally:
        stop.set()
        runner.join(20)
        publisher.loop_stop()
        publisher.disconnect()
        proxy.close()
    assert not runner.is_alive()
    assert [r["values"] for r in sink.readings] == [{"temperature": 21.0}, {"temperature": 23.0}]
    assert adapter.stats == {"messages": 2, "readings": 2}


class FailingSink(ListSink):
    def put(self, device_id: str, values: Any, ts_ms: int | None = None, *, unsynced: bool | None = None) -> None:
        raise OSError("disk full")


def test_a_spool_failure_stops_the_adapter_with_the_error(endpoints: Endpoints, unique_district: str) -> None:
    topic = f"{unique_district}-sensors/zigbee2mqtt/office-1"
    table = {
        "type": "mqtt_sensors",
        "host": endpoints.mqtt_host,
        "port": endpoints.mqtt_port,
        "sensor": [{"device": "b1-bs-01", "topic": topic, "fields": {"temperature": "t"}}],
    }
    adapter = build_adapter(parse_adapter_config(table), AdapterContext("gw", "d", (), Path(".")))
    assert isinstance(adapter, MqttSensorsAdapter)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            adapter.run(FailingSink(), threading.Event())
        except OSError as exc:
            errors.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    assert adapter.subscribed.wait(20)
    publisher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"{unique_district}-pub")
    publisher.connect(endpoints.mqtt_host, endpoints.mqtt_port)
    publisher.loop_start()
    try:
        publisher.publish(topic, json.dumps({"t": 21.0}), qos=1).wait_for_publish(10)
        runner.join(20)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
    assert not runner.is_alive()
    assert [str(e) for e in errors] == ["disk full"]

"""The mqtt_sensors adapter without a broker: the field mapping, the checks against the device kinds, the
counting and the bounded logging of bad payloads, and the configuration errors. (The broker path is in
tests/integration/test_gateway_adapter_mqtt_sensors.py.)"""

from __future__ import annotations

import json
import logging
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest

from devices.kinds import DeviceKind
from gateway.adapters import AdapterContext, DeviceRef, build_adapter, parse_adapter_config
from gateway.adapters.mqtt_sensors import MqttSensorsAdapter
from gateway.errors import ConfigError
from tests.support.adapter_sink import T0, CollectingSink

CASE = Path(__file__).resolve().parents[2] / "gateway" / "adapters" / "mqtt_sensors" / "testcases"
CASE = CASE / "four_vendors_and_bad_payloads"


def make(table: dict[str, Any], base_dir: Path, registry: tuple[DeviceRef, ...] = ()) -> MqttSensorsAdapter:
    adapter = build_adapter(parse_adapter_config(table), AdapterContext("gw", "d", registry, base_dir))
    assert isinstance(adapter, MqttSensorsAdapter)
    return adapter


def sensor(**overrides: Any) -> dict[str, Any]:
    return {"device": "s1", "topic": "z2m/s1", "fields": {"temperature": "temperature"}} | overrides


def test_the_test_case_counts_every_bad_payload_by_reason() -> None:
    adapter = make(tomllib.loads((CASE / "adapter.toml").read_text()), CASE)
    sink = CollectingSink()
    adapter.run(sink, threading.Event())
    assert len(sink.readings) == 7
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
    # a device with two topics (Shelly Plus H&T) is one device
    assert [(d.id, d.kind) for d in adapter.devices()] == [
        (f"b1-bs-0{i}", DeviceKind.BUILDING_SENSOR) for i in range(1, 5)
    ]


def test_bad_payloads_are_logged_truncated_on_the_1st_2nd_4th_8th_time(caplog: pytest.LogCaptureFixture) -> None:
    adapter = make({"type": "mqtt_sensors", "sensor": [sensor()]}, Path("."))
    sink = CollectingSink()
    with caplog.at_level(logging.WARNING, logger="gateway.adapters.mqtt_sensors"):
        for _ in range(9):
            adapter.handle("z2m/s1", b"<" * 5000, sink)
    assert adapter.stats["bad_json"] == 9
    assert [r.getMessage().split(" (")[1].split(" ")[0] for r in caplog.records] == ["1", "2", "4", "8"]
    assert all(len(r.getMessage()) < 500 for r in caplog.records)
    assert sink.readings == []


def test_values_are_checked_one_by_one() -> None:
    fields = {"temperature": "t", "relative_humidity": "list.1", "co2": "co2", "occupancy": "n"}
    adapter = make({"type": "mqtt_sensors", "sensor": [sensor(fields=fields)]}, Path("."))
    sink = CollectingSink()
    cases: list[Any] = [
        {"t": 21.5, "list": [0, 55], "co2": 10**400, "n": 3},  # an integer too large for a float: wrong_type
        {"t": -31.0, "co2": 10001, "n": "4"},  # both out of range; a numeric string is a number
        {"t": {"v": 1}},  # an object: wrong_type
        [1, 2],  # JSON, but not an object: nothing mapped
    ]
    for doc in cases:
        adapter.handle("z2m/s1", json.dumps(doc).encode(), sink)
    adapter.handle("z2m/s1", b"x" * (64 * 1024 + 1), sink)
    assert sink.readings == [
        {"device": "s1", "ts": T0, "values": {"temperature": 21.5, "relative_humidity": 55.0, "occupancy": 3.0}},
        {"device": "s1", "ts": T0 + 1000, "values": {"occupancy": 4.0}},
    ]
    assert adapter.stats == {
        "messages": 5,
        "readings": 2,
        "wrong_type": 2,
        "out_of_range": 2,
        "no_mapped_field": 1,
        "too_large": 1,
    }


def test_units_are_converted_to_the_kinds() -> None:
    fields = {"temperature": {"path": "T", "unit": "degF"}}
    adapter = make({"type": "mqtt_sensors", "sensor": [sensor(fields=fields)]}, Path("."))
    sink = CollectingSink()
    for fahrenheit in (68.0, 73.4, -22.0, 212.0):
        adapter.handle("z2m/s1", json.dumps({"T": fahrenheit}).encode(), sink)
    assert [r["values"] for r in sink.readings] == [
        {"temperature": 20.0},
        {"temperature": 23.0},
        {"temperature": -30.0},
    ]
    assert adapter.stats["out_of_range"] == 1  # 100 degC indoors


@pytest.mark.parametrize(
    ("table", "registry", "error"),
    [
        ({"sensor": [sensor(fields={"power": "p"})]}, (), "power is not a metric of building_sensor"),
        (
            {"sensor": [sensor(fields={"temperature": {"path": "t", "unit": "K"}})]},
            (),
            "cannot convert 'K' to 'degC'",
        ),
        ({"sensor": [sensor(topic="z2m/+")]}, (), "a sensor's topic is exact"),
        ({"sensor": [sensor(), sensor(device="s2")]}, (), "a topic appears twice"),
        ({"sensor": [sensor()]}, (DeviceRef("s9", DeviceKind.BUILDING_SENSOR),), "s1 is not assigned to gateway gw"),
        (
            {"sensor": [sensor(kind="weather_station")]},
            (DeviceRef("s1", DeviceKind.BUILDING_SENSOR),),
            "s1 is a building_sensor in the registry",
        ),
        ({"sensor": [sensor()], "password_file": "pw"}, (), "password_file needs a username"),
        ({"sensor": [sensor()], "username": "u", "password_file": "nope"}, (), "password_file: cannot read"),
        ({"sensor": [sensor()], "messages": "nope.jsonl"}, (), "no such file"),
    ],
)
def test_config_errors(table: dict[str, Any], registry: tuple[DeviceRef, ...], error: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=error):
        make({"type": "mqtt_sensors"} | table, tmp_path, registry)


def test_the_kind_comes_from_the_registry(tmp_path: Path) -> None:
    registry = (DeviceRef("s1", DeviceKind.WEATHER_STATION),)
    adapter = make(
        {"type": "mqtt_sensors", "sensor": [sensor(fields={"outdoor_temperature": "temperature"})]}, tmp_path, registry
    )
    assert list(adapter.devices()) == list(registry)

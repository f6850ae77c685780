"""The published wire contract (docs/contract): the AsyncAPI document is valid AsyncAPI 3.0.0, its JSON Schemas
are valid draft 2020-12 and are what `devices.contract` builds from the code, every example passes the real
validators and its schema, the real encoders' output passes the schemas, and what the real validators reject
the schemas reject too, except the rules a JSON Schema cannot express (listed, and checked to be the only
gaps)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from referencing import Registry as SchemaRegistry
from referencing import Resource
from ruamel.yaml import YAML

from devices import KINDS, DeviceKind, Registry, demo_registry_path, encode_batch, readings_topic, units_for
from devices.contract import SCHEMAS, render
from devices.validation import Reason, validate_message
from devices.wire import (
    MAX_CONFIRM_BYTES,
    MAX_READINGS_PER_BATCH,
    MAX_SEQ,
    REASON_SHUTDOWN,
    ConfirmError,
    Eviction,
    EvictionError,
    decode_confirm,
    decode_eviction,
    encode_confirms,
    encode_eviction,
)
from gateway.adapters import Adapter
from gateway.clock import Clock
from gateway.publisher import Will
from gateway.service import Gateway, Timing, encode_message
from gateway.spool import Spool, SpooledReading, encode_values
from simulators.status import StatusEvent
from simulators.status import encode_status as simulated_status
from tests.support.gateway_fakes import FakePublisher, FixedClock, ListAdapter

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "contract"
VENDORED = CONTRACT / "vendor" / "asyncapi-3.0.0" / "asyncapi.json"
VENDORED_SHA256 = "1786a007ac00344a8f529e5a6fc5db786b0be6757e0b94a8b95a8a6a52b7fe9a"
#: ingest's clock for the examples (which are from 2025-11-23).
NOW = 1_763_860_000_000
DEMO = Registry.load(demo_registry_path())
Validator = jsonschema.Draft202012Validator


def strict_json(payload: bytes) -> Any:
    """JSON as RFC 8259 has it: no NaN or Infinity (Python's json module reads them by default)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(payload, parse_constant=refuse)


def load_document() -> dict[str, Any]:
    doc = YAML(typ="safe", pure=True).load((CONTRACT / "asyncapi.yaml").read_text(encoding="utf-8"))
    return cast(dict[str, Any], doc)


def load_schemas() -> dict[str, dict[str, Any]]:
    return {name: json.loads((CONTRACT / name).read_text(encoding="utf-8")) for name in SCHEMAS}


SCHEMA_FILES = load_schemas()
RESOURCES = SchemaRegistry().with_resources(
    (schema["$id"], Resource.from_contents(schema)) for schema in SCHEMA_FILES.values()
)


def validator(name: str, fragment: str = "") -> jsonschema.protocols.Validator:
    """A validator for a schema file (or a `#/$defs/...` part of it), its references resolved."""
    return Validator({"$ref": SCHEMA_FILES[name]["$id"] + fragment}, registry=RESOURCES)


READINGS = validator("readings-batch.schema.json")
STATUS = validator("gateway-status.schema.json")
CONFIRMATION = validator("confirmation.schema.json")
EVICTION = validator("eviction-notice.schema.json")


def kind_schema(kind: DeviceKind) -> jsonschema.protocols.Validator:
    """The schema of a readings topic of this kind."""
    return validator("readings-batch.schema.json", f"#/$defs/{kind.value}")


def schema_rejects(check: jsonschema.protocols.Validator, payload: bytes) -> bool:
    try:
        doc = strict_json(payload)
    except ValueError:  # also UnicodeDecodeError
        return True
    return not check.is_valid(doc)


def assert_valid(check: jsonschema.protocols.Validator, doc: Any) -> None:
    error = jsonschema.exceptions.best_match(check.iter_errors(doc))
    assert error is None, f"{error.json_path}: {error.message}" if error else ""


def topic_of(device_id: str) -> str:
    device = DEMO.devices[device_id]
    return readings_topic(device.district, device.gateway, device.id, device.kind)


def real_validator_accepts(device_id: str, payload: bytes) -> bool:
    result = validate_message(topic_of(device_id), payload, DEMO, now_ms=NOW)
    return not result.rejected and len(result.good) == len(strict_json(payload)["readings"])


# -- the documents ----------------------------------------------------------------------------------------------
def test_the_vendored_asyncapi_schema_is_the_official_file() -> None:
    assert hashlib.sha256(VENDORED.read_bytes()).hexdigest() == VENDORED_SHA256
    assert VENDORED_SHA256 in (VENDORED.parent / "VERSION").read_text()
    assert (VENDORED.parent / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_the_document_is_valid_asyncapi_3_0_0() -> None:
    official = json.loads(VENDORED.read_text(encoding="utf-8"))
    assert official["$id"] == "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
    check = jsonschema.validators.validator_for(official)(official)
    doc = load_document()
    assert_valid(check, doc)
    assert doc["asyncapi"] == "3.0.0"
    # The guard: the official schema does reject a document that is not AsyncAPI 3.0.0.
    assert not check.is_valid({**doc, "asyncapi": "2.6.0"})
    broken = json.loads(json.dumps(doc))
    broken["operations"]["gatewayPublishesReadings"]["action"] = "publish"  # the 2.x verb
    assert not check.is_valid(broken)


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    target, _, pointer = ref.partition("#")
    node: Any = doc if not target else json.loads((CONTRACT / target).read_text(encoding="utf-8"))
    for part in filter(None, pointer.split("/")):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_reference_resolves_and_each_message_has_its_schema_file() -> None:
    doc = load_document()
    refs = set(references(doc))
    for ref in refs:
        resolve(doc, ref)
    assert {ref for ref in refs if not ref.startswith("#")} == {f"./{name}" for name in SCHEMAS}
    for channel in doc["channels"].values():
        for message in channel["messages"].values():
            assert resolve(doc, message["$ref"])["payload"]["schemaFormat"] == "application/schema+json;version=2020-12"
    kinds = doc["channels"]["readings"]["parameters"]["kind"]["enum"]
    assert kinds == [kind.value for kind in DeviceKind]
    bindings = {name: op["bindings"]["mqtt"] for name, op in doc["operations"].items()}
    assert {name: (b["qos"], b.get("retain")) for name, b in bindings.items()} == {
        "gatewayPublishesReadings": (1, False),
        "ingestReceivesReadings": (1, None),
        "gatewayPublishesStatus": (1, True),
        "dashboardReceivesStatus": (1, None),
        "ingestConfirms": (1, False),
        "gatewayReceivesConfirmations": (1, None),
        "gatewayPublishesEvictions": (1, False),
        "ingestReceivesEvictions": (1, None),
    }


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_each_schema_is_valid_draft_2020_12_and_what_the_code_builds(name: str) -> None:
    schema = SCHEMA_FILES[name]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Validator.check_schema(schema)
    assert (CONTRACT / name).read_text(encoding="utf-8") == render(SCHEMAS[name]()), (
        f"docs/contract/{name} is out of date: run `python -m devices.contract`"
    )


# -- the examples -------------------------------------------------------------------------------------------------
def examples(message: str) -> list[dict[str, Any]]:
    found = load_document()["components"]["messages"][message]["examples"]
    assert found, f"{message} has no examples"
    return cast(list[dict[str, Any]], found)


@pytest.mark.parametrize("example", examples("readingsBatch"), ids=lambda e: e["name"])
def test_a_readings_example_passes_ingest_and_the_schemas(example: dict[str, Any]) -> None:
    payload = json.dumps(example["payload"]).encode()
    device = DEMO.devices[example["payload"]["device"]]
    assert topic_of(device.id) in example["summary"].replace("\n", " ")
    assert real_validator_accepts(device.id, payload)
    assert_valid(READINGS, example["payload"])
    assert_valid(kind_schema(device.kind), example["payload"])


@pytest.mark.parametrize("example", examples("gatewayStatus"), ids=lambda e: e["name"])
def test_a_status_example_passes_the_schema(example: dict[str, Any]) -> None:
    assert_valid(STATUS, example["payload"])
    gateway = DEMO.devices_of_gateway(example["payload"]["gateway"])
    assert gateway and gateway[0].district == example["payload"]["district"]


@pytest.mark.parametrize("example", examples("confirmation"), ids=lambda e: e["name"])
def test_a_confirmation_example_passes_decode_confirm_and_the_schema(example: dict[str, Any]) -> None:
    payload = json.dumps(example["payload"]).encode()
    assert decode_confirm(payload) == {d: [tuple(r) for r in rs] for d, rs in example["payload"]["confirmed"].items()}
    assert_valid(CONFIRMATION, example["payload"])


@pytest.mark.parametrize("example", examples("evictionNotice"), ids=lambda e: e["name"])
def test_an_eviction_example_passes_decode_eviction_and_the_schema(example: dict[str, Any]) -> None:
    doc = example["payload"]
    notice = decode_eviction(json.dumps(doc).encode())
    assert (notice.device, notice.first, notice.last, notice.first_ts) == (
        doc["device"],
        *doc["seq"],
        doc["evicted"]["ts"][0],
    )
    assert notice.device in DEMO.devices
    assert_valid(EVICTION, doc)


def test_the_eviction_encoder_writes_what_the_schema_and_the_decoder_accept() -> None:
    notice = Eviction("b1-em-main", 0, MAX_SEQ, 0, MAX_SEQ, "age", "event")
    payload = encode_eviction(notice)
    assert decode_eviction(payload) == notice
    assert_valid(EVICTION, strict_json(payload))
    for bad in (
        payload.replace(b'"age"', b'"full"'),
        payload.replace(b"[0,", b"[-1,", 1),
        payload.replace(b'"class":"event"', b'"class":"event","extra":1'),
    ):
        assert schema_rejects(EVICTION, bad)
        with pytest.raises(EvictionError):
            decode_eviction(bad)


# -- the real encoders ---------------------------------------------------------------------------------------------
#: One demo device per kind.
BY_KIND = {kind: next(d for d in DEMO if d.kind is kind) for kind in DeviceKind}
T0 = 1_763_856_000_000


def edge_values(kind: DeviceKind) -> list[dict[str, float | str]]:
    """Every metric of a kind at its lower and upper bound, and in between."""
    rows: list[dict[str, float | str]] = [{}, {}, {}]
    for name, spec in KINDS[kind].metrics.items():
        if spec.type == "str":
            choices = sorted(spec.choices) if spec.choices else ["", "x" * spec.max_length, "s-17"]
            picks: list[float | str] = [choices[0], choices[-1], choices[len(choices) // 2]]
        else:
            picks = [float(spec.min), float(spec.max), (spec.min + spec.max) / 2]
        for row, value in zip(rows, picks, strict=True):
            row[name] = value
    return rows


@pytest.mark.parametrize("kind", list(DeviceKind))
@pytest.mark.parametrize("unsynced", [False, True])
def test_encode_batch_and_the_gateways_encoder_write_what_the_schemas_accept(kind: DeviceKind, unsynced: bool) -> None:
    device = BY_KIND[kind]
    readings = [(T0 + 60_000 * i, values) for i, values in enumerate(edge_values(kind))]
    units = units_for(kind)
    rows = [SpooledReading(41 + i, ts, unsynced, encode_values(v)) for i, (ts, v) in enumerate(readings)]
    for payload in (
        encode_batch(device.id, 41, units, readings, clock_unsynced=unsynced),
        encode_message(device.id, json.dumps(units, separators=(",", ":")), rows),
    ):
        assert real_validator_accepts(device.id, payload)
        assert_valid(READINGS, strict_json(payload))
        assert_valid(kind_schema(kind), strict_json(payload))
        assert ('"clock":"unsynced"' in payload.decode()) is unsynced


def test_what_a_running_gateway_publishes_passes_the_schemas(tmp_path: Path) -> None:
    """The gateway service itself: its readings, its online and shutdown status, and its Last Will."""
    devices = [(d.id, d.kind) for d in DEMO.devices_of_gateway("gw-b1")]
    readings = [
        (d, T0 + 1000 * i + j, values)  # one device's two readings at two times (a repeated ts is rejected)
        for i, (d, k) in enumerate(devices)
        for j, values in enumerate(edge_values(k)[:2])
    ]
    publishers: list[FakePublisher] = []

    def make(on_ack: Any, will: Will, subscriptions: Any) -> FakePublisher:
        publishers.append(FakePublisher(on_ack, will, subscriptions))
        return publishers[-1]

    spool = Spool(tmp_path / "spool.sqlite", now_ms=lambda: T0)
    adapter = cast(Adapter, ListAdapter(devices, readings))
    gateway = Gateway("gw-b1", "demo", spool, {"list": adapter}, make, cast(Clock, FixedClock(NOW)), Timing(0.01, 0.01))
    stop = threading.Event()
    timer = threading.Timer(20, stop.set)
    timer.start()
    try:
        assert gateway.run(stop, exit_when_idle=True) == 0
    finally:
        timer.cancel()
    (pub,) = publishers
    statuses = [json.loads(s.payload) for s in pub.sent if s.topic == "dp/v1/demo/gw-b1/status"]
    batches = [s for s in pub.sent if s.topic != "dp/v1/demo/gw-b1/status"]
    assert [s["state"] for s in statuses] == ["online", "offline"]
    assert statuses[-1]["reason"] == REASON_SHUTDOWN
    assert sum(len(json.loads(s.payload)["readings"]) for s in batches) == len(readings)
    for status in statuses:
        assert_valid(STATUS, status)
    assert pub.will.topic == "dp/v1/demo/gw-b1/status"
    will = json.loads(pub.will.payload)
    assert_valid(STATUS, will)
    assert will["state"] == "offline" and "spool" not in will
    for sent in batches:
        doc = strict_json(sent.payload)
        assert sent.topic == topic_of(doc["device"])
        assert real_validator_accepts(doc["device"], sent.payload)
        assert_valid(kind_schema(DEMO.devices[doc["device"]].kind), doc)


@pytest.mark.parametrize(
    ("state", "reason"), [("online", None), ("offline", "shutdown"), ("offline", "connection lost")]
)
def test_the_simulated_gateways_status_passes_the_schema(state: str, reason: str | None) -> None:
    event = StatusEvent("gw-b1", "demo", T0, state, reason, started_ms=T0 - 5000, spool_readings=3, oldest_ms=T0 - 900)
    assert_valid(STATUS, json.loads(simulated_status(event, now_ms=NOW)))
    assert_valid(STATUS, json.loads(simulated_status(event, now_ms=NOW, with_sim_ts=False)))


device_ids = st.sampled_from(["b1-em-main", "b1-ev-01", "gw.2_x-Y", "0"])
ranges = st.lists(
    st.tuples(st.integers(0, MAX_SEQ), st.integers(0, 50)).map(lambda r: (r[0], min(MAX_SEQ, r[0] + r[1]))),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(
    confirmed=st.dictionaries(device_ids, ranges, min_size=1), max_bytes=st.sampled_from([120, 400, MAX_CONFIRM_BYTES])
)
def test_encode_confirms_writes_what_the_schema_and_decode_confirm_accept(
    confirmed: dict[str, list[tuple[int, int]]], max_bytes: int
) -> None:
    docs = encode_confirms(confirmed, by="ingest-1", ts_ms=NOW, max_bytes=max_bytes)
    assert docs
    for payload in docs:
        assert_valid(CONFIRMATION, strict_json(payload))
        decode_confirm(payload)


# -- what the real validators reject -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bad:
    """A payload the real validator rejects (with `reason`); `expressible=False`: one no JSON Schema can reject."""

    name: str
    device: str
    doc: Any
    reason: Reason
    expressible: bool = True

    def payload(self) -> bytes:
        return self.doc if isinstance(self.doc, bytes) else json.dumps(self.doc).encode()


def batch(of: str = "b1-em-main", **changes: Any) -> dict[str, Any]:
    """A good batch of device `of`, with `changes`."""
    kind = DEMO.devices[of].kind
    doc: dict[str, Any] = {
        "v": 1,
        "device": of,
        "seq": [5, 5],
        "units": units_for(kind),
        "readings": [{"ts": T0, "values": edge_values(kind)[2]}],
    }
    doc.update(changes)
    return doc


def reading(**values: Any) -> list[dict[str, Any]]:
    return [{"ts": T0, "values": values}]


EM, EV = "b1-em-main", "b1-ev-01"
BAD_READINGS = [
    Bad("not_json", EM, b'{"v": 1, "device": ', Reason.DECODE_ERROR),
    Bad("nan", EM, json.dumps(batch(readings=reading(power=float("nan")))).encode(), Reason.NON_FINITE),
    Bad("infinity", EM, json.dumps(batch(readings=reading(power=float("inf")))).encode(), Reason.NON_FINITE),
    Bad("version_2", EM, batch(v=2), Reason.UNSUPPORTED_SCHEMA_VERSION),
    Bad("extra_member", EM, batch(gateway="gw-b1"), Reason.INVALID_SCHEMA),
    Bad("no_readings_member", EM, {k: v for k, v in batch().items() if k != "readings"}, Reason.INVALID_SCHEMA),
    Bad("no_readings", EM, batch(readings=[]), Reason.INVALID_SCHEMA),
    Bad("negative_seq", EM, batch(seq=[-1, -1]), Reason.INVALID_SCHEMA),
    Bad("seq_of_three", EM, batch(seq=[5, 5, 5]), Reason.INVALID_SCHEMA),
    Bad("seq_as_strings", EM, batch(seq=["5", "5"]), Reason.INVALID_SCHEMA),
    Bad("clock_synced", EM, batch(clock="synced"), Reason.INVALID_SCHEMA),
    Bad("device_too_long", EM, batch(device="d" * 65), Reason.INVALID_SCHEMA),
    Bad("device_not_an_id", EM, batch(device="b1 em main"), Reason.DEVICE_MISMATCH),
    Bad("unit_not_a_string", EM, batch(units={"power": 1}), Reason.INVALID_SCHEMA),
    Bad(
        "reading_extra_member",
        EM,
        batch(readings=[{"ts": T0, "values": {"power": 1.0}, "q": 1}]),
        Reason.INVALID_READING,
    ),
    Bad("ts_fraction", EM, batch(readings=[{"ts": T0 + 0.5, "values": {"power": 1.0}}]), Reason.INVALID_READING),
    Bad("ts_string", EM, batch(readings=[{"ts": str(T0), "values": {"power": 1.0}}]), Reason.INVALID_READING),
    Bad("ts_negative", EM, batch(readings=[{"ts": -1, "values": {"power": 1.0}}]), Reason.INVALID_READING),
    Bad("no_values", EM, batch(readings=reading()), Reason.INVALID_READING),
    Bad("value_null", EM, batch(readings=reading(power=None)), Reason.INVALID_READING),
    Bad("value_bool", EM, batch(readings=reading(power=True)), Reason.INVALID_READING),
    Bad("value_list", EM, batch(readings=reading(power=[1.0])), Reason.INVALID_READING),
    Bad("unknown_metric", EM, batch(readings=reading(watts=1.0)), Reason.UNKNOWN_METRIC),
    Bad(
        "unknown_unit_metric", EM, batch(units={**units_for("electricity_meter"), "watts": "W"}), Reason.UNKNOWN_METRIC
    ),
    Bad("wrong_unit", EM, batch(units={**units_for("electricity_meter"), "power": "kW"}), Reason.WRONG_UNIT),
    Bad("out_of_range", EM, batch(readings=reading(voltage=5000.0)), Reason.OUT_OF_RANGE),
    Bad("below_range", EM, batch(readings=reading(energy_import=-1.0)), Reason.OUT_OF_RANGE),
    Bad("string_for_number", EM, batch(readings=reading(power="high")), Reason.WRONG_TYPE),
    Bad("number_for_string", EV, batch(EV, readings=reading(connector_status=1.0)), Reason.WRONG_TYPE),
    Bad("unknown_status", EV, batch(EV, readings=reading(connector_status="Parked")), Reason.OUT_OF_RANGE),
    Bad("session_id_too_long", EV, batch(EV, readings=reading(session_id="s" * 65)), Reason.OUT_OF_RANGE),
    Bad("metric_of_another_kind", EM, batch(units={"co2": "ppm"}, readings=reading(co2=500.0)), Reason.UNKNOWN_METRIC),
    Bad(
        "too_many_readings",
        EM,
        batch(seq=[0, MAX_READINGS_PER_BATCH], readings=reading(power=1.0) * (MAX_READINGS_PER_BATCH + 1)),
        Reason.INVALID_SCHEMA,
    ),
    # What only the real validator can check: the schema accepts these.
    Bad("seq_does_not_cover_readings", EM, batch(seq=[5, 9]), Reason.INVALID_SCHEMA, expressible=False),
    Bad(
        "ts_written_as_float",
        EM,
        batch(readings=[{"ts": float(T0), "values": {"power": 1.0}}]),
        Reason.INVALID_READING,
        expressible=False,
    ),
    Bad("unit_not_declared", EM, batch(units={}), Reason.WRONG_UNIT, expressible=False),
    Bad("not_the_topics_device", EM, batch(device="b1-em-sub1"), Reason.DEVICE_MISMATCH, expressible=False),
    Bad(
        "future_timestamp",
        EM,
        batch(readings=[{"ts": NOW + 3_600_000, "values": {"power": 1.0}}]),
        Reason.FUTURE_TIMESTAMP,
        expressible=False,
    ),
    Bad(
        "before_commissioning",
        EM,
        batch(readings=[{"ts": 1_600_000_000_000, "values": {"power": 1.0}}]),
        Reason.BEFORE_COMMISSIONING,
        expressible=False,
    ),
]


@pytest.mark.parametrize("bad", BAD_READINGS, ids=lambda b: b.name)
def test_a_batch_ingest_rejects_is_rejected_by_the_schema_of_its_topic(bad: Bad) -> None:
    payload = bad.payload()
    result = validate_message(topic_of(bad.device), payload, DEMO, now_ms=NOW)
    assert {r.reason for r in result.rejected} == {bad.reason}
    check = kind_schema(DEMO.devices[bad.device].kind)
    assert schema_rejects(check, payload) is bad.expressible, (
        "the schema should reject it" if bad.expressible else "a gap that is not one any more: set expressible"
    )
    if bad.name == "metric_of_another_kind":  # valid for a building sensor: only the topic's kind rejects it
        assert not schema_rejects(READINGS, payload)
    else:
        assert schema_rejects(READINGS, payload) is bad.expressible


def confirm(**changes: Any) -> dict[str, Any]:
    return {"v": 1, "ts": NOW, "by": "ingest-1", "confirmed": {"b1-em-main": [[1, 5]]}, **changes}


def ranges_of(*r: Any) -> dict[str, Any]:
    return confirm(confirmed={"b1-em-main": list(r)})


BAD_CONFIRMS = [
    Bad("not_json", "", b'{"v": 1, "confirmed": {', Reason.DECODE_ERROR),
    Bad("not_an_object", "", [1, 2], Reason.INVALID_SCHEMA),
    Bad("version_2", "", confirm(v=2), Reason.INVALID_SCHEMA),
    Bad("no_confirmed", "", {k: v for k, v in confirm().items() if k != "confirmed"}, Reason.INVALID_SCHEMA),
    Bad("confirmed_a_list", "", confirm(confirmed=[["b1-em-main", 1, 5]]), Reason.INVALID_SCHEMA),
    Bad("ranges_not_a_list", "", confirm(confirmed={"b1-em-main": {"1": 5}}), Reason.INVALID_SCHEMA),
    Bad("range_of_three", "", ranges_of([1, 2, 3]), Reason.INVALID_SCHEMA),
    Bad("range_of_one", "", ranges_of([1]), Reason.INVALID_SCHEMA),
    Bad("range_not_a_list", "", ranges_of(7), Reason.INVALID_SCHEMA),
    Bad("fraction", "", ranges_of([1.5, 2]), Reason.INVALID_SCHEMA),
    Bad("bool", "", ranges_of([True, 2]), Reason.INVALID_SCHEMA),
    Bad("string", "", ranges_of(["1", "2"]), Reason.INVALID_SCHEMA),
    Bad("negative", "", ranges_of([-1, 2]), Reason.INVALID_SCHEMA),
    Bad("past_max_seq", "", ranges_of([1, MAX_SEQ + 1]), Reason.INVALID_SCHEMA),
    # What only decode_confirm can check: the schema accepts these.
    Bad("first_after_last", "", ranges_of([5, 3]), Reason.INVALID_SCHEMA, expressible=False),
    Bad("written_as_float", "", ranges_of([1.0, 2]), Reason.INVALID_SCHEMA, expressible=False),
    Bad("over_64_kib", "", confirm(by="x" * MAX_CONFIRM_BYTES), Reason.INVALID_SCHEMA, expressible=False),
]


@pytest.mark.parametrize("bad", BAD_CONFIRMS, ids=lambda b: b.name)
def test_a_confirmation_decode_confirm_rejects_is_rejected_by_the_schema(bad: Bad) -> None:
    with pytest.raises(ConfirmError):
        decode_confirm(bad.payload())
    assert schema_rejects(CONFIRMATION, bad.payload()) is bad.expressible


ONLINE = examples("gatewayStatus")[0]["payload"]
WILL = examples("gatewayStatus")[2]["payload"]


@pytest.mark.parametrize(
    ("name", "doc"),
    [
        ("unknown_state", {**ONLINE, "state": "sleeping"}),
        ("online_with_a_reason", {**ONLINE, "reason": "shutdown"}),
        ("offline_without_a_reason", {**ONLINE, "state": "offline"}),
        ("unknown_reason", {**WILL, "reason": "tired"}),
        ("a_will_with_a_heartbeat", {**ONLINE, "state": "offline", "reason": "connection lost"}),
        ("online_without_a_heartbeat", {**WILL, "state": "online", "reason": None}),
        ("heartbeat_incomplete", {k: v for k, v in ONLINE.items() if k != "spool"}),
        ("unknown_sync_state", {**ONLINE, "clock": {**ONLINE["clock"], "sync": "maybe"}}),
        ("negative_count", {**ONLINE, "published": {**ONLINE["published"], "messages": -1}}),
        ("unknown_adapter_state", {**ONLINE, "adapters": {"modbus": "sleeping"}}),
        ("extra_member", {**ONLINE, "battery": 0.5}),
        ("gateway_not_an_id", {**ONLINE, "gateway": "gw b1"}),
        ("version_2", {**ONLINE, "v": 2}),
    ],
)
def test_a_status_the_contract_does_not_allow_is_rejected(name: str, doc: dict[str, Any]) -> None:
    doc = {k: v for k, v in doc.items() if v is not None}
    assert not STATUS.is_valid(doc), name

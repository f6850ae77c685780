"""Every kind of bad input is rejected with its own reason, and never costs the good readings beside it."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from devices import Reason, Registry, encode_batch, readings_topic, units_for, validate_message
from devices.validation import TOO_LARGE_KEPT_BYTES, kept_payload
from devices.wire import MAX_MESSAGE_BYTES, MAX_READINGS_PER_BATCH

NOW = 1_790_000_000_000  # 2026-09-21, after every commissioning date in the test registry
EM_UNITS = {"energy_import": "kWh", "energy_export": "kWh", "power": "W", "voltage": "V"}


@pytest.fixture
def registry(make_registry: Callable[[str], Registry]) -> Registry:
    return make_registry("d1")


def em_values(i: int = 0) -> dict[str, float | str]:
    return {"energy_import": 100.0 + i, "energy_export": 0.0, "power": 1500.0, "voltage": 230.1}


def em_payload(readings: list[dict[str, Any]], **overrides: Any) -> bytes:
    doc: dict[str, Any] = {"v": 1, "device": "d1-em", "seq": [10, 10 + len(readings) - 1], "units": EM_UNITS}
    doc["readings"] = readings
    doc.update(overrides)
    return json.dumps(doc, allow_nan=True).encode()


EM_TOPIC = "dp/v1/d1/d1-gw1/d1-em/electricity_meter"


def check(registry: Registry, payload: bytes, topic: str = EM_TOPIC) -> tuple[int, list[tuple[Reason, int | None]]]:
    result = validate_message(topic, payload, registry, now_ms=NOW)
    return len(result.good), [(r.reason, r.index) for r in result.rejected]


def test_a_valid_batch_passes_whole_with_its_sequence_numbers(registry: Registry) -> None:
    readings = [(NOW - 60_000 * (3 - i), em_values(i)) for i in range(3)]
    payload = encode_batch("d1-em", 7, EM_UNITS, readings)
    result = validate_message(EM_TOPIC, payload, registry, now_ms=NOW)
    assert result.rejected == []
    assert [r.ts for r in result.good] == [ts for ts, _ in readings]
    assert result.seqs == [7, 8, 9]
    assert result.device is not None and result.device.building == "d1-b1"


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"power": math.nan}, Reason.NON_FINITE),
        ({"power": math.inf}, Reason.NON_FINITE),
        ({"voltage": 5000.0}, Reason.OUT_OF_RANGE),
        ({"energy_import": -1.0}, Reason.OUT_OF_RANGE),
        ({"power": "high"}, Reason.WRONG_TYPE),
        ({"frequency": 50.0}, Reason.UNKNOWN_METRIC),
    ],
)
def test_a_bad_value_rejects_only_its_reading(registry: Registry, values: dict[str, Any], reason: Reason) -> None:
    bad = em_values(1) | values
    payload = em_payload(
        [
            {"ts": NOW - 3000, "values": em_values(0)},
            {"ts": NOW - 2000, "values": bad},
            {"ts": NOW - 1000, "values": em_values(2)},
        ]
    )
    assert check(registry, payload) == (2, [(reason, 1)])


def test_a_structurally_bad_reading_is_salvaged_around(registry: Registry) -> None:
    payload = em_payload(
        [
            {"ts": NOW - 2000, "values": em_values(0)},
            {"ts": "yesterday", "values": em_values(1)},
            {"ts": NOW, "values": {"power": True}},
            {"ts": NOW - 1000, "values": em_values(3)},
        ]
    )
    good, rejected = check(registry, payload)
    assert good == 2
    assert rejected == [(Reason.INVALID_READING, 1), (Reason.INVALID_READING, 2)]


def test_wrong_unit_rejects_the_batch_with_a_clear_reason(registry: Registry) -> None:
    payload = em_payload([{"ts": NOW, "values": em_values()}] * 2, units=EM_UNITS | {"energy_import": "Wh"})
    result = validate_message(EM_TOPIC, payload, registry, now_ms=NOW)
    assert result.good == []
    [rejection] = result.rejected
    assert rejection.reason is Reason.WRONG_UNIT and rejection.readings == 2
    assert "'Wh'" in rejection.detail and "'kWh'" in rejection.detail


def test_a_missing_unit_declaration_is_a_wrong_unit(registry: Registry) -> None:
    units = {k: v for k, v in EM_UNITS.items() if k != "power"}
    assert check(registry, em_payload([{"ts": NOW, "values": em_values()}], units=units)) == (
        0,
        [(Reason.WRONG_UNIT, 0)],
    )


def test_unknown_device_is_rejected(registry: Registry) -> None:
    topic = readings_topic("d1", "d1-gw1", "ghost", "electricity_meter")
    good, rejected = check(registry, em_payload([{"ts": NOW, "values": em_values()}], device="ghost"), topic)
    assert (good, rejected) == (0, [(Reason.UNKNOWN_DEVICE, None)])


@pytest.mark.parametrize("version", [0, 2, "1"])
def test_wrong_schema_version_is_rejected(registry: Registry, version: object) -> None:
    good, rejected = check(registry, em_payload([{"ts": NOW, "values": em_values()}], v=version))
    assert (good, rejected) == (0, [(Reason.UNSUPPORTED_SCHEMA_VERSION, None)])


def test_topic_kind_must_match_the_registry(registry: Registry) -> None:
    topic = readings_topic("d1", "d1-gw1", "d1-em", "heat_meter")
    assert check(registry, em_payload([{"ts": NOW, "values": em_values()}]), topic) == (
        0,
        [(Reason.KIND_MISMATCH, None)],
    )


def test_a_gateway_cannot_speak_for_another_gateways_device(registry: Registry) -> None:
    topic = readings_topic("d1", "d1-gw2", "d1-em", "electricity_meter")
    assert check(registry, em_payload([{"ts": NOW, "values": em_values()}]), topic)[1] == [(Reason.WRONG_GATEWAY, None)]


def test_payload_device_must_match_the_topic(registry: Registry) -> None:
    payload = em_payload([{"ts": NOW, "values": em_values()}], device="d1-bs")
    assert check(registry, payload)[1] == [(Reason.DEVICE_MISMATCH, None)]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x00\xff not json", Reason.DECODE_ERROR),
        (b'{"v": 1, "device": "d1-em"', Reason.DECODE_ERROR),
        (b'{"v": 1, "device": "d1-em", "seq": [0, 0], "readings": []}', Reason.INVALID_SCHEMA),
        (
            b'{"v": 1, "device": "d1-em", "seq": [0, 5], "units": {}, "readings": [{"ts": 1, "values": {"power": 1}}]}',
            Reason.INVALID_SCHEMA,
        ),
        (
            b'{"v": 1, "device": "d1-em", "seq": [0, 0], "extra": 1, "readings": [{"ts": 1, "values": {"power": 1}}]}',
            Reason.INVALID_SCHEMA,
        ),
    ],
)
def test_unusable_payloads_are_rejected_whole(registry: Registry, payload: bytes, reason: Reason) -> None:
    assert check(registry, payload) == (0, [(reason, None)])


@pytest.mark.parametrize(
    "topic",
    [
        "dp/v1/d1/d1-gw1/d1-em",
        "other/v1/d1/d1-gw1/d1-em/electricity_meter",
        "dp/v1/d1/d1-gw1/d1-em/toaster",
        "dp/v1/d1/d1 gw1/d1-em/electricity_meter",
    ],
)
def test_bad_topics_are_rejected(registry: Registry, topic: str) -> None:
    assert check(registry, em_payload([{"ts": NOW, "values": em_values()}]), topic) == (0, [(Reason.BAD_TOPIC, None)])


def test_timestamps_far_in_the_future_or_before_commissioning_are_rejected(registry: Registry) -> None:
    units = {"energy": "kWh", "flow_temperature": "degC", "return_temperature": "degC"}
    values = {"energy": 10.0, "flow_temperature": 60.0, "return_temperature": 40.0}
    commissioned = 1_748_736_000_000  # 2025-06-01T00:00:00Z
    readings = [(commissioned - 1, values), (commissioned, values), (NOW + 3_600_000, values), (NOW + 60_000, values)]
    payload = encode_batch("d1-hm", 0, units, readings)
    topic = readings_topic("d1", "d1-gw2", "d1-hm", "heat_meter")
    assert check(registry, payload, topic) == (
        2,
        [(Reason.BEFORE_COMMISSIONING, 0), (Reason.FUTURE_TIMESTAMP, 2)],
    )


def test_ev_connector_status_must_be_an_ocpp_status(registry: Registry) -> None:
    units = {"session_energy": "kWh", "power": "W"}
    ok = {"connector_status": "Charging", "session_id": "s-1", "session_energy": 1.5, "power": 11000.0}
    bad = ok | {"connector_status": "Exploded"}
    payload = encode_batch("d1-ev", 0, units, [(NOW - 1000, ok), (NOW, bad)])
    topic = readings_topic("d1", "d1-gw1", "d1-ev", "ev_charger")
    assert check(registry, payload, topic) == (1, [(Reason.OUT_OF_RANGE, 1)])


# --- duplicate timestamps, sequence numbers beyond 64 bits, oversized payloads -------------------------------


def test_a_repeated_timestamp_rejects_the_later_readings_naming_the_first(registry: Registry) -> None:
    stamps = [NOW - 3000, NOW - 2000, NOW - 3000, NOW - 1000, NOW - 3000]
    payload = em_payload([{"ts": ts, "values": em_values(i)} for i, ts in enumerate(stamps)])
    result = validate_message(EM_TOPIC, payload, registry, now_ms=NOW)
    assert [r.ts for r in result.good] == [NOW - 3000, NOW - 2000, NOW - 1000]
    assert result.seqs == [10, 11, 13]
    assert [(r.reason, r.index, r.readings) for r in result.rejected] == [
        (Reason.DUPLICATE_TIMESTAMP, 2, 1),
        (Reason.DUPLICATE_TIMESTAMP, 4, 1),
    ]
    assert all(f"ts {NOW - 3000} is the ts of readings[0]" in r.detail for r in result.rejected)


def test_a_timestamp_is_taken_by_the_first_reading_stored_with_it(registry: Registry) -> None:
    """A rejected reading stores no point: the next reading at its ts is stored, the one after is the duplicate."""
    readings = [
        {"ts": NOW - 1000, "values": em_values(0) | {"voltage": 5000.0}},  # out of range: not stored
        {"ts": NOW - 1000, "values": em_values(1)},
        {"ts": NOW - 1000, "values": em_values(2)},
    ]
    result = validate_message(EM_TOPIC, em_payload(readings), registry, now_ms=NOW)
    assert result.seqs == [11]
    assert [(r.reason, r.index) for r in result.rejected] == [
        (Reason.OUT_OF_RANGE, 0),
        (Reason.DUPLICATE_TIMESTAMP, 2),
    ]
    assert "readings[1]" in result.rejected[1].detail


def test_duplicates_are_found_in_a_salvaged_batch_too(registry: Registry) -> None:
    readings = [
        {"ts": NOW - 2000, "values": em_values(0)},
        {"ts": "yesterday", "values": em_values(1)},  # the batch fails as a whole: salvaged reading by reading
        {"ts": NOW - 2000, "values": em_values(2)},
    ]
    assert check(registry, em_payload(readings)) == (
        1,
        [(Reason.INVALID_READING, 1), (Reason.DUPLICATE_TIMESTAMP, 2)],
    )


MAX_SEQ = 2**63 - 1


@pytest.mark.parametrize(
    ("seq", "n"),
    [
        ([MAX_SEQ + 1, MAX_SEQ + 1], 1),  # seq[0] beyond int64
        ([MAX_SEQ, MAX_SEQ + 1], 2),  # seq[1] == seq[0] + n - 1 beyond int64
        ([MAX_SEQ + 1, MAX_SEQ + 3], 3),
        ([2**64, 2**64], 1),
    ],
)
def test_sequence_numbers_beyond_64_bits_reject_the_batch_with_its_readings(
    registry: Registry, seq: list[int], n: int
) -> None:
    readings = [{"ts": NOW - 1000 * (n - i), "values": em_values(i)} for i in range(n)]
    for bad_reading in (False, True):  # whole-batch validation, and the salvage path
        if bad_reading:
            readings[0] = {"ts": "yesterday", "values": em_values(0)}
        result = validate_message(EM_TOPIC, em_payload(readings, seq=seq), registry, now_ms=NOW)
        assert result.good == []
        [rejection] = result.rejected
        assert (rejection.reason, rejection.index, rejection.readings) == (Reason.INVALID_SCHEMA, None, n)
        assert str(MAX_SEQ) in rejection.detail


def test_the_largest_sequence_number_is_valid(registry: Registry) -> None:
    readings = [{"ts": NOW - 2000, "values": em_values(0)}, {"ts": NOW - 1000, "values": em_values(1)}]
    result = validate_message(EM_TOPIC, em_payload(readings, seq=[MAX_SEQ - 1, MAX_SEQ]), registry, now_ms=NOW)
    assert result.rejected == []
    assert result.seqs == [MAX_SEQ - 1, MAX_SEQ]


def padded(payload: bytes, size: int) -> bytes:
    """The same JSON document, `size` bytes long (trailing whitespace is valid JSON)."""
    assert len(payload) <= size
    return payload + b" " * (size - len(payload))


def test_a_payload_over_the_byte_limit_is_rejected_whole_without_being_parsed(registry: Registry) -> None:
    good = em_payload([{"ts": NOW - 1000, "values": em_values(0)}])
    at_limit = validate_message(EM_TOPIC, padded(good, MAX_MESSAGE_BYTES), registry, now_ms=NOW)
    assert at_limit.rejected == [] and len(at_limit.good) == 1

    for payload in (padded(good, MAX_MESSAGE_BYTES + 1), b"\xff" * (MAX_MESSAGE_BYTES + 1)):  # not even JSON
        result = validate_message(EM_TOPIC, payload, registry, now_ms=NOW)
        assert result.good == [] and result.device is not None and result.device.id == "d1-em"
        [rejection] = result.rejected
        assert (rejection.reason, rejection.index, rejection.readings) == (Reason.TOO_LARGE, None, 1)
        assert f"payload of {MAX_MESSAGE_BYTES + 1} bytes" in rejection.detail
        assert rejection.errors[0]["bytes"] == MAX_MESSAGE_BYTES + 1
        assert rejection.errors[0]["limit"] == MAX_MESSAGE_BYTES
        assert kept_payload(payload) == payload[:TOO_LARGE_KEPT_BYTES]
    assert kept_payload(padded(good, MAX_MESSAGE_BYTES)) == padded(good, MAX_MESSAGE_BYTES)  # kept whole


def test_the_byte_limit_holds_a_full_batch_of_every_kind_as_gateways_write_it() -> None:
    """The figures of `devices.wire.MAX_MESSAGE_BYTES`: 10,000 readings with realistic values fit."""
    values = {
        "electricity_meter": {"energy_import": 81234.567, "energy_export": 1234.5, "power": -1830.25, "voltage": 231.4},
        "ev_charger": {
            "connector_status": "SuspendedEVSE",
            "session_id": "tx-" + "7" * 17,
            "session_energy": 12.345,
            "power": 11040.5,
        },
        "building_sensor": {"temperature": 21.25, "relative_humidity": 45.5, "co2": 612.0, "occupancy": 12.0},
    }
    for kind, v in values.items():
        readings = [(NOW + i * 1000, v) for i in range(MAX_READINGS_PER_BATCH)]
        payload = encode_batch("b1-" + kind, 2**40, units_for(kind), readings, clock_unsynced=True)
        assert len(payload) < 0.75 * MAX_MESSAGE_BYTES, (kind, len(payload))

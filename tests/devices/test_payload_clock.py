"""The batch-level `"clock": "unsynced"` flag of payload v1: optional, exact, and old payloads unchanged."""

from __future__ import annotations

import json

import pytest

from devices import BATCH_ADAPTER, Batch, Reading, Reason, Registry, encode_batch, readings_topic, validate_message
from devices.wire import CLOCK_UNSYNCED

REGISTRY = Registry.from_toml(
    """
[[district]]
id = "dc"
timezone = "Europe/Helsinki"
  [[district.building]]
  id = "dc-b1"
  floor_area_m2 = 1000
    [[district.building.gateway]]
    id = "dc-gw1"
      [[district.building.gateway.device]]
      id = "dc-em"
      kind = "electricity_meter"
      commissioned = 2024-01-01T00:00:00Z
"""
)
EM = REGISTRY.devices["dc-em"]
TOPIC = readings_topic(EM.district, EM.gateway, EM.id, EM.kind)
UNITS = {"energy_import": "kWh", "power": "W"}
T0 = 1_790_000_000_000
NOW = T0 + 3_600_000


def readings(n: int, start: int = T0) -> list[tuple[int, dict[str, float | str]]]:
    return [(start + i * 60_000, {"energy_import": 10.0 + i, "power": 5.5}) for i in range(n)]


def test_a_synchronised_batch_is_byte_for_byte_the_v1_payload_it_always_was() -> None:
    expected = (
        b'{"v":1,"device":"dc-em","seq":[3,4],"units":{"energy_import":"kWh","power":"W"},"readings":['
        b'{"ts":1790000000000,"values":{"energy_import":10.0,"power":5.5}},'
        b'{"ts":1790000060000,"values":{"energy_import":11.0,"power":5.5}}]}'
    )
    assert encode_batch("dc-em", 3, UNITS, readings(2)) == expected
    assert encode_batch("dc-em", 3, UNITS, readings(2), clock_unsynced=False) == expected


def test_an_unsynchronised_batch_carries_the_flag_after_seq() -> None:
    payload = encode_batch("dc-em", 3, UNITS, readings(2), clock_unsynced=True)
    assert payload.startswith(b'{"v":1,"device":"dc-em","seq":[3,4],"clock":"unsynced","units":')
    assert json.loads(payload)["clock"] == CLOCK_UNSYNCED == "unsynced"


@pytest.mark.parametrize("unsynced", [False, True])
def test_the_model_reads_the_flag_onto_every_reading_and_writes_it_back(unsynced: bool) -> None:
    payload = encode_batch("dc-em", 3, UNITS, readings(4), clock_unsynced=unsynced)
    batch = BATCH_ADAPTER.validate_json(payload)
    assert batch.clock == ("unsynced" if unsynced else None)
    assert [r.clock_unsynced for r in batch.readings] == [unsynced] * 4
    assert batch.to_json() == payload  # absent stays absent: no `"clock": null`


def test_an_explicit_null_reads_as_absent() -> None:
    doc = json.loads(encode_batch("dc-em", 3, UNITS, readings(2)))
    doc["clock"] = None
    batch = BATCH_ADAPTER.validate_json(json.dumps(doc))
    assert batch.clock is None
    assert not any(r.clock_unsynced for r in batch.readings)


def test_flagging_a_batch_never_flags_a_reading_object_shared_with_another_batch() -> None:
    shared = Reading(ts=T0, values={"power": 1.0})
    flagged = Batch.model_validate(
        {"v": 1, "device": "dc-em", "seq": [0, 0], "clock": "unsynced", "readings": [shared]}
    )
    plain = Batch.model_validate({"v": 1, "device": "dc-em", "seq": [0, 0], "readings": [shared]})
    assert flagged.readings[0].clock_unsynced
    assert not shared.clock_unsynced
    assert not plain.readings[0].clock_unsynced
    assert flagged.readings[0].ts == shared.ts and flagged.readings[0].values == shared.values


@pytest.mark.parametrize("unsynced", [False, True])
def test_validation_keeps_the_flag_on_every_good_reading(unsynced: bool) -> None:
    payload = encode_batch("dc-em", 7, UNITS, readings(5), clock_unsynced=unsynced)
    result = validate_message(TOPIC, payload, REGISTRY, now_ms=NOW)
    assert result.rejected == []
    assert result.seqs == [7, 8, 9, 10, 11]
    assert [r.clock_unsynced for r in result.good] == [unsynced] * 5


@pytest.mark.parametrize("unsynced", [False, True])
def test_the_salvage_path_keeps_the_flag_on_the_good_readings(unsynced: bool) -> None:
    """A reading that fails the schema (a negative ts) sends the batch down the reading-by-reading path."""
    rows = readings(4)
    rows[2] = (-1, rows[2][1])
    result = validate_message(
        TOPIC, encode_batch("dc-em", 0, UNITS, rows, clock_unsynced=unsynced), REGISTRY, now_ms=NOW
    )
    assert [(r.reason, r.index) for r in result.rejected] == [(Reason.INVALID_READING, 2)]
    assert result.seqs == [0, 1, 3]
    assert [r.clock_unsynced for r in result.good] == [unsynced] * 3


@pytest.mark.parametrize("value", ["synced", "synchronised", "UNSYNCED", "", 1, True, ["unsynced"]])
def test_any_other_clock_value_rejects_the_message_as_invalid_schema(value: object) -> None:
    doc = json.loads(encode_batch("dc-em", 0, UNITS, readings(3)))
    doc["clock"] = value
    result = validate_message(TOPIC, json.dumps(doc).encode(), REGISTRY, now_ms=NOW)
    assert result.good == []
    # (counted as one reading, like every message whose envelope is invalid)
    assert [(r.reason, r.index, r.readings) for r in result.rejected] == [(Reason.INVALID_SCHEMA, None, 1)]
    assert "clock" in result.rejected[0].detail


def test_a_1970_time_from_an_unsynchronised_gateway_is_rejected_before_commissioning_not_stored() -> None:
    """A Pi that booted without a saved time stamps from the epoch: flagged or not, never stored."""
    boot = readings(3, start=30_000)  # 30 s after 1970-01-01T00:00Z
    later = readings(2, start=T0)
    for unsynced in (True, False):
        payload = encode_batch("dc-em", 0, UNITS, boot + later, clock_unsynced=unsynced)
        result = validate_message(TOPIC, payload, REGISTRY, now_ms=NOW)
        assert [(r.reason, r.index) for r in result.rejected] == [
            (Reason.BEFORE_COMMISSIONING, 0),
            (Reason.BEFORE_COMMISSIONING, 1),
            (Reason.BEFORE_COMMISSIONING, 2),
        ]
        assert [r.ts for r in result.good] == [T0, T0 + 60_000]
        assert result.seqs == [3, 4]
        assert [r.clock_unsynced for r in result.good] == [unsynced] * 2

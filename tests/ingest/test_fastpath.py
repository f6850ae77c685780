"""The fast path never disagrees with `devices.validate_message`: when it returns lines, the authoritative
validation accepts every reading of the message and `encode_readings` makes exactly those lines; anything
else it declines (None) and the slow path decides."""

from __future__ import annotations

import json
import math
from datetime import date
from typing import Any

from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from devices import Reason, Registry, demo_registry_path, encode_batch, readings_topic, units_for, validate_message
from devices.wire import MAX_MESSAGE_BYTES, MAX_SEQ
from ingest.fastpath import FastPath
from simulators import DistrictSimulator
from storage.lineprotocol import encode_readings, series_key

NOW = 1_800_000_000_000
REGISTRY = Registry.load(demo_registry_path())
FAST = FastPath(REGISTRY)


def slow_lines(topic: str, payload: bytes, now: int = NOW) -> list[str] | None:
    """The authority: lines if every reading of the message is valid, else None."""
    result = validate_message(topic, payload, REGISTRY, now_ms=now)
    if result.rejected or result.device is None:
        return None
    return encode_readings(series_key(result.device), result.good, result.seqs)


def check(topic: str, payload: bytes, now: int = NOW) -> bool:
    """Assert the contract; return whether the fast path took the message."""
    fast = FAST.lines(topic, payload, now)
    if fast is None:
        return False
    assert slow_lines(topic, payload, now) == fast[1], payload[:300]
    assert fast[0] is REGISTRY.devices[topic.split("/")[4]]
    return True


def test_a_simulated_day_agrees_message_by_message() -> None:
    sim = DistrictSimulator(REGISTRY, date(2026, 11, 20), seed=7, inject_bad_readings=5)
    taken = declined = 0
    now = sim.end_ms + 60_000
    for msg in sim.messages():
        if check(msg.topic, msg.payload, now):
            taken += 1
        else:
            declined += 1
            assert slow_lines(msg.topic, msg.payload, now) is None  # only messages with a bad reading
    assert declined == 5  # the five messages with a deliberately bad reading
    assert taken > 1000


# --- mutations of valid messages ----------------------------------------------------------------------------

EM = next(d for d in REGISTRY if d.kind == "electricity_meter")
EV = next(d for d in REGISTRY if d.kind == "ev_charger")
TOPICS = {d.id: readings_topic(d.district, d.gateway, d.id, d.kind) for d in (EM, EV)}

values_of_any_type = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=70),
    st.sampled_from(["Charging", "Available", "Faulted", 'tx-"7"', "\\"]),
)
metric_names = st.sampled_from(
    ["energy_import", "energy_export", "power", "voltage", "connector_status", "session_id", "session_energy", "x"]
)


def base_doc(device: str, n: int) -> dict[str, Any]:
    kind = "electricity_meter" if device == EM.id else "ev_charger"
    readings: list[tuple[int, dict[str, float | str]]]
    if kind == "electricity_meter":
        readings = [(NOW - 3_600_000 + i * 60_000, {"energy_import": 10.0 + i, "power": 5.5}) for i in range(n)]
    else:
        readings = [(NOW - 3_600_000 + i, {"connector_status": "Charging", "power": 7000.0}) for i in range(n)]
    doc: dict[str, Any] = json.loads(encode_batch(device, 3, units_for(kind), readings))
    return doc


#: Sequence numbers around the 64-bit bound, as a consistent range: only the bound can make them wrong.
near_max_seq = st.sampled_from([MAX_SEQ - 4, MAX_SEQ - 1, MAX_SEQ, MAX_SEQ + 1, 2**64])
MUTATIONS = ["value", "metric", "ts", "dup_ts", "seq", "big_seq", "unit", "top", "reading", "version", "device"]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    device = draw(st.sampled_from([EM.id, EV.id]))
    doc = base_doc(device, draw(st.integers(1, 4)))
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(MUTATIONS))
        readings = doc.get("readings")
        dicts = [r for r in readings if isinstance(r, dict)] if isinstance(readings, list) else []
        reading = draw(st.sampled_from(dicts)) if dicts else None
        values = reading.get("values") if reading is not None else None
        if where == "value" and isinstance(values, dict):
            values[draw(metric_names)] = draw(values_of_any_type)
        elif where == "metric" and isinstance(values, dict) and values:
            del values[draw(st.sampled_from(sorted(values)))]
        elif where == "ts" and reading is not None:
            reading["ts"] = draw(
                st.one_of(st.integers(-5, 2 * NOW), st.just(NOW + 300_000), st.just(NOW + 300_001), values_of_any_type)
            )
        elif where == "dup_ts" and len(dicts) > 1:  # one reading takes another's ts (as valid as the other's)
            source, target = draw(st.permutations(dicts))[:2]
            target["ts"] = source.get("ts")
        elif where == "seq":
            doc["seq"] = draw(st.one_of(st.lists(st.integers(-2, 8), max_size=3), values_of_any_type))
        elif where == "big_seq" and isinstance(readings, list):
            first = draw(near_max_seq)
            doc["seq"] = [first, first + len(readings) - 1]
        elif where == "unit" and isinstance(doc.get("units"), dict):
            doc["units"][draw(metric_names)] = draw(
                st.one_of(st.sampled_from(["kWh", "W", "V", ""]), values_of_any_type)
            )
        elif where == "top":
            doc[draw(st.sampled_from(["extra", "units", "readings", "seq"]))] = draw(values_of_any_type)
        elif where == "reading" and reading is not None:
            reading[draw(st.sampled_from(["ts", "values", "extra"]))] = draw(values_of_any_type)
        elif where == "version":
            doc["v"] = draw(st.sampled_from([0, 1, 2, "1", True, 1.0]))
        elif where == "device":
            doc["device"] = draw(st.sampled_from([EM.id, EV.id, "nobody", 7]))
    payload = json.dumps(doc, allow_nan=True).encode()
    if draw(st.booleans()) and draw(st.integers(0, 9)) == 0:
        payload = draw(st.sampled_from([payload + b" x", payload.decode().encode("utf-16"), b"[]", b"", b"\xff"]))
    return TOPICS[device], payload


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages_never_make_the_fast_path_disagree(message: tuple[str, bytes]) -> None:
    check(*message)


def slow_reasons(message: tuple[str, bytes]) -> set[Reason]:
    return {r.reason for r in validate_message(*message, REGISTRY, now_ms=NOW).rejected}


def test_the_mutations_reach_the_bounds() -> None:
    """Guards the property test: its messages include repeated timestamps and sequence numbers beyond 64 bits
    that the slow path rejects for exactly that, for both shapes of message (the column checks of the meter's
    all-float readings, the per-value loop of the charger's strings)."""
    for device in (EM.id, EV.id):
        for reason in (Reason.DUPLICATE_TIMESTAMP, Reason.INVALID_SCHEMA):
            found = find(mutated(), lambda m, d=device, r=reason: TOPICS[d] == m[0] and slow_reasons(m) == {r})
            assert FAST.lines(*found, NOW) is None
    big = find(mutated(), lambda m: b"9223372036854775808" in m[1] and slow_reasons(m) == {Reason.INVALID_SCHEMA})
    assert FAST.lines(*big, NOW) is None


def test_a_repeated_timestamp_is_declined_in_both_shapes() -> None:
    for device in (EM.id, EV.id):
        doc = base_doc(device, 3)
        doc["readings"][2]["ts"] = doc["readings"][0]["ts"]
        payload = json.dumps(doc).encode()
        assert FAST.lines(TOPICS[device], payload, NOW) is None
        result = validate_message(TOPICS[device], payload, REGISTRY, now_ms=NOW)
        assert [(r.reason, r.index) for r in result.rejected] == [(Reason.DUPLICATE_TIMESTAMP, 2)]
        assert len(result.good) == 2


def test_sequence_numbers_up_to_the_64_bit_bound_take_the_fast_path() -> None:
    for device in (EM.id, EV.id):
        doc = base_doc(device, 3)
        doc["seq"] = [MAX_SEQ - 2, MAX_SEQ]
        assert check(TOPICS[device], json.dumps(doc).encode())
        doc["seq"] = [MAX_SEQ - 1, MAX_SEQ + 1]
        assert FAST.lines(TOPICS[device], json.dumps(doc).encode(), NOW) is None


def test_the_byte_limit_is_the_slow_paths() -> None:
    """A valid message padded to the limit (whitespace is valid JSON) is taken; one byte more is declined."""
    for device in (EM.id, EV.id):
        payload = json.dumps(base_doc(device, 3)).encode()
        at_limit = payload + b" " * (MAX_MESSAGE_BYTES - len(payload))
        assert check(TOPICS[device], at_limit)
        assert FAST.lines(TOPICS[device], at_limit + b" ", NOW) is None
        assert slow_reasons((TOPICS[device], at_limit + b" ")) == {Reason.TOO_LARGE}


def test_the_unmutated_messages_take_the_fast_path() -> None:
    for device in (EM.id, EV.id):
        assert check(TOPICS[device], json.dumps(base_doc(device, 3)).encode())


def test_a_message_on_another_devices_topic_is_declined() -> None:
    payload = json.dumps(base_doc(EM.id, 2)).encode()
    assert FAST.lines(TOPICS[EV.id], payload, NOW) is None
    assert FAST.lines("dp/v1/x/y/z/electricity_meter", payload, NOW) is None
    assert math.isfinite(FAST.max_future_ms)


def test_the_parser_refuses_what_the_column_checks_rely_on_never_seeing() -> None:
    """`_float_columns` skips NaN checks and unbounded metrics' ranges because the parser never yields NaN or
    infinities: if it ever did (another JSON library), these messages must still be declined."""
    for bad in ("NaN", "Infinity", "-Infinity", "1e400", "-1e400"):
        doc = base_doc(EM.id, 3)
        text = json.dumps(doc).replace('"power": 5.5', f'"power": {bad}', 1)
        assert bad in text
        assert FAST.lines(TOPICS[EM.id], text.encode(), NOW) is None


def test_readings_with_the_same_metrics_in_another_order_keep_their_own_order() -> None:
    doc = base_doc(EM.id, 3)
    doc["readings"][1]["values"] = dict(reversed(list(doc["readings"][1]["values"].items())))
    payload = json.dumps(doc).encode()
    assert check(TOPICS[EM.id], payload)
    fast = FAST.lines(TOPICS[EM.id], payload, NOW)
    assert fast is not None
    assert " power=5.5,energy_import=11.0,seq=4i " in fast[1][1]
    assert " energy_import=10.0,power=5.5,seq=3i " in fast[1][0]

"""The fast path never disagrees with `devices.validate_message`: when it returns lines, the authoritative
validation accepts every reading of the message and `encode_readings` makes exactly those lines; anything
else it declines (None) and the slow path decides."""

from __future__ import annotations

import json
import math
from datetime import date

from hypothesis import HealthCheck, find, given, settings

from devices import Reason, validate_message
from devices.wire import MAX_MESSAGE_BYTES, MAX_SEQ
from simulators import DistrictSimulator
from tests.support.fastpath_contract import EM, EV, FAST, NOW, REGISTRY, TOPICS, base_doc, check, mutated, slow_lines


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


# --- mutations of valid messages (tests/support/fastpath_contract.py) ----------------------------------------


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

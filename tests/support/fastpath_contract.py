"""The fast path's contract with `devices.validate_message`, for tests/ingest/test_fastpath.py and the clock
flag's tests: the authority's lines (`slow_lines`), the assertion that the fast path agrees (`check`), and a
hypothesis strategy of valid messages of a meter and a charger with up to three mutations (`mutated`)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from devices import Registry, demo_registry_path, encode_batch, readings_topic, units_for, validate_message
from devices.wire import MAX_SEQ
from ingest.fastpath import FastPath
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

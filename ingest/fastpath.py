"""The fast path: validate a well-formed message and build its line protocol in one pass, or decline.

`devices.validate_message` (pydantic models, then a check per value, then `encode_readings`) is the
authority and explains every rejection. It costs about 2 µs a reading, which is a fifth of what InfluxDB
itself spends per point and the difference between meeting the throughput target or not. Nearly every
message is valid, so this module handles exactly that case with `json.loads` and plain comparisons against
tables precomputed per device, and *declines* (returns None) on anything it is not sure about: then the
pipeline runs `validate_message`, which accepts, salvages or rejects with a reason as before.

The contract, tested with hypothesis against `validate_message` (tests/ingest/test_fastpath.py): whenever the
fast path returns lines, `validate_message` accepts every reading of the message and `encode_readings` makes
exactly the same lines. It never accepts more: a declined valid message only costs the slow path.
That includes the batch-level `"clock": "unsynced"` flag: both paths add `clock_unsynced=true` to every line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

from devices import KINDS, MAX_READINGS_PER_BATCH, SCHEMA_VERSION, Device, Registry, readings_topic
from devices.validation import DEFAULT_MAX_FUTURE_MS
from devices.wire import CLOCK_UNSYNCED
from ingest.lineprotocol import CLOCK_UNSYNCED_FIELD, series_key

_REQUIRED = frozenset({"v", "device", "seq", "readings"})
_ALLOWED = frozenset({"v", "device", "seq", "clock", "units", "readings"})
_READING_KEYS = frozenset({"ts", "values"})


def _string_field(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_MAX_FLOAT = 1.7976931348623157e308


@dataclass(frozen=True, slots=True)
class _Target:
    """What the fast path checks a device's messages against, computed once per registry."""

    device: Device
    key: str  #: measurement and tags: the line protocol prefix
    min_ts: int
    #: float metric -> (min, max), infinite bounds replaced by the largest finite float, so that one chained
    #: comparison also refuses NaN and infinities
    floats: dict[str, tuple[float, float]]
    #: string metric -> (choices or None, max length)
    strings: dict[str, tuple[frozenset[str] | None, int]]
    #: metric -> its unit, for the metrics that have one (a reading may use them only if the batch declares it)
    units: dict[str, str]


def _finite(bound: float, default: float) -> float:
    return bound if math.isfinite(bound) else default


class FastPath:
    def __init__(self, registry: Registry, *, max_future_ms: int = DEFAULT_MAX_FUTURE_MS) -> None:
        self.max_future_ms = max_future_ms
        self._targets: dict[str, _Target] = {}
        for device in registry:
            metrics = KINDS[device.kind].metrics
            target = _Target(
                device=device,
                key=series_key(device),
                min_ts=max(0, device.commissioned_ms),
                floats={
                    n: (_finite(m.min, -_MAX_FLOAT), _finite(m.max, _MAX_FLOAT))
                    for n, m in metrics.items()
                    if m.type == "float"
                },
                strings={n: (m.choices, m.max_length) for n, m in metrics.items() if m.type != "float"},
                units={n: m.unit for n, m in metrics.items() if m.unit is not None},
            )
            self._targets[readings_topic(device.district, device.gateway, device.id, device.kind)] = target

    def lines(self, topic: str, payload: bytes, now_ms: int) -> tuple[Device, list[str]] | None:
        """The message's device and one line per reading if the whole message is valid; else None."""
        target = self._targets.get(topic)
        if target is None:
            return None
        try:
            doc = _loads(payload)
        except ValueError:  # includes UnicodeDecodeError, JSONDecodeError and orjson.JSONDecodeError
            return None
        if type(doc) is not dict or not (_REQUIRED <= doc.keys() <= _ALLOWED):
            return None
        version, seq, readings = doc["v"], doc["seq"], doc["readings"]
        units = doc.get("units", {})
        if type(version) is not int or version != SCHEMA_VERSION or doc["device"] != target.device.id:
            return None
        if type(seq) is not list or len(seq) != 2 or type(seq[0]) is not int or type(seq[1]) is not int:
            return None
        if type(readings) is not list or type(units) is not dict:
            return None
        flag = ""
        if "clock" in doc:  # only the exact string: anything else (null too) the slow path judges
            if doc["clock"] != CLOCK_UNSYNCED or type(doc["clock"]) is not str:
                return None
            flag = CLOCK_UNSYNCED_FIELD
        n, first = len(readings), seq[0]
        if not 1 <= n <= MAX_READINGS_PER_BATCH or first < 0 or seq[1] - first + 1 != n:
            return None
        known_units = target.units
        for name, unit in units.items():
            if type(unit) is not str or known_units.get(name) != unit:
                return None
        floats, strings = target.floats, target.strings
        if len(units) != len(known_units):  # a metric whose unit is not declared may not appear
            floats = {k: v for k, v in floats.items() if k in units or k not in known_units}
            strings = {k: v for k, v in strings.items() if k in units or k not in known_units}
        key, min_ts, max_ts = target.key, target.min_ts, now_ms + self.max_future_ms
        out: list[str] = []
        append = out.append
        try:
            for i, reading in enumerate(readings):
                if type(reading) is not dict or len(reading) != 2:
                    return None
                ts, values = reading["ts"], reading["values"]  # KeyError: another key than these two
                if type(ts) is not int or not min_ts <= ts <= max_ts or type(values) is not dict or not values:
                    return None
                fields = []
                for name, value in values.items():
                    bounds = floats.get(name)
                    if bounds is not None:
                        if type(value) is not float or not bounds[0] <= value <= bounds[1]:
                            return None
                        fields.append(f"{name}={value!r}")
                        continue
                    spec = strings.get(name)
                    if spec is None or type(value) is not str or len(value) > spec[1]:
                        return None
                    if spec[0] is not None and value not in spec[0]:
                        return None
                    fields.append(f"{name}={_string_field(value)}")
                append(f"{key} {','.join(fields)},seq={first + i}i{flag} {ts}")
        except KeyError:
            return None
        return target.device, out


def _json_loads(payload: bytes) -> object:
    return json.loads(payload.decode())


try:  # orjson parses about 2.5 times faster; it refuses NaN and invalid UTF-8, which the slow path then explains
    import orjson

    _loads: Callable[[bytes], object] = orjson.loads
except ImportError:  # pragma: no cover - the server extra installs it
    _loads = _json_loads

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
It declines, before parsing, a payload over `MAX_MESSAGE_BYTES`, and after parsing any message whose `seq` lies
beyond `MAX_SEQ` or whose readings share a `ts` (one set over the timestamps: the slow path says which).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple

import orjson

from devices import KINDS, MAX_READINGS_PER_BATCH, SCHEMA_VERSION, Device, Registry, readings_topic
from devices.validation import DEFAULT_MAX_FUTURE_MS
from devices.wire import CLOCK_UNSYNCED, MAX_MESSAGE_BYTES, MAX_SEQ
from storage.lineprotocol import CLOCK_UNSYNCED_FIELD, float_text, series_key, string_field

_REQUIRED = frozenset({"v", "device", "seq", "readings"})
_ALLOWED = frozenset({"v", "device", "seq", "clock", "units", "readings"})
_READING_KEYS = frozenset({"ts", "values"})


_MAX_FLOAT = 1.7976931348623157e308
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: `{"power":5.0}` -> `{power=5.0}`: with identifiers for names and floats for values, the only colons and quotes
_COLON_TO_EQUALS = bytes.maketrans(b":", b"=")


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


class Accepted(NamedTuple):
    """A wholly valid message: its device, one line per reading, and its first sequence number."""

    device: Device
    lines: list[str]
    first_seq: int


class FastPath:
    def __init__(self, registry: Registry, *, max_future_ms: int = DEFAULT_MAX_FUTURE_MS) -> None:
        self.max_future_ms = max_future_ms
        self._targets: dict[str, _Target] = {}
        unsafe = sorted(n for spec in KINDS.values() for n in spec.metrics if not _IDENTIFIER.fullmatch(n))
        if unsafe:  # the JSON-to-line-protocol shortcut relies on names that need neither quotes nor escapes
            raise RuntimeError(f"metric names must be identifiers for the fast path: {unsafe}")
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

    def lines(self, topic: str, payload: bytes, now_ms: int) -> Accepted | None:
        """The message's device and one line per reading if the whole message is valid; else None."""
        target = self._targets.get(topic)
        if target is None or len(payload) > MAX_MESSAGE_BYTES:
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
        if not 1 <= n <= MAX_READINGS_PER_BATCH or first < 0 or seq[1] - first + 1 != n or seq[1] > MAX_SEQ:
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
        columns = _float_columns(readings, floats, min_ts, max_ts)
        if columns is not None:
            stamps, objects = columns
            if len(set(stamps)) != n:  # two readings at one ts: one InfluxDB point (the slow path names them)
                return None
            # Every name is a known metric (an identifier, see __init__) and every value a finite float, so the
            # JSON text of the value objects is their line protocol but for quotes and colons: one C call per
            # message instead of a repr per value. `float_text` formats the slow path's floats alike.
            text = orjson.dumps(objects).translate(_COLON_TO_EQUALS, b'"').decode()
            return Accepted(
                target.device,
                [
                    f"{key} {f},seq={s}i{flag} {t}"
                    for f, s, t in zip(text[2:-2].split("},{"), range(first, first + n), stamps, strict=True)
                ],
                first,
            )
        out: list[str] = []
        append = out.append
        seen: set[int] = set()
        try:
            for i, reading in enumerate(readings):
                if type(reading) is not dict or len(reading) != 2:
                    return None
                ts, values = reading["ts"], reading["values"]  # KeyError: another key than these two
                if type(ts) is not int or not min_ts <= ts <= max_ts or type(values) is not dict or not values:
                    return None
                if ts in seen:
                    return None
                seen.add(ts)
                fields = []
                for name, value in values.items():
                    bounds = floats.get(name)
                    if bounds is not None:
                        if type(value) is not float or not bounds[0] <= value <= bounds[1]:
                            return None
                        fields.append(f"{name}={float_text(value)}")
                        continue
                    spec = strings.get(name)
                    if spec is None or type(value) is not str or len(value) > spec[1]:
                        return None
                    if spec[0] is not None and value not in spec[0]:
                        return None
                    fields.append(f"{name}={string_field(value)}")
                append(f"{key} {','.join(fields)},seq={first + i}i{flag} {ts}")
        except KeyError:
            return None
        return Accepted(target.device, out, first)


def _float_columns(
    readings: list[object], floats: dict[str, tuple[float, float]], min_ts: int, max_ts: int
) -> tuple[list[int], list[dict[str, float]]] | None:
    """The timestamps and value objects of a message whose readings all carry the same float metrics, checked
    column by column with C loops (`map`, `min`, `max`, `sum`); None if anything differs from that shape.

    The common message (a meter's registers and powers) costs a few C passes over each column instead of a
    Python loop per value. Anything else (a string metric, a missing value, another type) goes to the
    per-value loop, which decides."""
    try:
        ts = list(map(_TS, readings))  # type: ignore[arg-type]
        values = list(map(_VALUES, readings))  # type: ignore[arg-type]
    except (KeyError, TypeError):  # a reading that is not an object, or lacks one of the two keys
        return None
    if set(map(len, readings)) != {2}:  # type: ignore[arg-type]  # ... or has another key
        return None
    if set(map(type, ts)) != {int} or min(ts) < min_ts or max(ts) > max_ts:
        return None
    if set(map(type, values)) != {dict}:
        return None
    first = values[0]
    if not first or set(map(len, values)) != {len(first)}:
        return None
    for name in first:  # each reading has as many metrics as the first, and each of the first's: the same ones
        bound = floats.get(name)
        if bound is None:
            return None
        try:
            column = list(map(itemgetter(name), values))
        except KeyError:
            return None
        if set(map(type, column)) != {float}:
            return None
        # No NaN here (orjson refuses NaN, Infinity and numbers beyond the double range), so min and max are
        # exact, and an unbounded metric needs no pass at all (its bounds are the largest finite floats).
        low, high = bound
        if (low != -_MAX_FLOAT and min(column) < low) or (high != _MAX_FLOAT and max(column) > high):
            return None
    return ts, values


_TS, _VALUES = itemgetter("ts"), itemgetter("values")
_loads: Callable[[bytes], object] = orjson.loads  # refuses NaN, infinities and invalid UTF-8

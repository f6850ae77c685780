"""InfluxDB line protocol, built per message (one device's batch), not per point object.

Tags come from the registry only (district, building, device), never from payload fields; identifiers are
restricted by `devices.topics.ID_PATTERN` so they need no escaping. The timestamp is the device's, in ms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import orjson

from devices import KINDS, Device, Reading


def series_key(device: Device) -> str:
    """`measurement,district=..,building=..,device=..`: the point identity without the timestamp."""
    measurement = KINDS[device.kind].measurement
    return f"{measurement},district={device.district},building={device.building},device={device.id}"


def float_text(value: float) -> str:
    """A finite float as line protocol: the shortest text that reads back as the same double.

    orjson's formatting, not `repr`: the fast path (`ingest.fastpath`) formats a whole message's floats in one
    orjson call, and both paths must make the same lines. They differ from repr only in exponents (`1e-7`, not
    `1e-07`), which InfluxDB reads alike."""
    return orjson.dumps(value).decode()


def string_field(value: str) -> str:
    """A string field value: quoted, with backslashes and double quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


FieldValue = float | int | bool | str


def fields(values: Mapping[str, FieldValue]) -> str:
    """`k=v,...` for the jobs' KPI points: booleans, integers (`i`), strings (quoted) and finite floats; a NaN
    or infinite float is left out (InfluxDB has no such value: an absent field reads as null). Names are the
    jobs' own identifiers, which need no escaping."""
    out = []
    for key, v in values.items():
        if isinstance(v, bool):
            out.append(f"{key}={'true' if v else 'false'}")
        elif isinstance(v, int):
            out.append(f"{key}={v}i")
        elif isinstance(v, str):
            out.append(f"{key}={string_field(v)}")
        elif math.isfinite(v):
            out.append(f"{key}={float_text(float(v))}")
    return ",".join(out)


def point(measurement: str, tags: Mapping[str, str], values: Mapping[str, FieldValue], ts_ms: int) -> str:
    """One line: `measurement,tag=..,... fields ts`. Tag values are registry identifiers (`devices.topics.ID_PATTERN`)
    or the jobs' own names: they need no escaping."""
    head = ",".join([measurement, *(f"{k}={v}" for k, v in tags.items())])
    return f"{head} {fields(values)} {ts_ms}"


#: Appended to the fields of a reading stamped by an unsynchronised gateway clock (payload `"clock": "unsynced"`).
#: A boolean field, present only when true: synchronised points stay exactly as before. InfluxQL selects the
#: flagged points with `WHERE clock_unsynced = true`, but it cannot select points where a field is absent
#: (`WHERE clock_unsynced != true` matches none): to leave flagged readings out, read `clock_unsynced` with the
#: other fields and drop the rows where it is true, or count trusted ones as `count(seq) - count(clock_unsynced)`.
CLOCK_UNSYNCED_FIELD = ",clock_unsynced=true"


def encode_readings(key: str, readings: Sequence[Reading], seqs: Sequence[int]) -> list[str]:
    """One line per reading: every metric a field, plus the reading's sequence number as integer field `seq`,
    plus `clock_unsynced=true` when the reading came in an unsynchronised batch."""
    lines = []
    for reading, seq in zip(readings, seqs, strict=True):
        fields = ",".join(
            f"{name}={float_text(value)}" if isinstance(value, float) else f"{name}={string_field(value)}"
            for name, value in reading.values.items()
        )
        flag = CLOCK_UNSYNCED_FIELD if reading.clock_unsynced else ""
        lines.append(f"{key} {fields},seq={seq}i{flag} {reading.ts}")
    return lines

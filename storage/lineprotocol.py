"""InfluxDB line protocol, built per message (one device's batch), not per point object.

Tags come from the registry only (district, building, device), never from payload fields; identifiers are
restricted by `devices.topics.ID_PATTERN` so they need no escaping. The timestamp is the device's, in ms.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def _string_field(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
            f"{name}={float_text(value)}" if isinstance(value, float) else f"{name}={_string_field(value)}"
            for name, value in reading.values.items()
        )
        flag = CLOCK_UNSYNCED_FIELD if reading.clock_unsynced else ""
        lines.append(f"{key} {fields},seq={seq}i{flag} {reading.ts}")
    return lines

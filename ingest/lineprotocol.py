"""InfluxDB line protocol, built per message (one device's batch), not per point object.

Tags come from the registry only (district, building, device), never from payload fields; identifiers are
restricted by `devices.topics.ID_PATTERN` so they need no escaping. The timestamp is the device's, in ms.
"""

from __future__ import annotations

from collections.abc import Sequence

from devices import KINDS, Device, Reading


def series_key(device: Device) -> str:
    """`measurement,district=..,building=..,device=..`: the point identity without the timestamp."""
    measurement = KINDS[device.kind].measurement
    return f"{measurement},district={device.district},building={device.building},device={device.id}"


def _string_field(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_readings(key: str, readings: Sequence[Reading], seqs: Sequence[int]) -> list[str]:
    """One line per reading: every metric a field, plus the reading's sequence number as integer field `seq`."""
    lines = []
    for reading, seq in zip(readings, seqs, strict=True):
        fields = ",".join(
            f"{name}={value!r}" if isinstance(value, float) else f"{name}={_string_field(value)}"
            for name, value in reading.values.items()
        )
        lines.append(f"{key} {fields},seq={seq}i {reading.ts}")
    return lines

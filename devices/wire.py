"""The v1 wire format without pydantic: constants and the encoder the publisher's hot path uses.

`devices.payload` holds the pydantic models that validate what this writes; this module stays importable
without them, which keeps the gateway's memory small on a Raspberry Pi.
"""

from __future__ import annotations

import json

SCHEMA_VERSION = 1
#: A gateway sends one message per device per publish interval; this bounds the memory one message can take.
MAX_READINGS_PER_BATCH = 10_000


def encode_batch(
    device: str, first_seq: int, units: dict[str, str], readings: list[tuple[int, dict[str, float | str]]]
) -> bytes:
    """Serialise a batch without building pydantic objects (the publisher's hot path).

    The output is exactly what `Batch` validates; `allow_nan=True` keeps a NaN visible as `NaN` so that ingest
    quarantines it with a clear reason instead of the publisher crashing on a faulty sensor.
    """
    doc = {
        "v": SCHEMA_VERSION,
        "device": device,
        "seq": [first_seq, first_seq + len(readings) - 1],
        "units": units,
        "readings": [{"ts": ts, "values": values} for ts, values in readings],
    }
    return json.dumps(doc, separators=(",", ":"), allow_nan=True).encode()

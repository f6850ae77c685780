"""The v1 wire format without pydantic: constants and the encoder the publisher's hot path uses.

`devices.payload` holds the pydantic models that validate what this writes; this module stays importable
without them, which keeps the gateway's memory small on a Raspberry Pi.
"""

from __future__ import annotations

import json

SCHEMA_VERSION = 1
#: A gateway sends one message per device per publish interval; this bounds the memory one message can take.
MAX_READINGS_PER_BATCH = 10_000


#: The value of the batch-level `clock` field for readings stamped by a clock that was not synchronised.
CLOCK_UNSYNCED = "unsynced"


def encode_batch(
    device: str,
    first_seq: int,
    units: dict[str, str],
    readings: list[tuple[int, dict[str, float | str]]],
    *,
    clock_unsynced: bool = False,
) -> bytes:
    """Serialise a batch without building pydantic objects (the publisher's hot path).

    The output is exactly what `Batch` validates; `allow_nan=True` keeps a NaN visible as `NaN` so that ingest
    quarantines it with a clear reason instead of the publisher crashing on a faulty sensor.
    `clock_unsynced=True` adds `"clock": "unsynced"` (every reading of the batch was stamped by a clock that was
    not synchronised); a synchronised batch has no `clock` field, byte for byte what older versions wrote.
    """
    doc: dict[str, object] = {
        "v": SCHEMA_VERSION,
        "device": device,
        "seq": [first_seq, first_seq + len(readings) - 1],
    }
    if clock_unsynced:
        doc["clock"] = CLOCK_UNSYNCED
    doc["units"] = units
    doc["readings"] = [{"ts": ts, "values": values} for ts, values in readings]
    return json.dumps(doc, separators=(",", ":"), allow_nan=True).encode()

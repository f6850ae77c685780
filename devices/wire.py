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


#: The retained status of a gateway (`devices.topics.status_topic`): its Last Will says this with this reason.
REASON_CONNECTION_LOST = "connection lost"
#: ... and a clean stop says this.
REASON_SHUTDOWN = "shutdown"


def encode_status(
    *,
    gateway: str,
    district: str,
    state: str,
    version: str,
    reason: str | None = None,
    heartbeat: dict[str, object] | None = None,
    extra: dict[str, object] | None = None,
) -> bytes:
    """A gateway's status document: who, `online` or `offline` and why, and, except in a Last Will (written at
    connect time, when nothing else is known), the heartbeat: `ts`, `uptime_s`, `clock`, `spool`, `published`,
    `adapters` (see `gateway.service`). Real and simulated gateways both write it here, so the operators'
    dashboard reads one format; `extra` carries what only one of them says (the simulator's `simulated`)."""
    doc: dict[str, object] = {"v": 1, "gateway": gateway, "district": district, "state": state, "version": version}
    if reason is not None:
        doc["reason"] = reason
    if heartbeat is not None:
        doc.update(heartbeat)
    if extra:
        doc.update(extra)
    return json.dumps(doc, separators=(",", ":")).encode()

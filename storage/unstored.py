"""The `unstored` points: what became of the numbered readings that are not stored as readings.

Completeness is counted from sequence numbers (`aggregation.completeness`): a gap in a device's stored `seq`
is a loss unless something accounts for it. Ingest writes one point per run of such readings, in the same
InfluxDB write as the message's good readings and before the message is acknowledged or confirmed:

    unstored,district=..,building=..,device=..,stage=ingest,reason=<quarantine reason>
        first_seq=..i,last_seq=..i,readings=..i   time = the first reading's own timestamp
    unstored,district=..,building=..,device=..,stage=edge,reason=bytes_limit|age,class=..
        first_seq=..i,last_seq=..i,readings=..i,last_ts=..i   time = the first evicted reading's timestamp

`stage=ingest`: readings of a known device that validation quarantined (runs of consecutive rejected
readings with one reason; a whole rejected message is one run). `stage=edge`: a run the gateway's spool
deleted before it was confirmed, from the gateway's eviction notice (`devices.wire.Eviction`).

The time is a reading's timestamp, not the time of receipt, so a redelivered message or notice overwrites its
own point (InfluxDB's point identity is measurement, tags and time) instead of counting twice. When a
rejected reading has no usable timestamp (not an integer, or the whole message is undecodable) the time
of receipt stands in. Two runs of one device with the same reason and first timestamp would share a point:
the later one wins and the other's readings show as lost, never the other way round.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from devices.registry import Device
from devices.validation import Rejection
from devices.wire import MAX_SEQ, Eviction
from storage.lineprotocol import point

MEASUREMENT = "unstored"
STAGE_INGEST = "ingest"
STAGE_EDGE = "edge"


def _tags(device: Device, stage: str, reason: str) -> dict[str, str]:
    return {
        "district": device.district,
        "building": device.building,
        "device": device.id,
        "stage": stage,
        "reason": reason,
    }


def _run(device: Device, reason: str, first: int, last: int, ts: int) -> str:
    values = {"first_seq": first, "last_seq": last, "readings": last - first + 1}
    return point(MEASUREMENT, _tags(device, STAGE_INGEST, reason), values, ts)


def _timestamps(payload: bytes) -> list[object]:
    """The `ts` of each reading of a payload, None where there is none (the rejection path only: rare)."""
    try:
        doc = json.loads(payload)  # (the standard library's: it reads the NaN that made a reading invalid)
    except ValueError:
        return []
    readings = doc.get("readings") if isinstance(doc, dict) else None
    if not isinstance(readings, list):
        return []
    return [r.get("ts") if isinstance(r, dict) else None for r in readings]


def _ts(value: object, fallback: int) -> int:
    return value if type(value) is int and 0 <= value <= MAX_SEQ else fallback


def quarantine_lines(
    device: Device, seq: tuple[int, int], rejections: Sequence[Rejection], payload: bytes, received_ms: int
) -> list[str]:
    """The `stage=ingest` points of one message's rejections (module docstring), for a message whose device is
    known and whose `seq` range is known."""
    first_seq = seq[0]
    stamps = _timestamps(payload)

    def stamp(index: int) -> int:
        return _ts(stamps[index] if index < len(stamps) else None, received_ms)

    lines = []
    whole = [r for r in rejections if r.index is None]
    if whole:
        return [_run(device, whole[0].reason.value, seq[0], seq[1], stamp(0))]
    runs: list[tuple[str, int, int]] = []  # reason, first index, last index
    for r in sorted(rejections, key=lambda r: r.index or 0):
        assert r.index is not None
        if runs and runs[-1][0] == r.reason.value and runs[-1][2] == r.index - 1:
            runs[-1] = (runs[-1][0], runs[-1][1], r.index)
        elif not runs or runs[-1][2] < r.index:  # (one reading can be rejected once only)
            runs.append((r.reason.value, r.index, r.index))
    for reason, lo, hi in runs:
        lines.append(_run(device, reason, first_seq + lo, first_seq + hi, stamp(lo)))
    return lines


def eviction_line(device: Device, e: Eviction) -> str:
    """The `stage=edge` point of one eviction notice."""
    tags = {**_tags(device, STAGE_EDGE, e.reason), "class": e.cls}
    values = {"first_seq": e.first, "last_seq": e.last, "readings": e.readings, "last_ts": e.last_ts}
    return point(MEASUREMENT, tags, values, e.first_ts)

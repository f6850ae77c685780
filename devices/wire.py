"""The v1 wire format without pydantic: constants and the encoder the publisher's hot path uses.

`devices.payload` holds the pydantic models that validate what this writes; this module stays importable
without them, which keeps the gateway's memory small on a Raspberry Pi.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

SCHEMA_VERSION = 1
#: A gateway sends one message per device per publish interval; this bounds the memory one message can take.
MAX_READINGS_PER_BATCH = 10_000
#: The largest payload of one readings message, in bytes; a gateway must split a batch that would be larger
#: (on bytes as well as on `MAX_READINGS_PER_BATCH`), and ingest quarantines a larger message as `too_large`
#: without parsing it. 2 MiB holds a whole `MAX_READINGS_PER_BATCH` batch of every device kind as gateways
#: write them (measured with `encode_batch`, 10,000 readings, 13-digit timestamps, `"clock":"unsynced"`):
#: ev_charger 1.43 MiB with 20-character session ids (the widest kind: four metrics, two of them strings),
#: electricity_meter 1.13 MiB, and every float-only kind even with the longest float text in every value
#: (`-1.2345678901234567e-300`: at most 1.73 MiB). Only strings near their 64-character cap in nearly every
#: reading go over (ev_charger with 64-character ASCII session ids: 2.10 MiB; JSON-escaped non-ASCII: up to
#: 8.8 MiB), which no bound short of 9 MiB would hold: a gateway splits those. Twice the bound would
#: double what one consumer may buffer (`max_buffered_messages` raw messages) for no realistic batch.
MAX_MESSAGE_BYTES = 2 * 1024 * 1024
#: The largest MQTT packet the broker accepts (Mosquitto `max_packet_size`, see
#: districtpulse/services/templates/mosquitto.conf.in): a message of `MAX_MESSAGE_BYTES` plus its fixed header,
#: topic (at most 65,535 bytes), packet id and properties. A larger packet makes the broker disconnect its
#: publisher (ingest/README.md, "Oversized messages").
MAX_PACKET_BYTES = MAX_MESSAGE_BYTES + 64 * 1024


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


# -- confirmations: ingest -> gateway ---------------------------------------------------------------------------
#
# Topic `dp/v1/<district>/<gateway>/confirm` (`devices.topics.confirm_topic`), QoS 1, not retained:
#
#     {"v": 1, "ts": 1763856000123, "by": "districtpulse-ingest",
#      "confirmed": {"b1-em-main": [[1041, 1055], [1060, 1060]], "b1-ev-1": [[7, 9]]}}
#
# Every reading of a listed range is stored in InfluxDB or durably in ingest's quarantine: the gateway may delete
# it from its spool. Ranges are inclusive, sorted and disjoint per device; a confirmation repeats nothing it need
# not, but a gateway must accept a range it has already deleted (a redelivered reading is confirmed again).
# `by` names the ingest consumer (several may share the load); `ts` is when it was sent (UTC ms).

#: Schema version of a confirmation document.
CONFIRM_VERSION = 1
#: One confirmation document is at most this long; more ranges go into further documents.
MAX_CONFIRM_BYTES = 64 * 1024
#: The largest sequence number (a signed 64-bit integer: SQLite, InfluxDB and the JSON Schemas agree on it).
MAX_SEQ = 2**63 - 1

Ranges = dict[str, list[tuple[int, int]]]


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, disjoint, with adjacent ranges joined: [(5, 9), (0, 4), (12, 12)] -> [(0, 9), (12, 12)]."""
    out: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            if last > out[-1][1]:
                out[-1] = (out[-1][0], last)
        else:
            out.append((first, last))
    return out


def encode_confirms(ranges: Ranges, *, by: str, ts_ms: int, max_bytes: int = MAX_CONFIRM_BYTES) -> list[bytes]:
    """The confirmation documents for these ranges (merged), each at most `max_bytes` long."""
    head = f'{{"v":{CONFIRM_VERSION},"ts":{ts_ms},"by":{json.dumps(by)},"confirmed":{{'
    docs: list[bytes] = []
    parts: list[str] = []
    size = len(head) + 2

    def flush() -> None:
        nonlocal parts, size
        if parts:
            docs.append((head + ",".join(parts) + "}}").encode())
        parts, size = [], len(head) + 2

    for device in sorted(ranges):
        merged = merge_ranges(ranges[device])
        prefix = f"{json.dumps(device)}:["
        while merged:
            if parts and size + len(prefix) + len(_range_text(merged[0])) + 2 > max_bytes:
                flush()
            take = [_range_text(merged.pop(0))]  # at least one range, whatever the bound
            room = max_bytes - size - len(prefix) - len(take[0]) - 2
            while merged and room >= len(_range_text(merged[0])) + 1:
                take.append(_range_text(merged.pop(0)))
                room -= len(take[-1]) + 1
            part = prefix + ",".join(take) + "]"
            parts.append(part)
            size += len(part) + 1
            if merged:  # this document is full: the device goes on in the next (one key per device per document)
                flush()
    flush()
    return docs


def _range_text(r: tuple[int, int]) -> str:
    return f"[{r[0]},{r[1]}]"


class ConfirmError(ValueError):
    """A confirmation document that does not follow the format above."""


def decode_confirm(payload: bytes) -> Ranges:
    """The confirmed ranges of a confirmation document; ConfirmError says what is wrong with it."""
    if len(payload) > MAX_CONFIRM_BYTES:
        raise ConfirmError(f"confirmation of {len(payload)} bytes, more than {MAX_CONFIRM_BYTES}")
    try:
        doc = json.loads(payload)
    except ValueError as exc:  # also UnicodeDecodeError
        raise ConfirmError(f"not JSON: {exc}") from None
    if type(doc) is not dict or doc.get("v") != CONFIRM_VERSION or type(doc.get("confirmed")) is not dict:
        raise ConfirmError("expected an object with v=1 and a `confirmed` object")
    out: Ranges = {}
    for device, ranges in doc["confirmed"].items():
        if type(ranges) is not list:
            raise ConfirmError(f"{device[:64]!r}: expected a list of [first, last] ranges")
        checked: list[tuple[int, int]] = []
        for r in ranges:
            if (
                type(r) is not list
                or len(r) != 2
                or type(r[0]) is not int
                or type(r[1]) is not int
                or not 0 <= r[0] <= r[1] <= MAX_SEQ
            ):
                raise ConfirmError(f"{device[:64]!r}: {str(r)[:40]} is not a range [first, last], 0 <= first <= last")
            checked.append((r[0], r[1]))
        out[device] = checked
    return out


# -- eviction notices: gateway -> ingest, on dp/v1/<district>/<gateway>/<device>/evicted (QoS 1) -------------
#: Why the spool deleted unconfirmed readings (`gateway.spool`): its byte bound, or its age bound.
EVICTION_REASONS = ("bytes_limit", "age")
#: The eviction classes (`gateway.spool.ReadingClass`) by name.
EVICTION_CLASSES = ("instant", "mixed", "register", "event")
#: An eviction notice is a few hundred bytes; anything much larger is not one.
MAX_EVICTION_BYTES = 4096


class EvictionError(ValueError):
    """An eviction notice that does not follow the format."""


@dataclass(frozen=True, slots=True)
class Eviction:
    """A run of consecutive sequence numbers of one device that the gateway's spool deleted unconfirmed:
    readings `first`..`last` (inclusive, all of them), stamped `first_ts`..`last_ts` (ms)."""

    device: str
    first: int
    last: int
    first_ts: int
    last_ts: int
    reason: str
    cls: str

    @property
    def readings(self) -> int:
        return self.last - self.first + 1


def encode_eviction(e: Eviction) -> bytes:
    """`{"v":1,"device":..,"seq":[first,last],"evicted":{"ts":[first_ts,last_ts],"reason":..,"class":..}}`:
    the `seq` range is what ingest confirms back, exactly like a readings message's."""
    return (
        f'{{"v":{SCHEMA_VERSION},"device":{json.dumps(e.device)},"seq":[{e.first},{e.last}],'
        f'"evicted":{{"ts":[{e.first_ts},{e.last_ts}],"reason":"{e.reason}","class":"{e.cls}"}}}}'
    ).encode()


def _is_range(value: object) -> bool:
    return (
        type(value) is list
        and len(value) == 2
        and type(value[0]) is int
        and type(value[1]) is int
        and 0 <= value[0] <= value[1] <= MAX_SEQ
    )


def decode_eviction(payload: bytes) -> Eviction:
    """The notice in `payload`; EvictionError says what is wrong with it."""
    if len(payload) > MAX_EVICTION_BYTES:
        raise EvictionError(f"eviction notice of {len(payload)} bytes, more than {MAX_EVICTION_BYTES}")
    try:
        doc = json.loads(payload)
    except ValueError as exc:
        raise EvictionError(f"not JSON: {exc}") from None
    if type(doc) is not dict or doc.get("v") != SCHEMA_VERSION or set(doc) != {"v", "device", "seq", "evicted"}:
        raise EvictionError("expected an object with exactly v=1, device, seq and evicted")
    device, seq, body = doc["device"], doc["seq"], doc["evicted"]
    if type(device) is not str or not device:
        raise EvictionError("device: expected a non-empty string")
    if not _is_range(seq):
        raise EvictionError(f"seq: {str(seq)[:60]} is not a range [first, last], 0 <= first <= last <= {MAX_SEQ}")
    if type(body) is not dict or set(body) != {"ts", "reason", "class"}:
        raise EvictionError("evicted: expected an object with exactly ts, reason and class")
    ts = body["ts"]
    if not _is_range(ts):
        raise EvictionError(f"evicted.ts: {str(ts)[:60]} is not [first_ts, last_ts] in ms, first <= last")
    if body["reason"] not in EVICTION_REASONS:
        raise EvictionError(f"evicted.reason: {str(body['reason'])[:40]!r}, expected one of {EVICTION_REASONS}")
    if body["class"] not in EVICTION_CLASSES:
        raise EvictionError(f"evicted.class: {str(body['class'])[:40]!r}, expected one of {EVICTION_CLASSES}")
    return Eviction(device, seq[0], seq[1], ts[0], ts[1], body["reason"], body["class"])

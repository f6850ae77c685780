"""Check a received message against the payload schema, the device kinds and the registry.

`validate_message` never raises for bad input: it returns the readings that passed and one `Rejection` per
reading (or per message) that did not, each with a reason code from `Reason` and a human-readable detail.
One bad reading never costs the rest of its batch: a batch that fails schema validation as a whole is
re-validated reading by reading, and only the offending readings are rejected.

Two bounds come before anything is parsed or stored. A payload larger than `MAX_MESSAGE_BYTES` is rejected
whole as `too_large` without being parsed, and `kept_payload` says what of it the quarantine keeps (its first
`TOO_LARGE_KEPT_BYTES`). A reading whose `ts` an earlier stored reading of the same message already has is
rejected as `duplicate_timestamp` (InfluxDB would keep one point of the two; see `devices.payload`).

A batch's `"clock": "unsynced"` flag is not a reason to reject: every good reading of such a batch (salvaged
ones too) reports `Reading.clock_unsynced`, and its time is checked like any other, so a reading stamped at a
pre-boot time (1970) is rejected as `before_commissioning` and never stored.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from devices.kinds import KINDS, MetricSpec
from devices.payload import BATCH_ADAPTER, Batch, Envelope, Reading, seq_problem
from devices.registry import Device, Registry
from devices.topics import TopicError, parse_readings_topic
from devices.wire import MAX_MESSAGE_BYTES

#: Readings stamped further ahead than this are rejected (gateway clock wrong); generous for clock drift.
DEFAULT_MAX_FUTURE_MS = 5 * 60 * 1000
#: Of a `too_large` payload the quarantine keeps this much: enough to see what sent it and what it holds.
TOO_LARGE_KEPT_BYTES = 8192


class Reason(StrEnum):
    """Why a reading or a message was rejected. Stable codes: they label metrics and quarantine rows."""

    BAD_TOPIC = "bad_topic"
    DECODE_ERROR = "decode_error"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    INVALID_SCHEMA = "invalid_schema"
    UNKNOWN_DEVICE = "unknown_device"
    DEVICE_MISMATCH = "device_mismatch"
    WRONG_GATEWAY = "wrong_gateway"
    KIND_MISMATCH = "kind_mismatch"
    WRONG_UNIT = "wrong_unit"
    INVALID_READING = "invalid_reading"
    UNKNOWN_METRIC = "unknown_metric"
    WRONG_TYPE = "wrong_type"
    NON_FINITE = "non_finite"
    OUT_OF_RANGE = "out_of_range"
    FUTURE_TIMESTAMP = "future_timestamp"
    BEFORE_COMMISSIONING = "before_commissioning"
    TOO_LARGE = "too_large"
    DUPLICATE_TIMESTAMP = "duplicate_timestamp"


@dataclass(frozen=True, slots=True)
class Rejection:
    """One rejected reading (index >= 0) or a whole rejected message (index None, `readings` of them)."""

    reason: Reason
    detail: str
    index: int | None = None
    readings: int = 1
    errors: tuple[dict[str, Any], ...] = ()


@dataclass(slots=True)
class ValidatedMessage:
    """The outcome for one message: the device (when known), its good readings with their sequence numbers,
    and the rejections. `good` and `seqs` are parallel lists."""

    device: Device | None
    good: list[Reading] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    #: The batch's `seq` range once its envelope parsed (whatever became of its readings): what ingest
    #: confirms to the gateway when the message is settled; None when the payload had no usable envelope.
    seq: tuple[int, int] | None = None

    @property
    def rejected_readings(self) -> int:
        return sum(r.readings for r in self.rejected)


def _errors(exc: ValidationError) -> tuple[dict[str, Any], ...]:
    return tuple(
        {"loc": list(e["loc"]), "type": e["type"], "msg": e["msg"]} for e in exc.errors(include_url=False)[:20]
    )


def _summary(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in first["loc"]) or "payload"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{loc}: {first['msg']}{more}"


def _message_rejection(
    device: Device | None,
    reason: Reason,
    detail: str,
    readings: int = 1,
    errors: tuple[dict[str, Any], ...] = (),
    *,
    seq: tuple[int, int] | None = None,
) -> ValidatedMessage:
    return ValidatedMessage(device, rejected=[Rejection(reason, detail, None, max(readings, 1), errors)], seq=seq)


def _parse(
    payload: bytes,
) -> tuple[Batch | None, list[Rejection], list[tuple[int, Reading]], Envelope | None]:
    """Fast path: the whole batch at once. Slow path (only for a batch with bad parts): the envelope, then
    each reading on its own so the good ones survive."""
    try:
        return BATCH_ADAPTER.validate_json(payload), [], [], None
    except ValidationError as whole:
        whole_exc = whole
    try:
        envelope = Envelope.model_validate_json(payload)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors(include_url=False)):
            raise _Reject(Reason.DECODE_ERROR, f"not JSON: {_summary(exc)}", errors=_errors(exc)) from None
        if any(e["loc"][:1] == ("v",) and e["type"] == "literal_error" for e in exc.errors(include_url=False)):
            raise _Reject(Reason.UNSUPPORTED_SCHEMA_VERSION, _summary(exc), errors=_errors(exc)) from None
        raise _Reject(Reason.INVALID_SCHEMA, _summary(exc), errors=_errors(exc)) from None
    problem = seq_problem(*envelope.seq, len(envelope.readings))
    if problem is not None:
        raise _Reject(Reason.INVALID_SCHEMA, problem, readings=len(envelope.readings))
    rejected: list[Rejection] = []
    good: list[tuple[int, Reading]] = []
    for i, raw in enumerate(envelope.readings):
        try:
            good.append((i, Reading.model_validate_json(json.dumps(raw))))  # JSON rules, as on the fast path
        except ValidationError as exc:
            rejected.append(Rejection(Reason.INVALID_READING, f"readings[{i}]: {_summary(exc)}", i, 1, _errors(exc)))
    if not rejected:  # the batch failed for another reason than its readings
        raise _Reject(
            Reason.INVALID_SCHEMA,
            _summary(whole_exc),
            errors=_errors(whole_exc),
            readings=len(envelope.readings),
        )
    return None, rejected, good, envelope


class _Reject(Exception):  # internal control flow, never escapes this module
    def __init__(
        self, reason: Reason, detail: str, *, readings: int = 1, errors: tuple[dict[str, Any], ...] = ()
    ) -> None:
        self.reason, self.detail, self.readings, self.errors = reason, detail, readings, errors


def _check_value(spec: MetricSpec | None, name: str, value: float | str) -> tuple[Reason, str] | None:
    if spec is None:
        return Reason.UNKNOWN_METRIC, f"metric {name!r} is not a metric of this device kind"
    if spec.type == "float":
        if not isinstance(value, float):
            return Reason.WRONG_TYPE, f"{name}: expected a number, got {type(value).__name__} {value!r:.40}"
        if not math.isfinite(value):
            return Reason.NON_FINITE, f"{name}: {value} is not a finite number"
        if not spec.min <= value <= spec.max:
            return Reason.OUT_OF_RANGE, f"{name}: {value} {spec.unit} outside [{spec.min:g}, {spec.max:g}]"
        return None
    if not isinstance(value, str):
        return Reason.WRONG_TYPE, f"{name}: expected a string, got {type(value).__name__}"
    if spec.choices is not None and value not in spec.choices:
        return Reason.OUT_OF_RANGE, f"{name}: {value[:40]!r} is not one of {sorted(spec.choices)}"
    if len(value) > spec.max_length:
        return Reason.OUT_OF_RANGE, f"{name}: longer than {spec.max_length} characters"
    return None


def _future_detail(ts: int, now_ms: int) -> str:
    """How far ahead a timestamp is; a ts of hundreds of digits (JSON allows it) overflows a float division,
    which crashed validation (found by tests/fuzz): it is named by its length instead."""
    try:
        return f"ts {ts} is {(ts - now_ms) / 1000:.0f} s in the future"
    except OverflowError:
        return f"ts of {len(str(ts))} digits is in the future"


def kept_payload(payload: bytes) -> bytes:
    """What of a rejected message's payload the quarantine keeps: all of it, but of one larger than
    `MAX_MESSAGE_BYTES` (`too_large`) only its first `TOO_LARGE_KEPT_BYTES`: a quarantine row must not cost
    what the message was refused for."""
    return payload if len(payload) <= MAX_MESSAGE_BYTES else payload[:TOO_LARGE_KEPT_BYTES]


def _too_large(device: Device | None, payload: bytes) -> ValidatedMessage:
    size, digest = len(payload), hashlib.sha256(payload).hexdigest()
    detail = (
        f"payload of {size} bytes, more than the {MAX_MESSAGE_BYTES} a message may have: not parsed; the"
        f" quarantine keeps its first {TOO_LARGE_KEPT_BYTES} bytes (sha256 of the whole: {digest[:16]})"
    )
    error = {"type": "too_large", "bytes": size, "limit": MAX_MESSAGE_BYTES, "kept": TOO_LARGE_KEPT_BYTES}
    return _message_rejection(device, Reason.TOO_LARGE, detail, errors=(error | {"sha256": digest},))


def validate_message(
    topic: str,
    payload: bytes,
    registry: Registry,
    *,
    now_ms: int,
    max_future_ms: int = DEFAULT_MAX_FUTURE_MS,
) -> ValidatedMessage:
    """Validate one MQTT message: topic, size, schema, device, units, then every reading."""
    try:
        parts = parse_readings_topic(topic)
    except TopicError as exc:
        return _message_rejection(None, Reason.BAD_TOPIC, str(exc))
    device = registry.devices.get(parts.device)
    if len(payload) > MAX_MESSAGE_BYTES:  # before any parsing: the bound is what keeps a message cheap
        return _too_large(device, payload)
    try:
        batch, rejected, salvaged, envelope = _parse(payload)
    except _Reject as rej:
        return _message_rejection(device, rej.reason, rej.detail, rej.readings, rej.errors)
    header = batch if batch is not None else envelope
    assert header is not None
    n = len(header.readings)
    seq = (header.seq[0], header.seq[0] + n - 1) if n else None
    if device is None:
        return _message_rejection(
            None, Reason.UNKNOWN_DEVICE, f"device {parts.device!r} is not in the registry", n, seq=seq
        )
    if header.device != parts.device:
        return _message_rejection(
            device,
            Reason.DEVICE_MISMATCH,
            f"payload device {header.device[:64]!r} != topic device {parts.device!r}",
            n,
            seq=seq,
        )
    if device.gateway != parts.gateway or device.district != parts.district:
        return _message_rejection(
            device,
            Reason.WRONG_GATEWAY,
            f"device {device.id!r} belongs to {device.district}/{device.gateway}, not {parts.district}/{parts.gateway}",
            n,
            seq=seq,
        )
    if device.kind != parts.kind:
        return _message_rejection(
            device,
            Reason.KIND_MISMATCH,
            f"device {device.id!r} is a {device.kind}, topic says {parts.kind}",
            n,
            seq=seq,
        )
    metrics = KINDS[device.kind].metrics
    for name, unit in header.units.items():
        spec = metrics.get(name)
        if spec is None:
            return _message_rejection(
                device, Reason.UNKNOWN_METRIC, f"units: {name!r} is not a metric of {device.kind}", n, seq=seq
            )
        if spec.unit != unit:
            return _message_rejection(
                device, Reason.WRONG_UNIT, f"{name}: unit {unit[:20]!r}, expected {spec.unit!r}", n, seq=seq
            )

    out = ValidatedMessage(device, rejected=rejected, seq=seq)
    units = header.units
    first_seq = header.seq[0]
    max_ts = now_ms + max_future_ms
    min_ts = device.commissioned_ms
    if batch is None and envelope is not None and envelope.clock is not None:  # salvaged: not flagged by Batch
        salvaged = [(i, reading.flagged_unsynced()) for i, reading in salvaged]
    indexed = enumerate(batch.readings) if batch is not None else salvaged
    stored_at: dict[int, int] = {}  #: ts -> index of the reading stored with it
    for i, reading in indexed:
        problem: tuple[Reason, str] | None = None
        for name, value in reading.values.items():
            spec = metrics.get(name)
            problem = _check_value(spec, name, value)
            if problem is None and spec is not None and spec.unit is not None and name not in units:
                problem = (Reason.WRONG_UNIT, f"{name}: no unit declared (expected {spec.unit!r})")
            if problem is not None:
                break
        if problem is None:
            if reading.ts > max_ts:
                problem = (Reason.FUTURE_TIMESTAMP, _future_detail(reading.ts, now_ms))
            elif reading.ts < min_ts:
                problem = (
                    Reason.BEFORE_COMMISSIONING,
                    f"ts {reading.ts} is before the device was commissioned",
                )
            elif (first := stored_at.setdefault(reading.ts, i)) != i:
                problem = (
                    Reason.DUPLICATE_TIMESTAMP,
                    f"ts {reading.ts} is the ts of readings[{first}], which is stored: InfluxDB keeps one point"
                    " per device and timestamp",
                )
        if problem is None:
            out.good.append(reading)
            out.seqs.append(first_seq + i)
        else:
            out.rejected.append(Rejection(problem[0], f"readings[{i}]: {problem[1]}", i))
    return out

"""The wire contract's JSON Schemas (draft 2020-12), built from the vocabulary they describe.

    python -m devices.contract [docs/contract]      (re)write readings-batch, gateway-status, confirmation

The published documents are `docs/contract/*.schema.json`, referenced from `docs/contract/asyncapi.yaml`.
They are generated here, from `devices.kinds` (metrics, units, ranges), `devices.topics` (the identifier
pattern) and `devices.wire` (versions, bounds, the status reasons), so that the contract cannot drift from the
code: tests/devices/test_contract.py fails when a committed file differs from what this module builds, and
checks the schemas against the real validators (`devices.validate_message`, `devices.wire.decode_confirm`)
and encoders.

What a schema cannot say (JSON Schema compares no two values) is in its `description` and checked only by the
real validators: a batch's `seq` covers exactly its readings, every metric with a unit has that unit declared
in `units`, the payload's `device` is the topic's, timestamps lie between commissioning and now, a range's
first <= last, a confirmation's 64 KiB bound; and JSON itself has no NaN (encode_batch writes one as `NaN` so
that ingest quarantines it visibly: not JSON, so no schema accepts it). Standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from devices.kinds import KINDS, DeviceKind, MetricSpec
from devices.topics import ID_PATTERN
from devices.wire import (
    CLOCK_UNSYNCED,
    CONFIRM_VERSION,
    EVICTION_CLASSES,
    EVICTION_REASONS,
    MAX_READINGS_PER_BATCH,
    MAX_SEQ,
    REASON_CONNECTION_LOST,
    REASON_SHUTDOWN,
    SCHEMA_VERSION,
)

__all__ = [
    "SCHEMAS",
    "confirmation_schema",
    "eviction_notice_schema",
    "gateway_status_schema",
    "readings_batch_schema",
    "write",
]

DRAFT = "https://json-schema.org/draft/2020-12/schema"
ID = f"^{ID_PATTERN}$"
Schema = dict[str, Any]


def _id(name: str) -> str:
    return f"urn:districtpulse:contract:v1:{name}"


def _count(description: str) -> Schema:
    return {"type": "integer", "minimum": 0, "description": description}


def _metric(spec: MetricSpec) -> Schema:
    what = spec.description or spec.name
    if spec.type == "str":
        if spec.choices is not None:
            return {"type": "string", "enum": sorted(spec.choices), "description": what}
        return {"type": "string", "maxLength": spec.max_length, "description": what}
    out: Schema = {"type": "number"}
    if spec.min != float("-inf"):
        out["minimum"] = spec.min
    if spec.max != float("inf"):
        out["maximum"] = spec.max
    out["description"] = f"{what}, {spec.unit}" + (" (a cumulative register)" if spec.cumulative else "")
    return out


def _kind(kind: DeviceKind) -> Schema:
    spec = KINDS[kind]
    units = {name: m.unit for name, m in spec.metrics.items() if m.unit is not None}
    return {
        "title": kind.value,
        "description": f"{spec.description}: topic kind `{kind.value}`, InfluxDB measurement `{spec.measurement}`.",
        "$ref": "#/$defs/batch",
        "properties": {
            "units": {
                "properties": {name: {"const": unit} for name, unit in units.items()},
                "additionalProperties": False,
            },
            "readings": {
                "items": {
                    "properties": {
                        "values": {
                            "properties": {name: _metric(m) for name, m in spec.metrics.items()},
                            "additionalProperties": False,
                        }
                    }
                }
            },
        },
    }


def readings_batch_schema() -> Schema:
    """One device's batch of readings (`devices.payload.Batch`, `devices.wire.encode_batch`)."""
    batch: Schema = {
        "type": "object",
        "required": ["v", "device", "seq", "readings"],
        "additionalProperties": False,
        "properties": {
            "v": {"const": SCHEMA_VERSION, "description": "Schema version."},
            "device": {"type": "string", "pattern": ID, "description": "The device's registry id."},
            "seq": {
                "type": "array",
                "prefixItems": [{"$ref": "#/$defs/seq"}, {"$ref": "#/$defs/seq"}],
                "items": False,
                "minItems": 2,
                "description": "Per-device sequence numbers of the first and last reading, inclusive.",
            },
            "clock": {
                "const": CLOCK_UNSYNCED,
                "description": (
                    "Present only when every reading was stamped while the gateway clock was not known to be "
                    "synchronised; ingest then stores them with clock_unsynced=true."
                ),
            },
            "units": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "The unit of every metric that has one (gateways send all of the kind's).",
            },
            "readings": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_READINGS_PER_BATCH,
                "items": {"$ref": "#/$defs/reading"},
            },
        },
    }
    return {
        "$schema": DRAFT,
        "$id": _id("readings-batch"),
        "title": "Readings batch (v1)",
        "description": (
            "One device's batch of timestamped readings, published by its gateway on "
            "dp/v1/<district>/<gateway>/<device>/<kind>. This schema accepts a batch valid for some device "
            "kind; `#/$defs/<kind>` (e.g. `readings-batch.schema.json#/$defs/electricity_meter`) is the schema "
            "of the topic's kind. Not expressible here, checked by ingest (`devices.validate_message`): `seq` "
            "covers exactly the readings (reading i has sequence number seq[0] + i), `device` is the topic's "
            "device level and in the registry with that gateway and kind, every metric with a unit has it "
            "declared in `units`, a timestamp is neither before the device was commissioned nor more than 5 "
            "minutes ahead of ingest's clock, and a timestamp is written without a fraction (1, not 1.0). NaN "
            "and infinities are not JSON (a gateway sends a faulty sensor's NaN as `NaN` so that ingest "
            "quarantines it as non_finite)."
        ),
        "$ref": "#/$defs/batch",
        "anyOf": [{"$ref": f"#/$defs/{kind.value}"} for kind in DeviceKind],
        "$defs": {
            "batch": batch,
            "seq": {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
            "reading": {
                "type": "object",
                "required": ["ts", "values"],
                "additionalProperties": False,
                "properties": {
                    "ts": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "When the reading was taken: milliseconds since the Unix epoch, UTC.",
                    },
                    "values": {
                        "type": "object",
                        "minProperties": 1,
                        "description": "Metric name -> value: numbers, or strings for enumerations and ids.",
                    },
                },
            },
            **{kind.value: _kind(kind) for kind in DeviceKind},
        },
    }


def gateway_status_schema() -> Schema:
    """A gateway's retained status (`devices.wire.encode_status`, `gateway.service.Gateway._status_payload`)."""
    heartbeat = ["ts", "uptime_s", "clock", "spool", "published", "delivery", "adapters"]
    return {
        "$schema": DRAFT,
        "$id": _id("gateway-status"),
        "title": "Gateway status (v1)",
        "description": (
            "A gateway's status on dp/v1/<district>/<gateway>/status, retained, QoS 1: `online` with the "
            f"heartbeat at every (re)connection and heartbeat interval; `offline` with reason `{REASON_SHUTDOWN}` "
            "and the heartbeat on a clean stop; its Last Will, set at connect time, `offline` with reason "
            f"`{REASON_CONNECTION_LOST}` and no heartbeat. A simulated gateway adds `simulated` and `sim_ts`."
        ),
        "type": "object",
        "required": ["v", "gateway", "district", "state", "version"],
        "additionalProperties": False,
        "properties": {
            "v": {"const": 1, "description": "Schema version."},
            "gateway": {"type": "string", "pattern": ID},
            "district": {"type": "string", "pattern": ID},
            "state": {"enum": ["online", "offline"]},
            "version": {"type": "string", "description": "The gateway's software version (`simulator`: simulated)."},
            "reason": {"enum": [REASON_CONNECTION_LOST, REASON_SHUTDOWN], "description": "Why it is offline."},
            "ts": {"type": "integer", "minimum": 0, "description": "Gateway clock at sending, UTC ms."},
            "uptime_s": {"type": "number", "minimum": 0},
            "clock": {
                "type": "object",
                "required": ["sync", "source", "jumps", "last_jump_ms"],
                "additionalProperties": False,
                "properties": {
                    "sync": {"enum": ["synchronised", "unsynchronised", "unknown"]},
                    "source": {"type": "string", "description": "What told: adjtimex, timedatectl, none, ..."},
                    "jumps": _count("Wall-clock steps seen since the start."),
                    "last_jump_ms": {"type": "integer", "description": "The size of the last step (ms, signed)."},
                },
            },
            "spool": {
                "type": "object",
                "required": ["readings", "bytes", "buffered", "oldest_age_s", "evicted", "counters"],
                "additionalProperties": False,
                "properties": {
                    "readings": _count("Readings in the spool, committed."),
                    "bytes": _count("Their accounted size (what the spool's byte bound limits)."),
                    "buffered": _count("Readings waiting for the next group commit."),
                    "oldest_age_s": {"type": ["number", "null"], "description": "Age of the oldest spooled one."},
                    "evicted": _count("Readings deleted by the spool's bounds, over its whole life."),
                    "evictions_unconfirmed": _count("Eviction records (runs) sent or to send, not yet confirmed."),
                    "counters": {
                        "type": "object",
                        "additionalProperties": {"type": "integer", "minimum": 0},
                        "description": "Evictions by reason and class, readings spooled unsynced, ...",
                    },
                },
            },
            "published": {
                "type": "object",
                "required": ["messages", "readings", "acked_messages", "acked_readings"],
                "additionalProperties": {"type": "integer", "minimum": 0},
                "description": "Counts since the start (more counters may be added).",
            },
            "delivery": {
                "type": "object",
                "description": (
                    "What became of the published readings (`gateway.delivery`): confirmed by ingest (and deleted), "
                    "published again, and the PUBACK reason codes other than 0 by value (16: no matching subscribers)."
                ),
                "required": [
                    "confirmed_readings",
                    "confirmations",
                    "republished_messages",
                    "republished_readings",
                    "confirms_dropped",
                    "confirms_invalid",
                    "puback_reasons",
                    "delete_on",
                    "unconfirmed_readings",
                    "unconfirmed_messages",
                    "last_confirmation_age_s",
                    "confirm_latency_s",
                ],
                "additionalProperties": False,
                "properties": {
                    "confirmed_readings": _count("Readings ingest confirmed stored or quarantined (then deleted)."),
                    "confirmations": _count("Confirmation documents received."),
                    "republished_messages": _count("Messages published again (not confirmed in time, or refused)."),
                    "republished_readings": _count("Their readings."),
                    "confirms_dropped": _count("Confirmations dropped: the gateway's queue of them was full."),
                    "confirms_invalid": _count("Confirmations that did not decode."),
                    "puback_reasons": {
                        "type": "object",
                        "propertyNames": {"pattern": "^[0-9]+$"},
                        "additionalProperties": {"type": "integer", "minimum": 0},
                    },
                    "delete_on": {"enum": ["confirm", "puback"]},
                    "unconfirmed_readings": _count("Readings published and not yet confirmed."),
                    "unconfirmed_messages": _count("Their messages."),
                    "last_confirmation_age_s": {"type": ["number", "null"], "minimum": 0},
                    "confirm_latency_s": {
                        "description": "Publication to confirmation over the last confirmed messages (s).",
                        "oneOf": [
                            {"type": "null"},
                            {
                                "type": "object",
                                "required": ["p50", "p99", "max", "samples"],
                                "additionalProperties": False,
                                "properties": {
                                    "p50": {"type": "number", "minimum": 0},
                                    "p99": {"type": "number", "minimum": 0},
                                    "max": {"type": "number", "minimum": 0},
                                    "samples": {"type": "integer", "minimum": 1},
                                },
                            },
                        ],
                    },
                },
            },
            "adapters": {
                "type": "object",
                "propertyNames": {"minLength": 1},
                "additionalProperties": {"enum": ["running", "finished", "failed"]},
            },
            "simulated": {"const": True},
            "sim_ts": {"type": "integer", "description": "Simulated time of the status, UTC ms."},
        },
        "allOf": [
            {
                "if": {"properties": {"state": {"const": "online"}}},
                "then": {"not": {"required": ["reason"]}},
                "else": {"required": ["reason"]},
            },
            {
                "if": {"properties": {"reason": {"const": REASON_CONNECTION_LOST}}, "required": ["reason"]},
                "then": {"not": {"anyOf": [{"required": [name]} for name in heartbeat]}},
                "else": {"required": heartbeat},
            },
        ],
    }


def confirmation_schema() -> Schema:
    """What ingest tells a gateway is stored (`devices.wire.encode_confirms`, `decode_confirm`)."""
    return {
        "$schema": DRAFT,
        "$id": _id("confirmation"),
        "title": "Confirmation (v1)",
        "description": (
            "Ingest -> one gateway, on dp/v1/<district>/<gateway>/confirm, QoS 1, not retained. Every reading of "
            "a listed range is stored in InfluxDB or durably quarantined: the gateway may delete it from its "
            "spool. Ranges are inclusive [first, last] with first <= last, sorted and disjoint per device (not "
            "expressible here); a gateway accepts a range it has already deleted. A document is at most 64 KiB "
            "(more ranges go into further documents). Readers ignore members they do not know."
        ),
        "type": "object",
        "required": ["v", "ts", "by", "confirmed"],
        "properties": {
            "v": {"const": CONFIRM_VERSION, "description": "Schema version."},
            "ts": {"type": "integer", "minimum": 0, "description": "When ingest sent it, UTC ms."},
            "by": {"type": "string", "minLength": 1, "description": "The ingest consumer that sent it."},
            "confirmed": {
                "type": "object",
                "propertyNames": {"pattern": ID},
                "additionalProperties": {"type": "array", "items": {"$ref": "#/$defs/range"}},
                "description": "Device id -> its confirmed sequence ranges.",
            },
        },
        "$defs": {
            "range": {
                "type": "array",
                "prefixItems": [{"$ref": "#/$defs/seq"}, {"$ref": "#/$defs/seq"}],
                "items": False,
                "minItems": 2,
                "description": "[first, last], inclusive.",
            },
            "seq": {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
        },
    }


def eviction_notice_schema() -> Schema:
    """A gateway's notice of readings its spool deleted unconfirmed (`devices.wire.encode_eviction`)."""
    return {
        "$schema": DRAFT,
        "$id": _id("eviction-notice"),
        "title": "Eviction notice (v1)",
        "description": (
            "Gateway -> ingest, on dp/v1/<district>/<gateway>/<device>/evicted, QoS 1, not retained: the readings "
            "`seq[0]`..`seq[1]` of the topic's device (every one of them) were deleted by the gateway's spool "
            "bounds before ingest confirmed them. Ingest stores it as an `unstored` point with stage=edge "
            "(`storage.unstored`) and confirms the range like a readings message's; until then the gateway "
            "sends it again. Completeness counts those readings as evicted at the edge, not lost in transit."
        ),
        "type": "object",
        "required": ["v", "device", "seq", "evicted"],
        "additionalProperties": False,
        "properties": {
            "v": {"const": SCHEMA_VERSION, "description": "Schema version."},
            "device": {"type": "string", "pattern": ID, "description": "The topic's device."},
            "seq": {"$ref": "#/$defs/range", "description": "The evicted sequence numbers, inclusive."},
            "evicted": {
                "type": "object",
                "required": ["ts", "reason", "class"],
                "additionalProperties": False,
                "properties": {
                    "ts": {"$ref": "#/$defs/range", "description": "First and last reading's timestamps, UTC ms."},
                    "reason": {"enum": list(EVICTION_REASONS), "description": "The byte bound, or the age bound."},
                    "class": {"enum": list(EVICTION_CLASSES), "description": "The readings' eviction class."},
                },
            },
        },
        "$defs": {
            "range": {
                "type": "array",
                "prefixItems": [{"$ref": "#/$defs/int"}, {"$ref": "#/$defs/int"}],
                "items": False,
                "minItems": 2,
                "description": "[first, last], inclusive, first <= last (not expressible here).",
            },
            "int": {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
        },
    }


#: File name in docs/contract -> its schema.
SCHEMAS = {
    "readings-batch.schema.json": readings_batch_schema,
    "gateway-status.schema.json": gateway_status_schema,
    "confirmation.schema.json": confirmation_schema,
    "eviction-notice.schema.json": eviction_notice_schema,
}


def render(schema: Schema) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write(folder: Path) -> list[Path]:
    """Write every schema into `folder`; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, build in SCHEMAS.items():
        path = folder / name
        path.write_text(render(build()), encoding="utf-8")
        out.append(path)
    return out


if __name__ == "__main__":
    for written in write(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/contract")):
        print(written)

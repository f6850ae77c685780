"""The MQTT topic scheme.

    dp/v1/<district>/<gateway>/<device>/<kind>     one device's batch of readings (QoS 1)
    dp/v1/<district>/<gateway>/status              the gateway's retained status, with its Last Will
    dp/v1/<district>/<gateway>/confirm             ingest -> gateway: the sequence ranges now stored (QoS 1)
    dp/v1/<district>/<gateway>/<device>/evicted    gateway -> ingest: a run of readings its spool deleted
                                                   unconfirmed (`devices.wire.Eviction`, QoS 1)

An eviction notice has the readings topics' six levels, with `evicted` where the kind goes: ingest's
subscription and the gateways' ACL already cover it. An ingest that predates notices quarantines them as
`bad_topic` and cannot confirm them: the gateway keeps its (bounded) records and sends them again with
backoff until an upgraded ingest confirms them (upgrade ingest first, as for confirmations).

Identifiers are restricted (see `ID_PATTERN`) so that they are safe in topics (no `/`, `+`, `#`) and in
InfluxDB line protocol tags (no spaces, commas or `=`), which lets ingest use them without escaping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from devices.kinds import DeviceKind

ROOT = "dp/v1"
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_ID = re.compile(ID_PATTERN)

#: Every readings topic (six levels; the status and confirm topics have five, so they do not match).
READINGS_FILTER = f"{ROOT}/+/+/+/+"
#: Every gateway's confirmations (what ingest's ACL lets it write).
CONFIRM_FILTER = f"{ROOT}/+/+/confirm"


class TopicError(ValueError):
    """A topic that does not follow the scheme."""


def check_id(value: str, what: str = "id") -> str:
    """Return `value` if it is a valid identifier, else raise ValueError saying why."""
    if not _ID.fullmatch(value):
        raise ValueError(
            f"invalid {what} {value!r}: use 1-64 characters from A-Z a-z 0-9 _ . - , starting with a letter or digit"
        )
    return value


def readings_topic(district: str, gateway: str, device: str, kind: DeviceKind | str) -> str:
    return f"{ROOT}/{district}/{gateway}/{device}/{DeviceKind(kind).value}"


#: The last level of an eviction notice's topic (never a device kind).
EVICTED = "evicted"


def evicted_topic(district: str, gateway: str, device: str) -> str:
    return f"{ROOT}/{district}/{gateway}/{device}/{EVICTED}"


def status_topic(district: str, gateway: str) -> str:
    return f"{ROOT}/{district}/{gateway}/status"


def confirm_topic(district: str, gateway: str) -> str:
    """Where ingest tells one gateway which of its readings are stored or quarantined (`devices.wire`)."""
    return f"{ROOT}/{district}/{gateway}/confirm"


def source_of(topic: str) -> tuple[str, str, str] | None:
    """The (district, gateway, device) levels of a readings topic, or None if the topic does not have them.

    Cheaper than `parse_readings_topic` (the kind is not checked): ingest calls it for each message it
    confirms, and a message whose topic is wrong in other ways is still confirmed to the gateway that sent it."""
    parts = topic.split("/")
    if len(parts) != 6 or parts[0] != "dp" or parts[1] != "v1":
        return None
    district, gateway, device = parts[2], parts[3], parts[4]
    if not (_ID.fullmatch(district) and _ID.fullmatch(gateway) and _ID.fullmatch(device)):
        return None
    return district, gateway, device


def shared_readings_filter(group: str) -> str:
    """An MQTT 5 shared subscription: consumers in the same group split the readings between them."""
    return f"$share/{check_id(group, 'share group')}/{READINGS_FILTER}"


@dataclass(frozen=True, slots=True)
class ReadingsTopic:
    district: str
    gateway: str
    device: str
    kind: DeviceKind


def parse_readings_topic(topic: str) -> ReadingsTopic:
    """Split a readings topic into its parts; raises TopicError with the reason."""
    parts = topic.split("/")
    if len(parts) != 6 or f"{parts[0]}/{parts[1]}" != ROOT:
        raise TopicError(f"not a readings topic ({ROOT}/<district>/<gateway>/<device>/<kind>): {topic[:200]!r}")
    _, _, district, gateway, device, kind = parts
    for value, what in ((district, "district"), (gateway, "gateway"), (device, "device")):
        if not _ID.fullmatch(value):
            raise TopicError(f"invalid {what} {value[:80]!r} in topic")
    try:
        device_kind = DeviceKind(kind)
    except ValueError:
        raise TopicError(f"unknown device kind {kind[:80]!r} in topic") from None
    return ReadingsTopic(district, gateway, device, device_kind)

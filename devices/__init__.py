"""The vocabulary every DistrictPulse component speaks: device kinds, payloads, topics and the registry."""

# Submodules load on first use (PEP 562): the gateway on a Raspberry Pi imports `devices.kinds` and
# `devices.topics` without paying for the pydantic models of the payloads it may not need.

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devices.kinds import KINDS, DeviceKind, KindSpec, MetricSpec, spec_for, units_for
    from devices.payload import BATCH_ADAPTER, Batch, Reading
    from devices.registry import Device, Registry, RegistryError, demo_registry_path
    from devices.topics import (
        READINGS_FILTER,
        ReadingsTopic,
        TopicError,
        parse_readings_topic,
        readings_topic,
        shared_readings_filter,
        status_topic,
    )
    from devices.validation import Reason, Rejection, ValidatedMessage, validate_message
    from devices.wire import MAX_READINGS_PER_BATCH, SCHEMA_VERSION, encode_batch

_LAZY: dict[str, str] = {
    "BATCH_ADAPTER": "devices.payload",
    "Batch": "devices.payload",
    "Device": "devices.registry",
    "DeviceKind": "devices.kinds",
    "KINDS": "devices.kinds",
    "KindSpec": "devices.kinds",
    "MAX_READINGS_PER_BATCH": "devices.wire",
    "MetricSpec": "devices.kinds",
    "READINGS_FILTER": "devices.topics",
    "Reading": "devices.payload",
    "ReadingsTopic": "devices.topics",
    "Reason": "devices.validation",
    "Registry": "devices.registry",
    "RegistryError": "devices.registry",  # pydantic-free, like the whole registry
    "Rejection": "devices.validation",
    "SCHEMA_VERSION": "devices.wire",
    "TopicError": "devices.topics",
    "ValidatedMessage": "devices.validation",
    "demo_registry_path": "devices.registry",
    "encode_batch": "devices.wire",
    "parse_readings_topic": "devices.topics",
    "readings_topic": "devices.topics",
    "shared_readings_filter": "devices.topics",
    "spec_for": "devices.kinds",
    "status_topic": "devices.topics",
    "units_for": "devices.kinds",
    "validate_message": "devices.validation",
}

__all__ = [
    "BATCH_ADAPTER",
    "KINDS",
    "MAX_READINGS_PER_BATCH",
    "READINGS_FILTER",
    "SCHEMA_VERSION",
    "Batch",
    "Device",
    "DeviceKind",
    "KindSpec",
    "MetricSpec",
    "Reading",
    "ReadingsTopic",
    "Reason",
    "Registry",
    "RegistryError",
    "Rejection",
    "TopicError",
    "ValidatedMessage",
    "demo_registry_path",
    "encode_batch",
    "parse_readings_topic",
    "readings_topic",
    "shared_readings_filter",
    "spec_for",
    "status_topic",
    "units_for",
    "validate_message",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        if name in {
            "endpoints",
            "kinds",
            "logs",
            "payload",
            "registry",
            "tables",
            "topics",
            "validation",
            "wire",
        }:
            return importlib.import_module(f"devices.{name}")
        raise AttributeError(f"module 'devices' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

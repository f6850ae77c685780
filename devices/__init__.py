"""The vocabulary every DistrictPulse component speaks: device kinds, payloads, topics and the registry."""

from devices.kinds import KINDS, DeviceKind, KindSpec, MetricSpec, spec_for, units_for
from devices.payload import (
    BATCH_ADAPTER,
    MAX_READINGS_PER_BATCH,
    SCHEMA_VERSION,
    Batch,
    Reading,
    encode_batch,
)
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

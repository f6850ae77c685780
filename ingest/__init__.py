"""Ingest: an async MQTT consumer that validates readings, quarantines bad ones and stores good ones in
InfluxDB, acknowledging each message to the broker only after it is stored."""

from ingest.errors import BadInput, TelemetryError
from ingest.mqtt import MqttConfig, MqttSource
from ingest.pipeline import IngestSettings, IngestStats, Pipeline, serve
from storage.errors import QuarantineUnusable, SinkError, SinkRefused, SinkRejected, SinkUnavailable
from storage.influx import InfluxConfig, InfluxV1
from storage.quarantine import Quarantine

__all__ = [
    "BadInput",
    "InfluxConfig",
    "InfluxV1",
    "IngestSettings",
    "IngestStats",
    "MqttConfig",
    "MqttSource",
    "Pipeline",
    "Quarantine",
    "QuarantineUnusable",
    "SinkError",
    "SinkRefused",
    "SinkRejected",
    "SinkUnavailable",
    "TelemetryError",
    "serve",
]

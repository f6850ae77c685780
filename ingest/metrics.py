"""Prometheus metrics of one pipeline, served on `/metrics`.

Counters live as plain integers in `IngestStats` (the hot path only adds to an int) and a custom collector
turns them into metric families at scrape time. Only what needs a distribution is observed as it happens,
once per write request or per acknowledged batch, never per reading:

    dp_ingest_messages_received_total            messages taken from the broker
    dp_ingest_readings_received_total            readings in them (valid or not)
    dp_ingest_readings_valid_total               readings that passed validation
    dp_ingest_readings_quarantined_total{reason}  readings in quarantine, by reason code
    dp_ingest_readings_written_total             readings InfluxDB accepted
    dp_ingest_messages_acked_total               PUBACKs sent
    dp_ingest_confirmed_messages_total / _unconfirmable_messages_total / _confirmations_sent_total /
    _confirmations_dropped_total                 storage confirmations back to the gateways (ingest.confirm)
    dp_ingest_eviction_notices_total             gateways' eviction notices stored (storage.unstored)
    dp_ingest_readings_evicted_at_edge_total     readings those notices say a spool evicted unconfirmed: alert
                                                 when it grows (a gateway's spool bound was reached)
    dp_ingest_accounting_points_total / _accounting_refused_total   `unstored` points written / refused
    dp_ingest_abandoned_readings_total           readings left unacknowledged at a shutdown deadline (the
                                                 broker redelivers them)
    dp_ingest_last_ack_timestamp_seconds         Unix time of the last PUBACK (0 before the first): alert when
                                                 it stops moving while messages keep arriving
    dp_ingest_write_requests_total / _write_retries_total
    dp_ingest_inflight_readings                  validated, not yet acknowledged (gauge; and its _max)
    dp_ingest_write_duration_seconds             histogram per successful write request
    dp_ingest_batch_readings                     histogram of readings per write request
    dp_ingest_ack_lag_seconds                    histogram: oldest message of a batch, receipt to PUBACK
    dp_ingest_mqtt_buffered_max / _shed_total / _resyncs_total   the source's own bounds (MqttSource)
    dp_ingest_sink_down{reason}                  1 while InfluxDB refuses every write: unauthorized (401),
                                                 forbidden (403), not_found (404: database, bucket, retention
                                                 policy); 0 for the other reasons. Alert when any is 1.
    dp_ingest_sink_down_since_timestamp_seconds  Unix time the current refusal started (0: none)
    dp_ingest_sink_refused_total{status}         requests refused so (writes, CREATE DATABASE), by HTTP status
    dp_ingest_quarantine_rows / _bytes / _payloads   what the quarantine holds, as of its last change by ingest
    dp_ingest_quarantine_max_rows / _max_bytes   its limits
    dp_ingest_quarantine_evicted_rows_total / _evicted_bytes_total   oldest rows evicted at the limits

Each pipeline has its own registry, so tests can run several in one process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ingest.mqtt import MqttSource, Source
from ingest.pipeline import IngestStats, Observer
from storage.errors import REFUSAL_REASONS
from storage.quarantine import Quarantine

PREFIX = "dp_ingest"


class _StatsCollector(Collector):
    def __init__(self, stats: IngestStats, source: Source | None) -> None:
        self.stats = stats
        self.source = source
        self.quarantine: Quarantine | None = None

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self.stats
        counters = (
            ("messages_received", "MQTT messages taken from the broker", s.messages),
            ("readings_received", "readings received, valid or not", s.readings_received),
            ("readings_valid", "readings that passed validation", s.readings_valid),
            ("readings_written", "readings InfluxDB accepted", s.readings_stored),
            ("messages_acked", "messages acknowledged to the broker", s.messages_acked),
            ("write_requests", "write requests sent to InfluxDB", s.write_requests),
            ("write_retries", "write requests that failed and were retried", s.write_retries),
            ("confirmed_messages", "settled messages whose range was confirmed to its gateway", s.confirmations.ranges),
            (
                "unconfirmable_messages",
                "settled messages with no gateway, device or seq range to confirm",
                s.confirmations.unconfirmable,
            ),
            ("confirmations_sent", "confirmation documents published to gateways", s.confirmations.documents),
            ("eviction_notices", "gateways' eviction notices stored as unstored points", s.eviction_notices),
            (
                "readings_evicted_at_edge",
                "readings the gateways' notices say their spools evicted unconfirmed",
                s.readings_evicted_at_edge,
            ),
            ("accounting_points", "unstored points written (quarantined runs, eviction notices)", s.accounting_points),
            ("accounting_refused", "unstored points InfluxDB refused", s.accounting_refused),
            ("abandoned_readings", "readings left unacknowledged at a shutdown deadline", s.abandoned_readings),
            (
                "confirmations_dropped",
                "confirmation documents the MQTT client refused (its queue full)",
                s.confirmations.dropped,
            ),
        )
        for name, doc, value in counters:
            yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)
        quarantined = CounterMetricFamily(
            f"{PREFIX}_readings_quarantined", "readings put in quarantine, by reason", labels=["reason"]
        )
        for reason, value in sorted(s.readings_quarantined.items()):
            quarantined.add_metric([reason], value)
        yield quarantined
        yield GaugeMetricFamily(
            f"{PREFIX}_last_ack_timestamp_seconds", "Unix time of the last acknowledgement", value=s.last_ack_s
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_inflight_readings", "validated readings not yet acknowledged", value=s.inflight_readings
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_inflight_readings_max", "high-water mark of in-flight readings", value=s.inflight_readings_max
        )
        yield from self._sink()
        if self.quarantine is not None:
            yield from self._quarantine(self.quarantine)
        if isinstance(self.source, MqttSource):
            src = self.source
            yield GaugeMetricFamily(
                f"{PREFIX}_mqtt_buffered_max", "high-water mark of received messages waiting", value=src.buffered_max
            )
            yield CounterMetricFamily(
                f"{PREFIX}_mqtt_shed", "messages dropped unacknowledged, then resynced", value=src.shed
            )
            yield CounterMetricFamily(f"{PREFIX}_mqtt_resyncs", "reconnects after shedding", value=src.resyncs)
            yield CounterMetricFamily(
                f"{PREFIX}_mqtt_connections", "successful connections to the broker", value=src.connections
            )

    def _sink(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        sink = self.stats.sink
        down = GaugeMetricFamily(
            f"{PREFIX}_sink_down", "1 while InfluxDB refuses every write, by reason", labels=["reason"]
        )
        for reason in sorted(set(REFUSAL_REASONS.values())):
            down.add_metric([reason], 1.0 if sink.down_reason == reason else 0.0)
        yield down
        yield GaugeMetricFamily(
            f"{PREFIX}_sink_down_since_timestamp_seconds",
            "Unix time InfluxDB started refusing every write (0: it accepts them)",
            value=sink.down_since,
        )
        refused = CounterMetricFamily(
            f"{PREFIX}_sink_refused", "requests InfluxDB refused whatever the points, by status", labels=["status"]
        )
        for status, value in sorted(sink.refused_by_status.items()):
            refused.add_metric([str(status)], value)
        yield refused

    def _quarantine(self, q: Quarantine) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        usage = q.usage  # one object, replaced whole after each transaction: a consistent triple
        yield GaugeMetricFamily(f"{PREFIX}_quarantine_rows", "rows in the quarantine", value=usage.rows)
        yield GaugeMetricFamily(
            f"{PREFIX}_quarantine_bytes", "bytes of the quarantine's rows and payloads", value=usage.bytes
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_quarantine_payloads", "distinct payloads in the quarantine", value=usage.payloads
        )
        yield GaugeMetricFamily(f"{PREFIX}_quarantine_max_rows", "the quarantine's row limit", value=q.max_rows)
        yield GaugeMetricFamily(f"{PREFIX}_quarantine_max_bytes", "the quarantine's byte limit", value=q.max_bytes)
        yield CounterMetricFamily(
            f"{PREFIX}_quarantine_evicted_rows", "oldest rows evicted at the limits", value=q.evicted_rows
        )
        yield CounterMetricFamily(
            f"{PREFIX}_quarantine_evicted_bytes", "bytes freed by evictions", value=q.evicted_bytes
        )


class IngestMetrics(Observer):
    """The pipeline's observer: histograms, plus the collector of its counters, in one registry."""

    def __init__(self, stats: IngestStats, source: Source | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._collector = _StatsCollector(stats, source)
        self.registry.register(self._collector)
        self.write_seconds = Histogram(
            f"{PREFIX}_write_duration_seconds",
            "duration of successful InfluxDB write requests",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.batch_readings = Histogram(
            f"{PREFIX}_batch_readings",
            "readings per successful write request",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000),
            registry=self.registry,
        )
        self.ack_lag = Histogram(
            f"{PREFIX}_ack_lag_seconds",
            "from receiving the oldest message of a batch to acknowledging it",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
            registry=self.registry,
        )

    def attach(self, source: Source, quarantine: Quarantine | None = None) -> None:
        """Also export the source's bounds and the quarantine's (the pipeline creates both after the observer)."""
        self._collector.source = source
        self._collector.quarantine = quarantine

    def batch_written(self, readings: int, seconds: float) -> None:
        self.write_seconds.observe(seconds)
        self.batch_readings.observe(readings)

    def acked(self, oldest_received: float, now: float) -> None:
        self.ack_lag.observe(max(0.0, now - oldest_received))


def serve_metrics(metrics: IngestMetrics, host: str, port: int) -> tuple[WSGIServer, threading.Thread]:
    """Serve `/metrics` from a daemon thread; returns the server (its `server_port` is the bound port)."""
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    return server, thread

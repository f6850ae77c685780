"""InfluxDB down or restarted mid-stream: nothing lost, memory bounded, and a shutdown during the outage
leaves the unstored messages in the broker (a private Mosquitto and InfluxDB, stopped and started here)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

from districtpulse.config import Endpoints
from ingest import IngestStats, MqttSource, Pipeline
from tests.support.gateway_mqtt import Publishing
from tests.support.ingest import ingest_process, ingest_settings
from tests.support.readings import em_messages
from tests.support.registries import unique, write_registry
from tests.support.services import count_points, start_services, stop_service
from tests.support.waiting import wait_until

CAP = 500
RECEIVE_MAXIMUM = 20


async def test_influxdb_outage_mid_stream_loses_nothing_and_holds_the_inflight_cap(
    private: Endpoints, tmp_path: Path
) -> None:
    district = unique("io")
    registry = write_registry(tmp_path / "registry.toml", district)
    settings = ingest_settings(
        private,
        tmp_path,
        district,
        "outage",
        unique("ingest-"),
        max_inflight_readings=CAP,
        batch_readings=100,
        mqtt={"receive_maximum": RECEIVE_MAXIMUM, "stall_timeout_s": 1.0},
    )
    stats = IngestStats()
    pipeline = Pipeline(settings, registry, stats=stats)
    source = pipeline.source
    assert isinstance(source, MqttSource)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    await asyncio.wait_for(source.subscribed.wait(), 15)
    try:
        publishing = Publishing(private, em_messages(district, 20_000, 10)).start()  # 2,000 messages
        await wait_until(lambda: stats.readings_stored >= 2000, 30, "ingest under way")

        await asyncio.to_thread(stop_service, private, "influxdb")
        await wait_until(lambda: stats.write_retries >= 3, 30, "failed writes")
        acked_at_outage = stats.messages_acked
        # Saturated: the cap stops intake, the source's buffer fills, the broker keeps the rest.
        await wait_until(lambda: stats.inflight_readings > CAP - 10, 30, "the cap reached")
        await asyncio.to_thread(publishing.join)  # the broker accepted all 2,000 messages meanwhile
        await asyncio.sleep(2.0)  # more retries against the dead database (and the stall timeout passes)
        assert stats.messages_acked == acked_at_outage  # nothing acknowledged while nothing is stored
        assert stats.inflight_readings_max <= CAP
        # raw messages waiting for the pipeline, bounded too (one read may add one per confirmation awaiting its PUBACK)
        assert source.buffered_max <= RECEIVE_MAXIMUM + source.config.max_queued_publishes
        assert stats.readings_stored < 20_000

        await asyncio.to_thread(start_services, private)  # InfluxDB comes back with its data
        await wait_until(lambda: count_points(private, "outage") == 20_000, 60, "every reading stored")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert stats.inflight_readings_max <= CAP  # held during the whole run, outage included
    assert source.buffered_max <= RECEIVE_MAXIMUM + source.config.max_queued_publishes
    assert stats.inflight_readings == 0
    # Mosquitto < 2.0.13 floods past the Receive Maximum once messages queue: the source shed and resynced.
    assert (source.shed == 0) == (source.resyncs == 0)
    assert count_points(private, "outage") == 20_000


def test_sigterm_while_influxdb_is_down_stops_at_the_deadline_and_leaves_messages_in_the_broker(
    private: Endpoints, tmp_path: Path
) -> None:
    district, client_id = unique("it"), unique("ingest-")
    write_registry(tmp_path / "registry.toml", district)
    args = ("--drain-timeout", "1", "--batch-readings", "100")
    proc = ingest_process(private, tmp_path, district, "drain", client_id, *args)
    try:
        messages = em_messages(district, 1500, 10)
        Publishing(private, messages[:100]).start().join()
        asyncio.run(wait_until(lambda: count_points(private, "drain") == 1000, 30, "the first 1,000"))

        stop_service(private, "influxdb")
        Publishing(private, messages[100:]).start().join()  # 500 more, which ingest cannot store
        log = tmp_path / f"{client_id}.log"
        asyncio.run(wait_until(lambda: "write failed" in log.read_text(), 30, "ingest retrying"))

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0  # without a drain deadline it would retry forever
        assert "drain deadline passed" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    start_services(private)
    assert count_points(private, "drain") == 1000
    proc = ingest_process(private, tmp_path, district, "drain", client_id, *args)  # the same session
    try:
        asyncio.run(wait_until(lambda: count_points(private, "drain") == 1500, 30, "the 500 from the broker"))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert count_points(private, "drain") == 1500

"""kill -9 of the ingest process mid-stream, then a restart: every reading is stored exactly once.

The consumer runs as `python -m ingest` in its own process against a private Mosquitto and InfluxDB. What it
had not acknowledged when it died waits in its persistent session and is redelivered to the next process with
the same client id; what it had written but not acknowledged is written again onto the same points.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

from districtpulse.config import Endpoints
from tests.support.gateway_mqtt import Publishing
from tests.support.ingest import ingest_process
from tests.support.readings import em_messages
from tests.support.registries import unique, write_registry
from tests.support.services import count_points
from tests.support.waiting import wait_until

READINGS = 30_000


def test_kill_9_of_the_consumer_mid_stream_then_restart_stores_every_reading_once(
    private: Endpoints, tmp_path: Path
) -> None:
    district, client_id = unique("ck"), unique("ingest-")
    write_registry(tmp_path / "registry.toml", district)
    args = ("--batch-readings", "500")
    first = ingest_process(private, tmp_path, district, "kill", client_id, *args)
    try:
        publishing = Publishing(private, em_messages(district, READINGS, 10), pace_s=0.001).start()
        asyncio.run(wait_until(lambda: count_points(private, "kill") >= 3000, 30, "ingest under way"))
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        at_kill = count_points(private, "kill")
        publishing.join()  # the broker keeps accepting while no consumer runs
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert 3000 <= at_kill < READINGS  # killed mid-stream

    second = ingest_process(private, tmp_path, district, "kill", client_id, *args)
    try:
        asyncio.run(wait_until(lambda: count_points(private, "kill") >= READINGS, 60, "every reading"))
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            assert second.wait(30) == 0
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait()
    assert count_points(private, "kill") == READINGS
    seqs = {row[1] for s in _seq_rows(private) for row in s["values"]}
    assert seqs == set(range(READINGS))  # every reading, each once (a point per device and timestamp)


def _seq_rows(endpoints: Endpoints) -> list[dict[str, object]]:
    from tests.support.services import influx_query

    return influx_query(endpoints, "kill", 'SELECT "seq" FROM "electricity"')

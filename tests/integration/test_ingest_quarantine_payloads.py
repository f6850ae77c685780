"""A 500-reading catch-up batch with one reading InfluxDB 1.6.7 refuses (beyond the retention policy) is
quarantined with its whole payload, once, even when delivered twice; `districtpulse quarantine replay
--config ingest.toml` then runs with ingest's settings (retention policy, batch size, quarantine limits) and,
once the cause is fixed, stores all of it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from devices import encode_batch, readings_topic, units_for
from districtpulse.config import Endpoints
from ingest import IngestStats, Pipeline, Quarantine
from tests.support.gateway_mqtt import Publishing
from tests.support.ingest import ingest_settings
from tests.support.readings import em_values
from tests.support.registries import small_registry_toml, unique, write_registry
from tests.support.services import drop_database, influx_query
from tests.support.waiting import wait_until

OLD = 250  # the reading two hours old, outside the one-hour retention policy
NEW_DEVICE = """
      [[district.building.gateway.device]]
      id = "{district}-em2"
      kind = "electricity_meter"
      commissioned = 2024-01-01T00:00:00Z
"""


def _influxql(endpoints: Endpoints, database: str, q: str) -> None:
    response = httpx.post(f"{endpoints.influx_url}/query", params={"db": database}, data={"q": q}, timeout=30)
    response.raise_for_status()
    assert "error" not in response.json()["results"][0], response.text


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "districtpulse", "quarantine", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("DP_INGEST_")} | {"DP_LOG_LEVEL": "WARNING"},
    )


def _config(path: Path, endpoints: Endpoints, database: str, registry: Path, quarantine: Path) -> Path:
    path.write_text(
        f"registry = {json.dumps(str(registry))}\n"
        f"quarantine = {json.dumps(str(quarantine))}\n"
        "quarantine_max_rows = 1000\n"
        "quarantine_max_bytes = 10000000\n"
        "batch_readings = 100\n"
        "retry_base_s = 0.05\n"
        "retry_max_s = 0.2\n"
        "[influx]\n"
        'version = "1"\n'
        f"url = {json.dumps(endpoints.influx_url)}\n"
        f"database = {json.dumps(database)}\n"
        'retention_policy = "hour"\n'
    )
    return path


def _seqs(endpoints: Endpoints, database: str, device: str) -> list[int]:
    series = influx_query(endpoints, database, f'SELECT "seq" FROM "hour"."electricity" WHERE device = \'{device}\'')
    return sorted(row[1] for s in series for row in s["values"])


async def test_a_catch_up_batch_is_quarantined_whole_once_and_replayed_with_ingest_settings(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    district = unique("qp")
    database = f"test_{district}"
    registry = write_registry(tmp_path / "registry.toml", district)
    _influxql(endpoints, database, f'CREATE DATABASE "{database}"')
    _influxql(endpoints, database, f'CREATE RETENTION POLICY "hour" ON "{database}" DURATION 1h REPLICATION 1')
    now = int(time.time() * 1000)
    units = units_for("electricity_meter")
    readings = [(now - 7_200_000 if i == OLD else now - 300_000 + i * 100, em_values(i)) for i in range(500)]
    catch_up = encode_batch(f"{district}-em", 0, units, readings)
    assert len(catch_up) > 4 * 8192
    topic = readings_topic(district, f"{district}-gw1", f"{district}-em", "electricity_meter")
    unknown_topic = readings_topic(district, f"{district}-gw2", f"{district}-em2", "electricity_meter")
    unknown = encode_batch(f"{district}-em2", 0, units, [(now - 200_000 + i * 100, em_values(i)) for i in range(500)])

    settings = ingest_settings(
        endpoints,
        tmp_path,
        district,
        database,
        f"ingest-{district}",
        mqtt={"session_expiry_s": 0},
        influx={"retention_policy": "hour"},
        batch_readings=1000,
    )
    stats = IngestStats()
    pipeline = Pipeline(settings, registry, stats=stats)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    try:
        await asyncio.wait_for(pipeline.source.subscribed.wait(), 15)
        await asyncio.to_thread(Publishing(endpoints, [(topic, catch_up)]).start().join)
        await wait_until(lambda: stats.messages_acked == 1, 30, "the catch-up batch")
        # the gateway did not get its confirmation and publishes it again, then the unknown device reports
        await asyncio.to_thread(Publishing(endpoints, [(topic, catch_up), (unknown_topic, unknown)]).start().join)
        await wait_until(lambda: stats.messages_acked == 3, 30, "every message")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    try:
        assert _seqs(endpoints, database, f"{district}-em") == [i for i in range(500) if i != OLD]
        q = Quarantine(settings.quarantine)
        try:
            rows = q.rows()
            assert [(r.reason, r.reading_index, r.readings) for r in rows] == [
                ("write_rejected", OLD, 1),
                ("unknown_device", None, 500),
            ]
            assert rows[0].payload == catch_up and not rows[0].payload_truncated  # whole, 34 kB
            assert rows[1].payload == unknown
            assert (q.usage.rows, q.usage.payloads) == (2, 2)
        finally:
            q.close()

        before = _config(tmp_path / "before.toml", endpoints, database, tmp_path / "registry.toml", settings.quarantine)
        listed = _cli("list", "--config", str(before))
        assert listed.returncode == 0, listed.stderr
        summary = json.loads(listed.stderr.strip().splitlines()[-1])
        assert summary["limits"] == {"rows": 1000, "bytes": 10_000_000}  # the configured bounds, not the defaults
        assert summary["stored"]["rows"] == 2 and summary["stored"]["payloads"] == 2

        # nothing fixed yet: the old reading is refused again, the device still unknown; every row stays
        unfixed = _cli("replay", "--config", str(before))
        assert unfixed.returncode == 0, unfixed.stderr
        assert json.loads(unfixed.stdout) == {
            "rows_replayed": 0,
            "readings_written": 0,
            "rows_still_rejected": 1,
            "rows_truncated": 0,
            "rows_write_refused": 1,
            "write_requests": 2,  # the batch of one line, then that message alone
            "aborted": None,
        }

        # the causes fixed: a longer retention policy, the device in the registry
        _influxql(endpoints, database, f'ALTER RETENTION POLICY "hour" ON "{database}" DURATION 4h')
        fixed_registry = tmp_path / "fixed.toml"
        fixed_registry.write_text(small_registry_toml(district) + NEW_DEVICE.format(district=district))
        after = _config(tmp_path / "after.toml", endpoints, database, fixed_registry, settings.quarantine)
        replayed = _cli("replay", "--config", str(after))
        assert replayed.returncode == 0, replayed.stderr
        assert json.loads(replayed.stdout) == {
            "rows_replayed": 2,
            "readings_written": 501,
            "rows_still_rejected": 0,
            "rows_truncated": 0,
            "rows_write_refused": 0,
            "write_requests": 6,  # 501 lines in requests of batch_readings = 100
            "aborted": None,
        }
        assert _seqs(endpoints, database, f"{district}-em") == list(range(500))
        assert _seqs(endpoints, database, f"{district}-em2") == list(range(500))
        q = Quarantine(settings.quarantine)
        try:
            assert (q.usage.rows, q.usage.payloads, q.usage.bytes) == (0, 0, 0)
        finally:
            q.close()
    finally:
        drop_database(endpoints, database)

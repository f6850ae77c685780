"""`districtpulse quarantine list|replay`: readings of a device missing from the registry are quarantined;
after the registry is fixed, replay stores exactly those readings and empties their rows."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from devices import encode_batch, readings_topic, units_for
from districtpulse.config import Endpoints
from ingest import IngestStats, Pipeline, Quarantine
from tests.support.gateway_mqtt import Publishing
from tests.support.ingest import ingest_settings
from tests.support.readings import T0, em_messages, em_values
from tests.support.registries import small_registry_toml, unique, write_registry
from tests.support.services import count_points, drop_database, influx_query
from tests.support.waiting import wait_until

NEW_DEVICE = """
      [[district.building.gateway.device]]
      id = "{district}-em2"
      kind = "electricity_meter"
      commissioned = 2024-01-01T00:00:00Z
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "districtpulse", "quarantine", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=os.environ | {"DP_LOG_LEVEL": "WARNING"},
    )


async def test_replay_after_a_registry_fix_stores_the_quarantined_readings(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    district = unique("qr")
    database = f"test_{district}"
    registry = write_registry(tmp_path / "registry.toml", district)
    settings = ingest_settings(
        endpoints, tmp_path, district, database, f"ingest-{district}", mqtt={"session_expiry_s": 0}
    )
    topic = readings_topic(district, f"{district}-gw2", f"{district}-em2", "electricity_meter")
    units = units_for("electricity_meter")
    unknown = [
        (topic, encode_batch(f"{district}-em2", i, units, [(T0 + (i + k) * 1000, em_values(i + k)) for k in range(5)]))
        for i in range(0, 30, 5)
    ]
    stats = IngestStats()
    pipeline = Pipeline(settings, registry, stats=stats)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    try:
        await asyncio.wait_for(pipeline.source.subscribed.wait(), 15)
        await asyncio.to_thread(Publishing(endpoints, em_messages(district, 20, 10) + unknown).start().join)
        await wait_until(lambda: stats.messages_acked == 8, 30, "every message")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    try:
        assert dict(stats.readings_quarantined) == {"unknown_device": 30}
        q = str(settings.quarantine)

        listed = _cli("list", "--quarantine", q, "--json")
        assert listed.returncode == 0, listed.stderr
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [(r["reason"], r["readings"], r["topic"]) for r in rows] == [("unknown_device", 5, topic)] * 6

        fixed = tmp_path / "fixed.toml"
        fixed.write_text(small_registry_toml(district) + NEW_DEVICE.format(district=district))
        common = ("--quarantine", q, "--registry", str(fixed), "--influx-url", endpoints.influx_url)
        common += ("--influx-db", database, "--influx-version", "auto")
        dry = _cli("replay", *common, "--dry-run")
        assert json.loads(dry.stdout)["readings_written"] == 30, dry.stderr
        assert count_points(endpoints, database) == 20  # a dry run writes nothing

        replayed = _cli("replay", *common)
        assert replayed.returncode == 0, replayed.stderr
        result = json.loads(replayed.stdout)
        assert result == {
            "rows_replayed": 6,
            "readings_written": 30,
            "rows_still_rejected": 0,
            "rows_truncated": 0,
            "rows_write_refused": 0,
            "write_requests": 1,  # 30 lines: one request (batch_readings 5,000), not one per message
            "aborted": None,
        }
        series = influx_query(endpoints, database, f'SELECT "seq" FROM "electricity" WHERE device = \'{district}-em2\'')
        assert sorted(row[1] for s in series for row in s["values"]) == list(range(30))
        assert count_points(endpoints, database) == 50  # 20 stored by ingest + 30 replayed
        quarantine = Quarantine(settings.quarantine)
        try:
            assert quarantine.count_readings() == {}
        finally:
            quarantine.close()

        again = _cli("replay", *common)
        assert json.loads(again.stdout)["rows_replayed"] == 0  # nothing left to replay
    finally:
        drop_database(endpoints, database)

"""InfluxDB 1.6.7 refuses some points of a batch (field type conflict, points beyond the retention policy):
only those readings are quarantined, every other reading of the batch and of its messages is stored.

InfluxDB 1.x answers such a request with 400 "partial write: ... dropped=N" after storing the other points;
ingest bisects the batch down to single lines, so exactly the refused readings end in quarantine, each with
its index in its message, and every message is acknowledged.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from devices import encode_batch, readings_topic, units_for
from districtpulse.config import Endpoints
from ingest import IngestStats, Pipeline, Quarantine
from tests.support.gateway_mqtt import Publishing
from tests.support.ingest import ingest_settings
from tests.support.readings import em_values
from tests.support.registries import unique, write_registry
from tests.support.services import drop_database, influx_query
from tests.support.waiting import wait_until

CONFLICTING = {3, 11, 17}  # readings that carry `voltage`, which the database already has as a string
TOO_OLD = {5, 6}  # readings two hours old, outside the one-hour retention policy


async def test_only_the_refused_readings_are_quarantined(endpoints: Endpoints, tmp_path: Path) -> None:
    district = unique("pw")
    database = f"test_{district}"
    registry = write_registry(tmp_path / "registry.toml", district)
    now = int(time.time() * 1000)
    url = endpoints.influx_url
    httpx.post(f"{url}/query", data={"q": f'CREATE DATABASE "{database}"'}).raise_for_status()
    httpx.post(
        f"{url}/query", data={"q": f'CREATE RETENTION POLICY "hour" ON "{database}" DURATION 1h REPLICATION 1'}
    ).raise_for_status()
    for ts in (now - 300_000, now):  # the readings' shard(s): `voltage` becomes a string field there
        seed = f'electricity,district=seed,building=seed,device=seed voltage="n/a" {ts}'
        response = httpx.post(f"{url}/write", params={"db": database, "rp": "hour", "precision": "ms"}, content=seed)
        assert response.status_code == 204, response.text

    readings = []
    for i in range(20):
        values = {k: v for k, v in em_values(i).items() if k != "voltage"}
        if i in CONFLICTING:
            values["voltage"] = 230.0
        ts = now - 7_200_000 + i if i in TOO_OLD else now - 300_000 + i * 10_000
        readings.append((ts, values))
    topic = readings_topic(district, f"{district}-gw1", f"{district}-em", "electricity_meter")
    units = units_for("electricity_meter")
    messages = [(topic, encode_batch(f"{district}-em", i, units, readings[i : i + 5])) for i in range(0, 20, 5)]

    settings = ingest_settings(
        endpoints,
        tmp_path,
        district,
        database,
        f"ingest-{district}",
        mqtt={"session_expiry_s": 0},
        influx={"retention_policy": "hour"},
        batch_readings=20,
        batch_interval_s=0.5,
    )
    stats = IngestStats()
    pipeline = Pipeline(settings, registry, stats=stats)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    try:
        await asyncio.wait_for(pipeline.source.subscribed.wait(), 15)
        await asyncio.to_thread(Publishing(endpoints, messages).start().join)
        await wait_until(lambda: stats.messages_acked == 4, 30, "every message acknowledged")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    try:
        stored = influx_query(
            endpoints, database, f'SELECT "seq" FROM "hour"."electricity" WHERE device = \'{district}-em\''
        )
        seqs = sorted(row[1] for s in stored for row in s["values"])
        assert seqs == sorted(set(range(20)) - CONFLICTING - TOO_OLD)
        assert stats.readings_stored == 15
        assert dict(stats.readings_quarantined) == {"write_rejected": 5}
        quarantine = Quarantine(settings.quarantine)
        try:
            rows = quarantine._db.execute("SELECT reading_index, reason, detail FROM quarantine").fetchall()
        finally:
            quarantine.close()
        # reading i is in message i // 5 at index i % 5
        assert sorted(index for index, _, _ in rows) == sorted(i % 5 for i in CONFLICTING | TOO_OLD)
        details = " ".join(detail for _, _, detail in rows)
        assert details.count("field type conflict") == 3
        assert details.count("beyond retention policy") == 2
    finally:
        drop_database(endpoints, database)

"""Two consumers share the load through an MQTT 5 shared subscription: every reading is stored exactly once.

Each message goes to one member of the share group, so the two pipelines together process each message
once (their counters add up to what was published, with nothing counted twice) and InfluxDB holds each
reading once. Runs on the shared services: nothing is restarted.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from devices import shared_readings_filter
from districtpulse.config import Endpoints
from ingest import IngestStats, Pipeline
from tests.support.gateway_mqtt import Publishing
from tests.support.ingest import ingest_settings
from tests.support.readings import em_messages
from tests.support.registries import unique, write_registry
from tests.support.services import count_points, drop_database
from tests.support.waiting import wait_until

MESSAGES, PER_MESSAGE = 2000, 10


async def test_two_consumers_in_a_share_group_store_every_reading_exactly_once(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    district, group = unique("sh"), unique("g")
    database = f"test_{district}"
    registry = write_registry(tmp_path / "registry.toml", district)
    topic = f"$share/{group}/dp/v1/{district}/+/+/+"
    assert shared_readings_filter(group) == f"$share/{group}/dp/v1/+/+/+/+"  # the same form, all districts
    consumers = []
    for name in ("a", "b"):
        settings = ingest_settings(
            endpoints,
            tmp_path,
            district,
            database,
            f"ingest-{district}-{name}",
            mqtt={"topics": (topic,), "session_expiry_s": 0},
        )
        stats = IngestStats()
        consumers.append((Pipeline(settings, registry, stats=stats), stats, asyncio.Event()))
    tasks = [asyncio.create_task(p.run(stop)) for p, _, stop in consumers]
    try:
        await asyncio.wait_for(asyncio.gather(*(p.source.subscribed.wait() for p, _, _ in consumers)), 15)
        await asyncio.to_thread(
            Publishing(endpoints, em_messages(district, MESSAGES * PER_MESSAGE, PER_MESSAGE)).start().join
        )
        await wait_until(lambda: sum(s.messages_acked for _, s, _ in consumers) == MESSAGES, 60, "every message")
    finally:
        for _, _, stop in consumers:
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    try:
        a, b = (s for _, s, _ in consumers)
        assert a.messages + b.messages == MESSAGES  # each message went to exactly one consumer
        assert a.readings_stored + b.readings_stored == MESSAGES * PER_MESSAGE
        assert a.messages > 0 and b.messages > 0  # and both took part
        assert count_points(endpoints, database) == MESSAGES * PER_MESSAGE
    finally:
        drop_database(endpoints, database)

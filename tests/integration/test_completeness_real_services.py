"""Completeness from sequence numbers on the real services: a real gateway whose spool overflows while no ingest
is subscribed evicts readings; once ingest is up, the gateway delivers the rest and reports each evicted run,
and `aggregation.jobs.accounts` counts, per device, exactly the spool's own record: issued = its sequence
counter, stored = the points in InfluxDB, evicted = the seqs the spool deleted, lost = 0. A point deleted from
InfluxDB afterwards (a loss nobody reported) shows as lost, and only that one."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from aggregation.completeness import SeqAccount
from aggregation.jobs.accounts import seq_accounts
from districtpulse.config import Endpoints
from storage.influx import InfluxConfig, InfluxV1
from tests.support.delivery import gateway_process, last_status, stored
from tests.support.gateway_mqtt import spooled_counters
from tests.support.ingest import ingest_process
from tests.support.registries import small_registry_toml, unique
from tests.support.services import influx_query

SMALL_SPOOL = 64 * 1024  # the smallest bound: a few hundred readings


def _accounts(endpoints: Endpoints, database: str, district: str, since_ms: int | None = None) -> dict[str, SeqAccount]:
    async def go() -> dict[str, SeqAccount]:
        client = InfluxV1(InfluxConfig(url=endpoints.influx_url, database=database))
        try:
            now = int(time.time() * 1000)
            start = now - 86_400_000 if since_ms is None else since_ms
            return await seq_accounts(client, district, start, now + 86_400_000)
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.mark.xfail(
    strict=False,
    reason="under CPU load (about 1 run in 3 with 3 busy loops beside it, 1 of 2 CI runs at 0f5774c) the edge points"
    " cover 1-3 % fewer readings than the spool evicted (e.g. 2096 of 2128); every record was confirmed. Neither a"
    " same-first_ts collision nor extending an already published record explains it; open, see the stop-20 note",
)
def test_readings_evicted_at_the_edge_are_told_apart_from_readings_lost_in_transit(
    private: Endpoints, tmp_path: Path
) -> None:
    district = unique("cm")
    (tmp_path / "registry.toml").write_text(small_registry_toml(district))
    database = f"db_{district}"
    ticks = 1500  # 3 devices at 100 ticks/s: 4,500 readings, ten times what the spool holds
    gateway = gateway_process(tmp_path, private, district, ticks, "--exit-when-idle", spool_bytes=SMALL_SPOOL)
    ingest = None
    try:
        deadline = time.monotonic() + 60
        while True:  # nobody subscribed: PUBACK 0x10, nothing deleted but by the bound
            try:
                _, _, counters = spooled_counters(tmp_path / "spool.sqlite")
            except sqlite3.Error:
                counters = {}
            if sum(v for k, v in counters.items() if k.startswith("evicted_")) > 1000:
                break
            assert time.monotonic() < deadline, last_status(tmp_path)
            time.sleep(0.1)
        ingest = ingest_process(private, tmp_path, district, database, f"ingest-{district}")
        assert gateway.wait(120) == 0, last_status(tmp_path)
    finally:
        if ingest is not None:
            ingest.send_signal(signal.SIGTERM)
            ingest.wait(30)
        if gateway.poll() is None:
            gateway.kill()

    next_seq, left, counters = spooled_counters(tmp_path / "spool.sqlite")
    with sqlite3.connect(tmp_path / "spool.sqlite") as db:
        records_left = db.execute("SELECT count(*) FROM evictions").fetchone()[0]
    assert left == 0 and records_left == 0  # everything delivered or reported, and confirmed
    evicted_total = sum(v for k, v in counters.items() if k.startswith("evicted_"))
    got = stored(private, database)
    assert sum(next_seq.values()) == 3 * ticks
    # the edge points name the seqs the spool deleted, the ingest points those quarantined (the simulated
    # adapter at 100 ticks/s stamps a few readings with the millisecond of the one before: duplicate_timestamp);
    # with the stored ones they are every seq the gateway issued
    points: dict[tuple[str, str], set[int]] = {}
    for series in influx_query(
        private, database, 'SELECT "first_seq", "last_seq" FROM "unstored" GROUP BY "device", "stage"'
    ):
        key = (series["tags"]["device"], series["tags"]["stage"])
        for _, first, last in series["values"]:
            points.setdefault(key, set()).update(range(int(first), int(last) + 1))
    assert sum(len(v) for (_, stage), v in points.items() if stage == "edge") == evicted_total
    expected = {}
    for device, n in next_seq.items():
        kept = set(got.get(device, []))
        edge, quarantined = points.get((device, "edge"), set()), points.get((device, "ingest"), set())
        assert kept | edge | quarantined == set(range(n)), device
        assert not kept & quarantined
        # (a reading in flight when the spool shed it may have reached ingest too, after its 0x10, and be in
        # `kept` and `edge` both: the account counts it once, as stored)
        expected[device] = SeqAccount(n, len(kept), len(quarantined), n - len(kept) - len(quarantined), 0)

    accounts = _accounts(private, database, district)
    assert accounts == expected
    assert sum(a.evicted for a in accounts.values()) > 1000

    # A point that disappears between the gateway and the KPIs, with nobody saying so, is a loss. Counted over
    # the period after the meter's last eviction: before it, a reading stored *and* reported evicted (in
    # flight when the spool shed it) would make the evicted count cover one such loss (aggregation.completeness).
    meter = f"{district}-em"
    (last_eviction,) = influx_query(
        private, database, f'SELECT max("last_ts") FROM "unstored" WHERE "device" = \'{meter}\' AND "stage" = \'edge\''
    )
    since = int(last_eviction["values"][0][1]) + 1
    before = _accounts(private, database, district, since)[meter]
    assert before.lost == 0 and before.evicted == 0 and before.stored > 100
    (series,) = influx_query(
        private, database, f'SELECT "seq" FROM "electricity" WHERE "device" = \'{meter}\' AND time >= {since}ms'
    )
    ts = series["values"][len(series["values"]) // 2][0]
    response = httpx.post(
        f"{private.influx_url}/query",
        params={"db": database},
        data={"q": f'DELETE FROM "electricity" WHERE "device" = \'{meter}\' AND time = {ts}ms'},
        timeout=30,
    )
    response.raise_for_status()
    after = _accounts(private, database, district, since)[meter]
    assert after == SeqAccount(before.issued, before.stored - 1, before.quarantined, 0, 1)

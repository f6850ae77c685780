"""On the real services: a gateway whose clock boots at 1970, then runs on a stale saved time, then is
synchronised, then loses sync again. Its messages go through Mosquitto to ingest and InfluxDB, where exactly
the readings taken before sync (with a plausible time) carry `clock_unsynced=true`, and the 1970 ones are in
quarantine as `before_commissioning`, none stored.
"""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from devices import KINDS, Registry
from districtpulse.config import Endpoints
from gateway import BrokerConfig, Publisher
from gateway.adapters import DeviceRef
from gateway.publisher import Will
from gateway.service import Gateway, OnAck, Subscriptions, Timing
from gateway.spool import Spool
from ingest import Quarantine
from tests.support.clock_script import PHASES, PhasedAdapter, ScriptedTime
from tests.support.gateway_mqtt import clear_retained
from tests.support.ingest import RunningIngest, running_ingest


def run_gateway(endpoints: Endpoints, district: str, gateway_id: str, adapter: PhasedAdapter, spool_path: Path) -> int:
    """The gateway service with the real publisher, on this thread (it owns the spool's connection)."""
    clock = adapter.clock
    spool = Spool(spool_path, now_ms=clock.now_ms, synced=lambda: clock.synced)
    broker = BrokerConfig(endpoints.mqtt_host, endpoints.mqtt_port, client_id=f"gw-{uuid.uuid4().hex[:8]}")

    def make_publisher(on_ack: OnAck, will: Will, subscriptions: Subscriptions) -> Publisher:
        return Publisher(broker, on_ack=on_ack, will=will, drain_timeout=5, subscriptions=subscriptions)

    timing = Timing(
        commit_interval_s=0.01,
        publish_interval_s=0.01,
        clock_check_interval_s=0.005,
        heartbeat_interval_s=3600,
        drain_timeout_s=5,
    )
    gateway = Gateway(gateway_id, district, spool, {"phased": adapter}, make_publisher, clock, timing)
    stop = threading.Event()
    timer = threading.Timer(60, stop.set)  # a safety net, never reached when the test passes
    timer.start()
    try:
        return gateway.run(stop, exit_when_idle=True)
    finally:
        timer.cancel()


async def test_exactly_the_readings_taken_before_sync_are_flagged_in_influxdb(
    endpoints: Endpoints,
    tmp_path: Path,
    make_registry: Callable[[str], Registry],
    registry_text: Callable[[str], str],
    unique_district: str,
) -> None:
    district = unique_district
    gateway_id = f"{district}-gw1"
    registry = make_registry(district)
    devices = [
        DeviceRef(registry.devices[f"{district}-{d}"].id, registry.devices[f"{district}-{d}"].kind)
        for d in ("em", "bs")
    ]
    time = ScriptedTime(PHASES[0].start_ms, PHASES[0].sync)
    adapter = PhasedAdapter(devices, PHASES, time, time.clock())
    per_phase = {p.name: p.ticks * len(devices) for p in PHASES}  # boot 6, stale 8, synced 10, lost 4
    total = sum(per_phase.values())

    try:
        async with running_ingest(RunningIngest, endpoints, registry, registry_text(district), tmp_path) as ingest:
            stats = ingest.stats
            rc = await asyncio.to_thread(
                run_gateway, endpoints, district, gateway_id, adapter, tmp_path / "spool.sqlite"
            )
            assert rc == 0
            for _ in range(600):
                if stats.readings_stored + sum(stats.readings_quarantined.values()) >= total:
                    break
                await asyncio.sleep(0.05)
            assert stats.readings_stored == total - per_phase["boot"], stats.as_dict()
            assert dict(stats.readings_quarantined) == {"before_commissioning": per_phase["boot"]}

            points: dict[tuple[str, int], bool] = {}
            for measurement in (KINDS[d.kind].measurement for d in devices):
                q = f'SELECT "seq", "clock_unsynced" FROM "{measurement}" GROUP BY "device"'
                for s in ingest.query(q):
                    for ts, _seq, flag in s["values"]:
                        assert flag in (True, None)  # the field is present only when true
                        points[(s["tags"]["device"], ts)] = flag is True
            stored_truth = {key: phase for key, phase in adapter.truth.items() if phase != "boot"}
            assert points.keys() == stored_truth.keys()
            assert {key for key, on in points.items() if on} == {
                key for key, phase in stored_truth.items() if phase in ("stale", "lost")
            }
            assert sum(points.values()) == per_phase["stale"] + per_phase["lost"] == 12
            # what an operator or the aggregation would run: InfluxQL filters on the boolean field
            flagged = ingest.query('SELECT count("seq") FROM /.*/ WHERE "clock_unsynced" = true')
            assert sum(s["values"][0][1] for s in flagged) == 12
            # InfluxQL cannot select the points where a field is absent (`!= true` matches none of them), so the
            # trusted readings are counted as all minus flagged (lineprotocol.py's docstring says so)
            counts = ingest.query('SELECT count("seq"), count("clock_unsynced") FROM /.*/')
            assert sum(s["values"][0][1] - s["values"][0][2] for s in counts) == per_phase["synced"] == 10
            unflagged = ingest.query('SELECT count("seq") FROM /.*/ WHERE "clock_unsynced" != true')
            assert unflagged == []

            quarantine = Quarantine(ingest.quarantine_path)
            try:
                rows = quarantine.rows()
            finally:
                quarantine.close()
            assert [r.reason for r in rows] == ["before_commissioning"] * per_phase["boot"]
            assert all(r.readings == 1 for r in rows)
            quarantined = {
                (r.device, int(m.group(1))) for r in rows if (m := re.search(r": ts (\d+) is before", r.detail))
            }
            assert quarantined == {key for key, phase in adapter.truth.items() if phase == "boot"}
            assert all(ts < 86_400_000 for _, ts in quarantined)  # stamped on 1970-01-01
    finally:
        clear_retained(endpoints.mqtt_host, endpoints.mqtt_port, f"dp/v1/{district}/{gateway_id}/status")

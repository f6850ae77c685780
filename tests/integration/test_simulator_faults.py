"""End to end with faults on: simulator -> real gateway publishing (per-gateway connections, real disconnects)
-> Mosquitto -> in-process ingest -> InfluxDB + quarantine. InfluxDB must hold exactly the points the truth
file says should be stored, with their values, exactly the ones it lists as sent with an unsynchronised clock
flagged `clock_unsynced=true`, and the quarantine exactly the rest, by reason. The run's retained gateway
statuses are removed at the end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest

from districtpulse.config import Endpoints
from simulators import Cadence, FaultConfig, SimConfig, Simulation, load_truth
from simulators.publish import publish
from tests.support.gateway_mqtt import clear_retained
from tests.support.registries import fleet_registry
from tests.support.sim_ingest import Ingest, running_ingest


@pytest.fixture
async def ingest(endpoints: Endpoints, tmp_path: Path) -> AsyncIterator[Ingest]:
    async with running_ingest(endpoints, fleet_registry("s" + uuid.uuid4().hex[:10]), tmp_path) as harness:
        yield harness


async def test_influxdb_holds_exactly_what_the_truth_says_and_the_quarantine_the_rest(
    ingest: Ingest, tmp_path: Path
) -> None:
    config = SimConfig(
        start=date(2026, 2, 2),
        days=3,
        seed=11,
        cadence=Cadence(300, 900),
        faults=FaultConfig.parse("all", days=3),
        truth_points=True,
    )
    sim = Simulation(ingest.registry, config)
    try:
        report = await asyncio.to_thread(
            publish,
            sim.stream(),
            host=ingest.endpoints.mqtt_host,
            port=ingest.endpoints.mqtt_port,
            client_prefix=f"sim-{ingest.district}",
        )
    finally:
        for gateway in ingest.registry.gateways:
            clear_retained(
                ingest.endpoints.mqtt_host, ingest.endpoints.mqtt_port, f"dp/v1/{ingest.district}/{gateway}/status"
            )
    assert report.statuses > 0
    truth_path = tmp_path / "truth.json"
    sim.truth.write(truth_path)
    truth = load_truth(truth_path)
    assert report.messages == truth["totals"]["messages_published"]
    assert report.reconnects == sum(1 for f in truth["faults"] if f["fault"] == "disconnect")
    await ingest.wait_acked(report.messages)

    expected = {(device, ts): values for device, points in truth["points"].items() for ts, values in points.items()}
    stored = ingest.points()
    flagged = {key for key, values in stored.items() if values.pop("clock_unsynced", None) is True}
    expected_flagged = {(d, ts) for d, t in truth["devices"].items() for ts in t["clock_unsynced_stored"]}
    assert flagged == expected_flagged
    assert len(flagged) == truth["totals"]["clock_unsynced_stored"] > 0
    assert truth["totals"]["clock_unsynced_sent"] > len(flagged)  # the 1970-stamped ones are quarantined
    assert len(stored) == truth["totals"]["expected_stored"] == len(expected)
    assert stored == expected
    by_reason = ingest.quarantined()
    assert by_reason == truth["totals"]["expected_quarantined"]
    assert {"non_finite", "out_of_range", "before_commissioning"} <= set(by_reason)
    faults = {f["fault"] for f in truth["faults"]}
    assert {"disconnect", "duplicate", "late", "out_of_order", "malformed", "rollover", "clock_skew"} <= faults

"""Simulated gateways' statuses on the real Mosquitto: every status the run produced arrives, in order, on each
gateway's retained status topic; the dashboard reads the heartbeats as online; after the run the broker
retains each gateway's shutdown. Own district id; the retained messages are removed at the end."""

from __future__ import annotations

import json
import time
import uuid
from datetime import date
from typing import Any

from dashboard.snapshot import gateway_view
from dashboard.sources import parse_status
from districtpulse.config import Endpoints
from simulators import Cadence, FaultConfig, SimConfig, Simulation, StatusEvent
from simulators.publish import publish
from simulators.status import REASON_CONNECTION_LOST, REASON_SHUTDOWN
from tests.support.gateway_mqtt import Recorder, clear_retained
from tests.support.registries import fleet_registry


def test_statuses_are_published_retained_and_the_shutdown_stays_after_the_run(endpoints: Endpoints) -> None:
    district = "st" + uuid.uuid4().hex[:10]
    registry = fleet_registry(district)
    config = SimConfig(
        start=date(2026, 2, 2),
        days=1,
        seed=3,
        cadence=Cadence(900, 3600),  # few readings: this test is about the statuses
        faults=FaultConfig.parse("disconnect=1", days=1),
    )
    sim = Simulation(registry, config)
    gateways = sorted(registry.gateways)
    topics = [f"dp/v1/{district}/{g}/status" for g in gateways]
    live = Recorder(endpoints.mqtt_host, endpoints.mqtt_port, f"dp/v1/{district}/+/status")
    expected: list[StatusEvent] = []

    def recording(items: Any) -> Any:
        for item in items:
            if isinstance(item, StatusEvent):
                expected.append(item)
            yield item

    try:
        report = publish(
            recording(sim.stream()),
            host=endpoints.mqtt_host,
            port=endpoints.mqtt_port,
            client_prefix=f"sim-{district}",
        )
        (fault,) = [f for f in sim.truth.faults if f["fault"] == "disconnect"]
        hours = [sim.start_ms + k * 3_600_000 for k in range(24)]
        missed = sum(1 for t in hours if fault["start_ms"] <= t <= fault["end_ms"])  # no heartbeat while offline
        # hourly heartbeats (the first is the start's online), the outage's offline + online, the shutdowns
        assert report.statuses == len(expected) == len(gateways) * (24 + 1) - missed + 2
        live.wait_for(lambda: len(live.snapshot()) >= report.statuses, 20, "every status")
        got = live.snapshot()
        assert len(got) == report.statuses
        for g, topic in zip(gateways, topics, strict=True):
            docs = [json.loads(m.payload) for m in got if m.topic == topic]
            mine = [s for s in expected if s.gateway == g]
            assert [(d["state"], d.get("reason"), d["sim_ts"]) for d in docs] == [
                (s.state, s.reason, s.at_ms) for s in mine
            ]
            assert all(d["gateway"] == g and d["district"] == district and d["simulated"] for d in docs)
        outage = [s for s in expected if s.reason == REASON_CONNECTION_LOST]
        assert len(outage) == 1

        # What the dashboard makes of a live heartbeat: online (its ts is the wall clock at publishing).
        heartbeat = next(m for m in got if json.loads(m.payload)["state"] == "online")
        now = time.time_ns() // 1_000_000
        status = parse_status(gateways[0], heartbeat.payload, now, retained=False)
        assert gateway_view(gateways[0], "b", 1, status, now, late_after_s=180).state == "online"

        after = Recorder(endpoints.mqtt_host, endpoints.mqtt_port, f"dp/v1/{district}/+/status")
        try:
            after.wait_for(lambda: len(after.snapshot()) >= len(gateways), 10, "the retained statuses")
            retained = after.snapshot()
            assert sorted(m.topic for m in retained) == topics
            assert all(m.retain for m in retained)
            final = {m.topic: json.loads(m.payload) for m in retained}
            shutdown = [s for s in expected if s.reason == REASON_SHUTDOWN]
            assert [
                (final[s.topic]["state"], final[s.topic]["reason"], final[s.topic]["sim_ts"]) for s in shutdown
            ] == [("offline", REASON_SHUTDOWN, s.at_ms) for s in shutdown]
            assert sorted(s.gateway for s in shutdown) == gateways
        finally:
            after.close()
    finally:
        live.close()
        for topic in topics:
            clear_retained(endpoints.mqtt_host, endpoints.mqtt_port, topic)
    gone = Recorder(endpoints.mqtt_host, endpoints.mqtt_port, f"dp/v1/{district}/+/status")
    try:
        time.sleep(0.5)
        assert gone.snapshot() == []  # the cleanup left nothing retained
    finally:
        gone.close()

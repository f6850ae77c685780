"""Simulated gateways publish the status a real gateway publishes: the same topic, document keys and lifecycle
(online at start, heartbeats, offline during an outage and at the end), checked against `gateway.service`
itself and against the messages of the run."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from devices import Registry, status_topic
from gateway.clock import Clock
from gateway.publisher import Will
from gateway.service import Gateway, Timing
from gateway.spool import Spool
from simulators import (
    Cadence,
    DistrictSimulator,
    FaultConfig,
    Message,
    SimConfig,
    Simulation,
    StatusEvent,
    encode_status,
)
from simulators.publish import _will
from simulators.status import REASON_CONNECTION_LOST, REASON_SHUTDOWN
from tests.support.registries import fleet_registry
from tests.support.simulation import run

T0 = 1_790_000_000_000
INTERVAL_MS = 900_000


class _NoPublisher:
    """Just enough of a publisher to build a real `Gateway` and read its status documents."""

    connections = 0
    available = 10
    connected = False

    def start(self) -> None: ...

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, timeout: float | None = None) -> int:
        raise AssertionError("not used")

    def wait_acked(self, timeout: float) -> bool:
        return True

    def close(self) -> None: ...


def _shape(doc: Any) -> Any:
    """The nested key structure of a JSON document (values dropped)."""
    if isinstance(doc, dict):
        return {k: _shape(v) for k, v in doc.items()}
    return None


def real_gateway_documents(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
    """(online heartbeat, shutdown, Last Will, status topic) of a real `gateway.service.Gateway`."""
    wills: list[Will] = []

    def make(_on_ack: Callable[[int, int], None], will: Will, _subscriptions: object) -> _NoPublisher:
        wills.append(will)
        return _NoPublisher()

    spool = Spool(tmp_path / "spool.sqlite", now_ms=lambda: T0)
    clock = Clock(probe=lambda: ("synchronised", "test"), wall_ns=lambda: T0 * 1_000_000)
    gateway = Gateway("gw1", "d1", spool, {}, make, clock, Timing())
    try:
        online = json.loads(gateway._status_payload("online"))
        shutdown = json.loads(gateway._status_payload("offline", reason="shutdown"))
    finally:
        spool.close()
    return online, shutdown, json.loads(wills[0].payload), gateway.status_topic


def test_the_status_document_has_exactly_the_keys_a_real_gateway_sends(tmp_path: Path) -> None:
    real_online, real_shutdown, real_will, real_topic = real_gateway_documents(tmp_path)
    event = StatusEvent("gw1", "d1", T0 + 5_000, "online", spool_readings=3, oldest_ms=T0, started_ms=T0)
    assert event.topic == real_topic == status_topic("d1", "gw1")
    ours = json.loads(encode_status(event, now_ms=T0 + 7_000))
    assert ours.pop("simulated") is True
    assert ours.pop("sim_ts") == T0 + 5_000
    assert ours.pop("adapters") == {"simulator": "running"}  # adapter name -> state, as the real one says
    assert real_online.pop("adapters") == {}  # (built without adapters)
    assert _shape(ours) == _shape(real_online)
    stop = StatusEvent("gw1", "d1", T0 + 9_000, "offline", REASON_SHUTDOWN, started_ms=T0)
    ours_stop = json.loads(encode_status(stop, now_ms=T0 + 9_500))
    for doc in (ours_stop, real_shutdown):
        assert (doc.pop("state"), doc.pop("reason")) == ("offline", REASON_SHUTDOWN)
        doc.pop("adapters")
    assert (ours_stop.pop("simulated"), ours_stop.pop("sim_ts"), ours_stop["ts"]) == (True, T0 + 9_000, T0 + 9_500)
    assert _shape(ours_stop) == _shape(real_shutdown)
    assert ours["clock"]["sync"] in ("synchronised", "unsynchronised")
    assert (ours["ts"], ours["uptime_s"], ours["spool"]["readings"], ours["spool"]["oldest_age_s"]) == (
        T0 + 7_000,
        5.0,
        3,
        5.0,
    )
    will = json.loads(_will("d1", "gw1", None).payload)
    assert will.pop("simulated") is True
    assert will.pop("version") == "simulator"
    real_will.pop("version")
    assert (
        will
        == real_will
        == {"v": 1, "gateway": "gw1", "district": "d1", "state": "offline"} | {"reason": REASON_CONNECTION_LOST}
    )
    assert _will("d1", "gw1", None).retain
    load = _will("d1", "gw1", "load/v1")
    assert (load.topic, load.retain) == ("load/v1/d1/gw1/status", False)


def _config(faults: str, *, heartbeat_s: int | None = None) -> SimConfig:
    return SimConfig(
        start=date(2026, 2, 2),
        days=1,
        seed=4,
        cadence=Cadence(300, 900),
        faults=FaultConfig.parse(faults, days=1),
        heartbeat_s=heartbeat_s,
    )


def test_each_gateway_says_online_at_start_beats_every_interval_and_offline_at_the_end() -> None:
    registry = fleet_registry()
    sim = Simulation(registry, _config(""))
    order = [x for x in sim.stream() if isinstance(x, Message | StatusEvent)]
    statuses = [x for x in order if isinstance(x, StatusEvent)]
    gateways = sorted(registry.gateways)
    assert sim.gateways == gateways and len(gateways) >= 2
    per_day = (sim.end_ms - sim.start_ms) // INTERVAL_MS  # 96
    for g in gateways:
        mine = [s for s in statuses if s.gateway == g]
        assert [s.state for s in mine] == ["online"] * per_day + ["offline"]
        assert [s.at_ms for s in mine[:-1]] == [sim.start_ms + k * INTERVAL_MS for k in range(per_day)]
        assert (mine[-1].reason, mine[-1].at_ms) == (REASON_SHUTDOWN, sim.end_ms)
        assert all(s.clock_synced and s.spool_readings == 0 and s.evicted == 0 for s in mine)
        assert all(s.topic == f"dp/v1/{sim.district.id}/{g}/status" for s in mine)
    # The shutdown statuses come after every message; each status counts what its gateway published before it.
    assert all(isinstance(x, StatusEvent) and x.state == "offline" for x in order[-len(gateways) :])
    sent: dict[str, list[int]] = {g: [0, 0] for g in gateways}
    for item in order:
        if isinstance(item, Message):
            sent[item.gateway][0] += 1
            sent[item.gateway][1] += item.readings
        else:
            assert [item.published_messages, item.published_readings] == sent[item.gateway]
    assert sum(m for m, _ in sent.values()) == sim.truth.published_messages > 0
    assert sum(r for _, r in sent.values()) == sim.truth.published_readings


def test_a_real_time_heartbeat_is_every_60_simulated_seconds() -> None:
    registry = fleet_registry()
    sim, got = run(registry, _config("", heartbeat_s=60))
    g = sorted(registry.gateways)[0]
    online = [s.at_ms for s in got.statuses if s.gateway == g and s.state == "online"]
    assert online == list(range(sim.start_ms, sim.end_ms, 60_000))


def test_an_outage_says_offline_then_online_with_what_the_spool_held() -> None:
    registry = fleet_registry()
    sim, got = run(registry, _config("disconnect=1"))
    (fault,) = [f for f in sim.truth.faults if f["fault"] == "disconnect"]
    g, start, end = fault["gateway"], fault["start_ms"], fault["end_ms"]
    mine = [s for s in got.statuses if s.gateway == g]
    down = [i for i, s in enumerate(mine) if s.state == "offline"]
    assert len(down) == 2  # the outage and the end of the run
    off, back = mine[down[0]], mine[down[0] + 1]
    assert (off.at_ms, off.reason) == (start, REASON_CONNECTION_LOST)
    assert (back.at_ms, back.state, back.reason) == (end, "online", None)
    assert all(not start <= s.at_ms <= end for s in mine if s not in (off, back))
    # Independently: the batches whose interval ended during the outage are the ones the spool held.
    held = [
        m
        for m in got.messages
        if m.gateway == g
        and start <= sim.start_ms + ((_first_ts(m) - sim.start_ms) // INTERVAL_MS + 1) * INTERVAL_MS < end
    ]
    assert held and len(held) == fault["messages_held"]
    assert back.spool_readings == sum(m.readings for m in held)
    assert back.oldest_ms == min(_first_ts(m) for m in held)
    doc = json.loads(encode_status(back, now_ms=0))
    assert doc["spool"]["oldest_age_s"] == round((end - back.oldest_ms) / 1000, 1)
    other = [s for s in got.statuses if s.gateway != g]
    assert all(s.state == "online" for s in other[:-1])


def _first_ts(m: Message) -> int:
    return int(json.loads(m.payload)["readings"][0]["ts"])


def test_the_heartbeat_says_unsynchronised_while_an_unsynced_boot_has_the_clock_wrong() -> None:
    registry = fleet_registry()
    sim, got = run(registry, _config("unsynced_boot=3", heartbeat_s=60))
    boots = [f for f in sim.truth.faults if f["fault"] == "unsynced_boot"]
    assert boots
    unsynced = [s for s in got.statuses if s.state == "online" and not s.clock_synced]
    assert unsynced
    expected = [
        s
        for s in got.statuses
        if s.state == "online"
        and any(
            f["gateway"] == s.gateway and f["boot_ms"] + f["rebooting_ms"] <= s.at_ms < f["synced_ms"] for f in boots
        )
    ]
    assert unsynced == expected
    rebooting = [
        s
        for s in got.statuses
        if any(f["gateway"] == s.gateway and f["boot_ms"] <= s.at_ms < f["boot_ms"] + f["rebooting_ms"] for f in boots)
    ]
    assert rebooting == []  # a rebooting gateway sends no heartbeat


def test_the_demo_entry_point_streams_the_statuses_with_the_same_messages(demo_registry: Registry) -> None:
    day = date(2026, 2, 2)
    items = list(DistrictSimulator(demo_registry, day).stream())
    messages = [x for x in items if isinstance(x, Message)]
    assert messages == list(DistrictSimulator(demo_registry, day).messages())
    statuses = [x for x in items if isinstance(x, StatusEvent)]
    assert sorted({s.gateway for s in statuses}) == sorted(demo_registry.gateways)
    assert [s.state for s in items[-len(demo_registry.gateways) :] if isinstance(s, StatusEvent)] == ["offline"] * len(
        demo_registry.gateways
    )

"""The service loop with an in-memory publisher: what is published, when it is deleted, what survives."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices import BATCH_ADAPTER, DeviceKind, encode_batch, units_for
from gateway.adapters import Adapter
from gateway.clock import Clock
from gateway.delivery import DeliveryPolicy
from gateway.publisher import Will
from gateway.service import Gateway, Timing, consecutive_run, encode_message
from gateway.spool import Spool, SpooledReading, encode_values
from tests.support.gateway_fakes import FakePublisher, FixedClock, ListAdapter

T0 = 1_790_000_000_000
FAST = Timing(commit_interval_s=0.005, publish_interval_s=0.005, heartbeat_interval_s=3600, drain_timeout_s=1)

values_st = st.dictionaries(
    st.sampled_from(["energy_import", "power", "session_id", "x"]),
    st.one_of(st.floats(allow_nan=True, allow_infinity=False), st.text(max_size=8)),
    min_size=1,
)


@given(
    device=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True),
    first=st.integers(0, 2**40),
    readings=st.lists(st.tuples(st.integers(0, 2**45), values_st), min_size=1, max_size=5),
)
def test_the_message_is_byte_for_byte_what_encode_batch_writes(
    device: str, first: int, readings: list[tuple[int, dict[str, float | str]]]
) -> None:
    units = units_for(DeviceKind.ELECTRICITY_METER)
    rows = [SpooledReading(first + i, ts, False, encode_values(v)) for i, (ts, v) in enumerate(readings)]
    got = encode_message(device, json.dumps(units, separators=(",", ":")), rows)
    assert got == encode_batch(device, first, units, readings)


def test_a_message_is_a_run_of_consecutive_seqs_with_one_clock_flag() -> None:
    def r(seq: int, unsynced: bool = False) -> SpooledReading:
        return SpooledReading(seq, T0, unsynced, "{}")

    assert [x.seq for x in consecutive_run([r(3), r(4), r(5), r(7), r(8)])] == [3, 4, 5]
    assert [x.seq for x in consecutive_run([r(3), r(4, True), r(5, True)])] == [3]
    assert [x.seq for x in consecutive_run([r(4, True), r(5, True), r(6)])] == [4, 5]
    assert [x.seq for x in consecutive_run([r(9)])] == [9]


def _meter(i: int) -> dict[str, float]:
    return {"energy_import": 100.0 + i, "power": 10.0 * i}


class Harness:
    def __init__(self, path: Path, adapters: dict[str, Any], *, auto_ack: bool = True, timing: Timing = FAST) -> None:
        self.publishers: list[FakePublisher] = []
        self.spool = Spool(path, now_ms=lambda: T0)

        def make(on_ack: Any, will: Will, subscriptions: Any) -> FakePublisher:
            pub = FakePublisher(on_ack, will, subscriptions, auto_ack=auto_ack)
            self.publishers.append(pub)
            return pub

        self.gateway = Gateway(
            "gw1", "d1", self.spool, cast(dict[str, Adapter], adapters), make, cast(Clock, FixedClock(T0)), timing
        )
        self.pub = self.publishers[0]

    def run_until_idle(self) -> int:
        stop = threading.Event()
        timer = threading.Timer(20, stop.set)  # a safety net, never reached when the test passes
        timer.start()
        try:
            return self.gateway.run(stop, exit_when_idle=True)
        finally:
            timer.cancel()

    def readings_messages(self) -> list[tuple[str, dict[str, Any]]]:
        return [(s.topic, json.loads(s.payload)) for s in self.pub.sent if not s.topic.endswith("/status")]

    def statuses(self) -> list[dict[str, Any]]:
        return [json.loads(s.payload) for s in self.pub.sent if s.topic.endswith("/status")]


def test_everything_is_published_in_seq_order_acknowledged_and_deleted(tmp_path: Path) -> None:
    readings = [("em", T0 + i, _meter(i)) for i in range(1200)] + [("bs", T0, {"temperature": 20.5})]
    adapter = ListAdapter([("em", DeviceKind.ELECTRICITY_METER), ("bs", DeviceKind.BUILDING_SENSOR)], readings)
    h = Harness(tmp_path / "s.sqlite", {"list": adapter})
    assert h.run_until_idle() == 0

    messages = h.readings_messages()
    by_device: dict[str, list[dict[str, Any]]] = {}
    for topic, doc in messages:
        assert (
            topic
            == f"dp/v1/d1/gw1/{doc['device']}/{'electricity_meter' if doc['device'] == 'em' else 'building_sensor'}"
        )
        BATCH_ADAPTER.validate_python(doc)
        by_device.setdefault(doc["device"], []).append(doc)
    seqs = [s for doc in by_device["em"] for s in range(doc["seq"][0], doc["seq"][1] + 1)]
    assert seqs == list(range(1200))  # each once, in order, no gap
    assert all(len(doc["readings"]) <= FAST.max_batch_readings for doc in by_device["em"])
    assert [r["values"] for doc in by_device["em"] for r in doc["readings"]] == [_meter(i) for i in range(1200)]
    assert [doc["seq"] for doc in by_device["bs"]] == [[0, 0]]
    assert h.gateway.counts.acked_readings == 1201
    assert h.spool.readings == 0  # deleted after the acks
    assert h.pub.closed


def test_unacknowledged_readings_stay_and_a_restart_republishes_them_identically(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    readings = [("em", T0 + i, _meter(i)) for i in range(10)]
    first = Harness(path, {"list": ListAdapter([("em", DeviceKind.ELECTRICITY_METER)], readings)}, auto_ack=False)
    stop = threading.Event()

    def stop_once_published() -> None:  # the spool belongs to the thread that runs the gateway
        deadline = time.monotonic() + 20
        while not first.readings_messages() and time.monotonic() < deadline:
            time.sleep(0.005)
        stop.set()  # no PUBACK ever came

    watcher = threading.Thread(target=stop_once_published)
    watcher.start()
    assert first.gateway.run(stop) == 0
    watcher.join()
    sent = first.readings_messages()
    assert [doc["seq"] for _, doc in sent] == [[0, 9]]

    again = Harness(path, {})  # the adapter is gone; the spool still holds its readings
    assert again.spool.readings == 10
    assert again.run_until_idle() == 0
    resent = again.readings_messages()
    assert [p.payload for p in again.pub.sent if not p.topic.endswith("status")] == [
        p.payload for p in first.pub.sent if not p.topic.endswith("status")
    ]  # an exact redelivery
    assert resent[0][1]["seq"] == [0, 9]
    assert again.spool.readings == 0


def test_status_will_online_and_shutdown(tmp_path: Path) -> None:
    h = Harness(tmp_path / "s.sqlite", {"list": ListAdapter([("em", DeviceKind.ELECTRICITY_METER)], [])})
    will = json.loads(h.pub.will.payload)
    assert h.pub.will.topic == "dp/v1/d1/gw1/status"
    assert h.pub.will.retain
    assert will == {
        "v": 1,
        "gateway": "gw1",
        "district": "d1",
        "state": "offline",
        "version": h.gateway.version,
        "reason": "connection lost",
    }
    assert h.run_until_idle() == 0
    statuses = h.statuses()
    assert [(s["state"], s.get("reason")) for s in statuses] == [("online", None), ("offline", "shutdown")]
    assert all(p.retain for p in h.pub.sent if p.topic.endswith("/status"))
    online = statuses[0]
    assert online["clock"] == {"sync": "synchronised", "source": "test", "jumps": 0, "last_jump_ms": 0}
    assert set(online["spool"]) == {
        "readings",
        "bytes",
        "buffered",
        "oldest_age_s",
        "evicted",
        "evictions_unconfirmed",
        "counters",
    }
    assert statuses[-1]["adapters"] == {"list": "finished"}
    assert statuses[-1]["published"] == {
        "messages": 0,
        "readings": 0,
        "acked_messages": 0,
        "acked_readings": 0,
        "eviction_notices": 0,
    }


def test_an_adapter_that_raises_stops_the_gateway_with_exit_1_after_committing(tmp_path: Path) -> None:
    readings = [("em", T0 + i, _meter(i)) for i in range(3)]
    adapter = ListAdapter([("em", DeviceKind.ELECTRICITY_METER)], readings, fail=RuntimeError("meter on fire"))
    h = Harness(tmp_path / "s.sqlite", {"list": adapter})
    assert h.gateway.run(threading.Event()) == 1
    reopened = Spool(tmp_path / "s.sqlite")
    assert reopened.committed_upto("em") == 2  # the readings put before the failure were kept


@pytest.mark.parametrize("window", [2, 3])
def test_the_in_flight_window_bounds_publishing_and_keeps_a_slot_for_the_status(tmp_path: Path, window: int) -> None:
    readings = [(f"d{i}", T0, _meter(i)) for i in range(5)]
    adapter = ListAdapter([(f"d{i}", DeviceKind.ELECTRICITY_METER) for i in range(5)], readings)
    h = Harness(tmp_path / "s.sqlite", {"list": adapter}, auto_ack=False)
    h.pub.window = window
    h.gateway._start_adapters(threading.Event())  # no main loop: the test drives commits and cycles
    for r in h.gateway._running:
        assert r.thread is not None
        r.thread.join()
    h.gateway.commit()
    assert h.gateway.publish_cycle() is True  # more to send than the window allows
    assert len(h.pub.sent) == window - 1
    h.pub.ack_all()
    h.gateway.commit()
    assert h.spool.readings == 5 - (window - 1)


def test_the_in_flight_bytes_bound_stops_a_cycle_until_acks_free_room(tmp_path: Path) -> None:
    readings = [(f"d{i}", T0, _meter(i)) for i in range(4)]
    adapter = ListAdapter([(f"d{i}", DeviceKind.ELECTRICITY_METER) for i in range(4)], readings)
    timing = Timing(commit_interval_s=0.005, publish_interval_s=0.005, max_inflight_bytes=1)
    h = Harness(tmp_path / "s.sqlite", {"list": adapter}, auto_ack=False, timing=timing)
    h.gateway._start_adapters(threading.Event())
    for r in h.gateway._running:
        assert r.thread is not None
        r.thread.join()
    h.gateway.commit()
    sent = []
    for _ in range(4):  # one message per cycle: its bytes fill the budget until its PUBACK
        assert len(h.pub.sent) == len(sent)
        h.gateway.publish_cycle()
        sent = h.readings_messages()
        h.pub.ack_all()
        h.gateway.commit()
    assert sorted(doc["device"] for _, doc in sent) == ["d0", "d1", "d2", "d3"]
    assert h.spool.readings == 0


def test_a_window_full_of_refused_messages_is_published_again(tmp_path: Path) -> None:
    """The broker refused (0x10, nobody subscribed) as many readings as the unconfirmed window holds: their
    retries must not wait for room that only their own confirmation frees. (`scripts/chaos_long.py` found
    this: a gateway restarted while ingest was away stopped publishing for good.)"""
    readings = [(f"d{i % 3}", T0 + i, _meter(i)) for i in range(600)]
    adapter = ListAdapter([(f"d{i}", DeviceKind.ELECTRICITY_METER) for i in range(3)], readings)
    policy = DeliveryPolicy(timeout_s=0.05, timeout_max_s=0.1, retry_min_s=0.01, max_unconfirmed_readings=100)
    timing = Timing(commit_interval_s=0.005, publish_interval_s=0.005, heartbeat_interval_s=3600, delivery=policy)
    h = Harness(tmp_path / "s.sqlite", {"list": adapter}, timing=timing)
    h.pub.code = 0x10
    subscribed = threading.Timer(0.5, lambda: setattr(h.pub, "code", 0))  # ingest subscribes half a second on
    subscribed.start()
    try:
        assert h.run_until_idle() == 0
    finally:
        subscribed.cancel()
    assert h.spool.readings == 0  # every reading confirmed (the safety net would stop a stuck gateway at 20 s)
    counts = h.gateway.ledger.counts
    assert counts.puback_reasons[0x10] >= 1
    assert counts.confirmed_readings == 600
    assert counts.republished_readings >= 100  # the refused window, at least once

"""Eviction records: the spool writes one per run of readings it deletes unconfirmed, the gateway sends each as
an eviction notice until ingest confirms its range, and the records are bounded."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from devices.wire import Eviction, decode_eviction
from gateway import spool as spool_module
from gateway.adapters import Adapter
from gateway.clock import Clock
from gateway.delivery import DeliveryPolicy
from gateway.publisher import Will
from gateway.service import Gateway, Timing
from gateway.spool import Spool, SpoolLimits
from tests.support.gateway_fakes import FakePublisher, FixedClock

T0 = 1_790_000_000_000
LIMITS = SpoolLimits(max_bytes=64 * 1024)


def _sensor(i: int) -> dict[str, float]:
    return {"temperature": 21.0 + i % 10 / 10, "co2": 500.0}


def _meter(i: int) -> dict[str, float]:
    return {"energy_import": 1000.0 + i, "energy_export": 0.0}


def _fill(spool: Spool, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        spool.append("bs", _sensor(i), ts_ms=T0 + i * 1000)
        spool.append("em", _meter(i), ts_ms=T0 + i * 1000 + 1)
    spool.commit()


def _spooled_seqs(path: Path, device: str) -> set[int]:
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT r.seq FROM readings r JOIN devices d ON d.idx = r.device WHERE d.id = ?", (device,)
        ).fetchall()
    return {s for (s,) in rows}


def _covered(runs: list[Eviction], device: str) -> list[int]:
    return sorted(s for r in runs if r.device == device for s in range(r.first, r.last + 1))


def _open(path: Path) -> Spool:
    spool = Spool(path, limits=LIMITS, now_ms=lambda: T0)
    spool.add_device("bs", "building_sensor")
    spool.add_device("em", "electricity_meter")
    return spool


def test_each_evicted_reading_is_in_exactly_one_record_and_runs_merge_across_commits(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spool = _open(path)
    for chunk in range(6):  # the bound is passed several times: each pass adds to the records
        _fill(spool, 500, start=chunk * 500)
    runs = spool.evicted_runs(1000)
    for device in ("bs", "em"):
        evicted = sorted(set(range(3000)) - _spooled_seqs(path, device))
        assert _covered(runs, device) == evicted  # each evicted seq once, none that is still spooled
    assert spool.evicted == sum(r.last - r.first + 1 for r in runs)
    # the sensor readings went oldest first, in one run per pass merged into one: a single record
    (bs,) = [r for r in runs if r.device == "bs"]
    assert (bs.first, bs.first_ts, bs.last_ts) == (0, T0, T0 + bs.last * 1000)
    assert (bs.reason, bs.cls) == ("bytes_limit", "instant")
    spool.close()

    spool = _open(path)  # the records survive a restart
    assert spool.evicted_runs(1000) == runs and spool.eviction_records == len(runs)
    spool.ack("bs", bs.first, bs.last - 1)  # a range that does not cover the record leaves it
    spool.commit()
    assert spool.eviction_records == len(runs)
    spool.ack("bs", bs.first, bs.last)
    spool.commit()
    assert [r.device for r in spool.evicted_runs(1000)] == [r.device for r in runs if r.device != "bs"]


def test_past_the_record_bound_the_oldest_records_are_dropped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "MAX_EVICTION_RECORDS", 3)
    spool = Spool(tmp_path / "s.sqlite", limits=LIMITS, now_ms=lambda: T0)
    spool.add_device("bs", "building_sensor")
    for i in range(4000):  # every third reading acknowledged: the evicted ones form runs of two
        spool.append("bs", _sensor(i), ts_ms=T0 + i * 1000)
    spool.commit()
    for seq in range(0, 4000, 3):
        spool.ack("bs", seq, seq)
    spool.append("bs", _sensor(0), ts_ms=T0 + 5_000_000)
    spool.commit()
    for i in range(4000, 8000):
        spool.append("bs", _sensor(i), ts_ms=T0 + i * 1000)
    spool.commit()
    runs = spool.evicted_runs(100)
    assert spool.eviction_records == len(runs) == 3
    counters = spool.counters
    assert counters["eviction_readings_unreported"] + sum(r.last - r.first + 1 for r in runs) == spool.evicted
    assert counters["eviction_records_dropped"] > 0
    assert min(r.first_ts for r in runs) > T0  # the oldest went


def _gateway(spool: Spool, publishers: list[FakePublisher], *, delete_on: str = "confirm", **kw: Any) -> Gateway:
    def make(on_ack: Any, will: Will, subscriptions: Any) -> FakePublisher:
        pub = FakePublisher(on_ack, will, subscriptions, **kw)
        publishers.append(pub)
        return pub

    timing = Timing(
        commit_interval_s=0.005,
        publish_interval_s=0.005,
        heartbeat_interval_s=3600,
        drain_timeout_s=1,
        delivery=DeliveryPolicy(delete_on=delete_on, timeout_s=0.05, timeout_max_s=0.2, retry_min_s=0.05),  # type: ignore[arg-type]
    )
    return Gateway("gw1", "d1", spool, cast(dict[str, Adapter], {}), make, cast(Clock, FixedClock(T0)), timing)


def _notices(pub: FakePublisher) -> list[tuple[str, Any]]:
    return [(s.topic, decode_eviction(s.payload)) for s in pub.sent if s.topic.endswith("/evicted")]


def _run(gateway: Gateway) -> int:
    stop = threading.Event()
    timer = threading.Timer(20, stop.set)
    timer.start()
    try:
        return gateway.run(stop, exit_when_idle=True)
    finally:
        timer.cancel()


def test_the_gateway_sends_each_record_as_a_notice_and_forgets_it_once_confirmed(tmp_path: Path) -> None:
    spool = _open(tmp_path / "s.sqlite")
    _fill(spool, 2000)
    runs = spool.evicted_runs(1000)
    assert runs
    publishers: list[FakePublisher] = []
    gateway = _gateway(spool, publishers)
    assert _run(gateway) == 0
    pub = publishers[0]
    notices = _notices(pub)
    assert [(n.device, n.first, n.last, n.first_ts, n.last_ts, n.reason, n.cls) for _, n in notices] == [
        (r.device, r.first, r.last, r.first_ts, r.last_ts, r.reason, r.cls) for r in runs
    ]
    assert {t for t, _ in notices} == {f"dp/v1/d1/gw1/{r.device}/evicted" for r in runs}
    assert gateway.counts.eviction_notices == len(runs)
    status = json.loads([s for s in pub.sent if s.topic.endswith("/status")][-1].payload)
    assert status["spool"]["evictions_unconfirmed"] == 0 and status["published"]["eviction_notices"] == len(runs)


def test_an_unconfirmed_notice_is_sent_again_with_backoff_and_puback_mode_deletes_on_puback(tmp_path: Path) -> None:
    spool = _open(tmp_path / "a.sqlite")
    _fill(spool, 2000)
    n = spool.eviction_records
    publishers: list[FakePublisher] = []
    gateway = _gateway(spool, publishers, auto_confirm=False)
    stop = threading.Event()
    timer = threading.Timer(0.6, stop.set)
    timer.start()
    gateway.run(stop)
    sends = len(_notices(publishers[0]))
    # 0.6 s with a timeout of 0.05 s doubling to 0.2 s (+-20 %): about 5 rounds, never one per cycle (~100)
    assert 3 * n <= sends <= 7 * n
    reopened = _open(tmp_path / "a.sqlite")
    assert reopened.eviction_records == n
    reopened.close()

    spool = _open(tmp_path / "b.sqlite")
    _fill(spool, 2000)
    publishers = []
    gateway = _gateway(spool, publishers, delete_on="puback", auto_confirm=False)
    assert _run(gateway) == 0
    assert len(_notices(publishers[0])) == n  # each once: the PUBACK deleted it

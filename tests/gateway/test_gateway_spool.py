"""The durable spool: sequence numbers, group commit, acknowledged deletes, clock jumps, bounds and eviction."""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from pathlib import Path

import pytest

from gateway.errors import SpoolError
from gateway.spool import ROW_OVERHEAD, ReadingClass, Spool, SpoolLimits, encode_values

T0 = 1_790_000_000_000
DAY_MS = 86_400_000


def _open(path: Path, **kwargs: object) -> Spool:
    spool = Spool(path, now_ms=lambda: T0, **kwargs)  # type: ignore[arg-type]
    spool.add_device("em", "electricity_meter")
    spool.add_device("bs", "building_sensor")
    spool.add_device("ev", "ev_charger")
    return spool


def _rows(path: Path) -> list[tuple[str, int, int, int, dict[str, object]]]:
    """(device, seq, ts, class, values) of every row, read with a plain sqlite3 connection: the reference."""
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT d.id, r.seq, r.ts, r.cls, r.body FROM readings r JOIN devices d ON d.idx = r.device "
            "ORDER BY d.id, r.seq"
        ).fetchall()
    return [(dev, seq, ts, cls, json.loads(body)) for dev, seq, ts, cls, body in rows]


def _meter(i: int) -> dict[str, float]:
    return {"energy_import": 1000.0 + i, "energy_export": 0.0, "power": 1500.0 + i, "voltage": 230.0}


def _sensor(i: int) -> dict[str, float]:
    return {"temperature": 21.0 + i % 10 / 10, "co2": 500.0}


def _charger(i: int, session: int) -> dict[str, float | str]:
    return {"connector_status": "Charging", "session_id": f"s{session}", "session_energy": float(i), "power": 7000.0}


def test_sequence_numbers_are_per_device_contiguous_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    spool = _open(path)
    assert [spool.append("em", _meter(i)) for i in range(3)] == [0, 1, 2]
    assert [spool.append("bs", _sensor(i)) for i in range(2)] == [0, 1]
    assert spool.commit() == 5
    spool.close()

    again = _open(path)
    assert again.append("em", _meter(3)) == 3
    assert again.append("bs", _sensor(2)) == 2
    assert again.append("ev", _charger(0, 1)) == 0
    again.close()
    assert [(d, s) for d, s, *_ in _rows(path)] == [
        ("bs", 0),
        ("bs", 1),
        ("bs", 2),
        ("em", 0),
        ("em", 1),
        ("em", 2),
        ("em", 3),
        ("ev", 0),
    ]


def test_a_crash_loses_only_uncommitted_readings_and_their_numbers_are_reissued(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    spool = _open(path)
    for i in range(4):
        spool.append("em", _meter(i))
    spool.commit()
    for i in range(4, 7):
        spool.append("em", _meter(i))  # buffered, never committed
    spool._db.close()  # the process dies: no commit, no close()

    again = _open(path)
    assert again.committed_upto("em") == 3
    assert again.readings == 4
    assert again.append("em", _meter(99)) == 4  # never published, so reissuing 4..6 leaves no gap
    again.close()
    assert [(s, v["energy_import"]) for d, s, _, _, v in _rows(path)] == [
        (0, 1000.0),
        (1, 1001.0),
        (2, 1002.0),
        (3, 1003.0),
        (4, 1099.0),
    ]


def test_readings_are_published_only_once_committed_and_deleted_only_at_the_commit_after_the_ack(
    tmp_path: Path,
) -> None:
    spool = _open(tmp_path / "spool.sqlite")
    for i in range(5):
        spool.append("em", _meter(i), ts_ms=T0 + i)
    assert spool.pending("em", -1, 100) == []  # buffered is not spooled yet
    spool.commit()
    pending = spool.pending("em", -1, 100)
    assert [(r.seq, r.ts, r.body) for r in pending] == [(i, T0 + i, encode_values(_meter(i))) for i in range(5)]
    assert [r.seq for r in spool.pending("em", 2, 100)] == [3, 4]
    assert [r.seq for r in spool.pending("em", -1, 2)] == [0, 1]

    spool.ack("em", 0, 2)
    assert spool.readings == 5  # still there until the next commit
    spool.commit()
    assert spool.readings == 2
    assert [r.seq for r in spool.pending("em", -1, 100)] == [3, 4]
    assert spool.first_seq("em") == 3
    assert spool.bytes == sum(len(encode_values(_meter(i))) + ROW_OVERHEAD for i in (3, 4))
    spool.close()


def test_a_clock_that_steps_backwards_neither_reorders_nor_merges_readings(tmp_path: Path) -> None:
    stamps = iter([T0, T0 + 1000, T0 - 3_600_000, T0 - 3_600_000, T0 + 2000])
    spool = Spool(tmp_path / "spool.sqlite", now_ms=lambda: next(stamps))
    spool.add_device("em", "electricity_meter")
    for i in range(5):
        spool.append("em", _meter(i))  # stamped by the (jumping) clock
    spool.commit()
    got = [(r.seq, r.ts, json.loads(r.body)["energy_import"]) for r in spool.pending("em", -1, 10)]
    assert got == [
        (0, T0, 1000.0),
        (1, T0 + 1000, 1001.0),
        (2, T0 - 3_600_000, 1002.0),
        (3, T0 - 3_600_000 + 1, 1003.0),  # stamped in the same millisecond: one on, not one InfluxDB point
        (4, T0 + 2000, 1004.0),
    ]


def test_readings_stamped_in_one_millisecond_get_distinct_increasing_stamps(tmp_path: Path) -> None:
    # An adapter catching up on late ticks appends several readings of a device within one millisecond;
    # InfluxDB would keep one point of them (ingest quarantines the rest as duplicate_timestamp).
    stamps = iter([T0, T0, T0, T0 + 1, T0 - 500, T0 + 50, T0 - 10_000])
    spool = Spool(tmp_path / "spool.sqlite", now_ms=lambda: next(stamps))
    spool.add_device("em", "electricity_meter")
    spool.add_device("bs", "building_sensor")
    for i in range(6):
        spool.append("em", _meter(i))
    spool.append("bs", _sensor(0), None)  # another device keeps its own stamps: T0 - 10 s, as the clock said
    spool.append("em", _meter(6), T0)  # the device's own timestamp is never moved
    spool.commit()
    assert [r.ts for r in spool.pending("em", -1, 10)] == [T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4, T0 + 50, T0]
    assert [r.ts for r in spool.pending("bs", -1, 10)] == [T0 - 10_000]


def test_readings_stamped_while_unsynchronised_are_flagged_and_counted(tmp_path: Path) -> None:
    synced = iter([False, False, True])
    spool = Spool(tmp_path / "spool.sqlite", now_ms=lambda: T0, synced=lambda: next(synced))
    spool.add_device("bs", "building_sensor")
    for i in range(3):
        spool.append("bs", _sensor(i))
    spool.append("bs", _sensor(3), ts_ms=T0, unsynced=True)  # the adapter's own clock is not synchronised
    spool.append("bs", _sensor(4), ts_ms=T0)
    spool.commit()
    assert [r.unsynced for r in spool.pending("bs", -1, 10)] == [True, True, False, True, False]
    assert spool.counters["spooled_unsynced"] == 3


def test_classes_follow_the_metrics_and_charger_session_changes(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    spool = _open(path)
    spool.append("bs", _sensor(0))
    spool.append("em", _meter(0))
    spool.append("em", {"energy_import": 1.0, "energy_export": 0.0})
    for i, session in enumerate([1, 1, 1, 2, 2]):
        spool.append("ev", _charger(i, session))
    spool.append("ev", {"connector_status": "Available", "session_id": "", "session_energy": 0.0, "power": 0.0})
    spool.append("ev", {"connector_status": "Available", "session_id": "", "session_energy": 0.0, "power": 0.0})
    spool.commit()
    classes = {(d, s): ReadingClass(c) for d, s, _, c, _ in _rows(path)}
    assert classes == {
        ("bs", 0): ReadingClass.INSTANT,
        ("em", 0): ReadingClass.MIXED,
        ("em", 1): ReadingClass.REGISTER,
        ("ev", 0): ReadingClass.EVENT,  # session s1 starts
        ("ev", 1): ReadingClass.MIXED,
        ("ev", 2): ReadingClass.MIXED,
        ("ev", 3): ReadingClass.EVENT,  # s2 starts
        ("ev", 4): ReadingClass.MIXED,
        ("ev", 5): ReadingClass.EVENT,  # s2 stops
        ("ev", 6): ReadingClass.MIXED,
    }


def test_over_the_byte_bound_instant_values_go_first_then_registers_are_thinned_events_stay(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    limits = SpoolLimits(max_bytes=64 * 1024)
    spool = _open(path, limits=limits)
    n = 400
    # Interleaved in time: sensor, meter, charger readings every second; the charger changes session every
    # 100 readings (4 events).
    for i in range(n):
        spool.append("bs", _sensor(i), ts_ms=T0 + i * 1000)
        spool.append("em", _meter(i), ts_ms=T0 + i * 1000 + 1)
        spool.append("ev", _charger(i, i // 100), ts_ms=T0 + i * 1000 + 2)
    written = sum(
        len(encode_values(v)) + ROW_OVERHEAD for i in range(n) for v in (_sensor(i), _meter(i), _charger(i, i // 100))
    )
    assert written > 2 * limits.max_bytes  # stripping alone cannot be enough
    spool.commit()

    rows = _rows(path)
    target = int(limits.max_bytes * 0.95)
    assert spool.bytes == sum(len(encode_values(v)) + ROW_OVERHEAD for *_, v in rows)  # accounting is exact
    assert spool.bytes <= target
    by_device: dict[str, list[tuple[int, dict[str, object]]]] = {}
    for dev, seq, _, _, values in rows:
        by_device.setdefault(dev, []).append((seq, values))
    # 1. every instantaneous-only reading is gone
    assert "bs" not in by_device
    # 2. every remaining meter and charger reading was stripped to its registers (and session fields)
    assert all(set(v) == {"energy_import", "energy_export"} for _, v in by_device["em"])
    events = {0, 100, 200, 300}  # session starts: kept whole
    assert all(
        set(v) == ({"connector_status", "session_id", "session_energy"} | ({"power"} if s in events else set()))
        for s, v in by_device["ev"]
    )
    # 3. registers were deleted oldest first, exactly as many as needed, and 4. events were kept
    kept_ev = [s for s, _ in by_device["ev"]]
    assert events <= set(kept_ev)
    register_rows = sorted(
        [(T0 + s * 1000 + 1, "em", s) for s, _ in by_device["em"]]
        + [(T0 + s * 1000 + 2, "ev", s) for s in kept_ev if s not in events]
    )
    all_registers = sorted(
        [(T0 + s * 1000 + 1, "em", s) for s in range(n)]
        + [(T0 + s * 1000 + 2, "ev", s) for s in range(n) if s not in events]
    )
    deleted = len(all_registers) - len(register_rows)
    assert register_rows == all_registers[deleted:]  # a suffix: the oldest were deleted
    # one reading fewer would leave the spool above the target
    stripped_meter = len(encode_values({"energy_import": 0.0, "energy_export": 0.0}))
    assert spool.bytes + stripped_meter + ROW_OVERHEAD > target
    assert spool.counters == {
        "evicted_bytes_limit_instant": n,
        "stripped_bytes_limit": 2 * n - len(events),
        "evicted_bytes_limit_register": deleted,
    }
    assert spool.evicted == n + deleted
    spool.close()
    assert _open(path).counters == {  # the counts survive a restart
        "evicted_bytes_limit_instant": n,
        "stripped_bytes_limit": 2 * n - len(events),
        "evicted_bytes_limit_register": deleted,
    }


def test_a_small_excess_is_met_by_shedding_only_instantaneous_readings(tmp_path: Path) -> None:
    limits = SpoolLimits(max_bytes=64 * 1024)
    spool = _open(tmp_path / "spool.sqlite", limits=limits)
    body = len(encode_values(_sensor(0))) + ROW_OVERHEAD  # same length for every i below
    count = limits.max_bytes // body + 1  # one reading over the bound
    for i in range(count):
        spool.append("bs", _sensor(10 * i), ts_ms=T0 + i)
    spool.append("em", _meter(0), ts_ms=T0 - 1)  # older, but a register: kept
    spool.commit()
    needed = math.ceil(
        (count * body + len(encode_values(_meter(0))) + ROW_OVERHEAD - int(limits.max_bytes * 0.95)) / body
    )
    assert spool.counters == {"evicted_bytes_limit_instant": needed}
    assert spool.first_seq("bs") == needed
    assert spool.first_seq("em") == 0


def test_age_bounds_shed_instantaneous_values_first_and_spare_unsynchronised_stamps(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    limits = SpoolLimits(instantaneous_max_age_s=2 * 86400, max_age_s=10 * 86400)
    spool = _open(path, limits=limits)
    now = T0 + 20 * DAY_MS
    ages_days = [15, 5, 1]  # older than both bounds, than the instantaneous bound only, than neither
    for age in ages_days:
        ts = now - age * DAY_MS
        spool.append("bs", _sensor(age), ts_ms=ts)
        spool.append("em", _meter(age), ts_ms=ts)
    spool.append("bs", _sensor(99), ts_ms=T0 - 1000 * DAY_MS, unsynced=True)  # a Pi booted at an old date
    spool.commit()
    spool.enforce_age(now)
    got = [(d, s, sorted(v)) for d, s, _, _, v in _rows(path)]
    assert got == [
        ("bs", 2, ["co2", "temperature"]),  # 1 day old
        ("bs", 3, ["co2", "temperature"]),  # unsynchronised: exempt from the age bounds
        ("em", 1, ["energy_export", "energy_import"]),  # 5 days: instantaneous values stripped
        ("em", 2, ["energy_export", "energy_import", "power", "voltage"]),
    ]
    assert spool.counters == {
        "evicted_age_instant": 2,
        "stripped_age": 2,  # the 15-day and 5-day meter readings; the 15-day one is then deleted
        "evicted_age_register": 1,
        "spooled_unsynced": 1,
    }


def test_an_adapter_cursor_commits_atomically_with_its_readings(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    spool = _open(path)
    first = spool.append_many("em", [(T0, _meter(0)), (T0 + 1, _meter(1))], cursor=("replay:x", "1"))
    assert first == 0
    assert spool.cursor("replay:x") is None  # not committed yet
    spool.commit()
    assert spool.cursor("replay:x") == "1"
    spool.append_many("em", [(T0 + 2, _meter(2))], cursor=("replay:x", "2"))
    spool._db.close()  # crash before the commit: neither the reading nor the cursor survive

    again = _open(path)
    assert again.cursor("replay:x") == "1"
    assert again.committed_upto("em") == 1


def test_the_buffer_is_bounded_and_appending_waits_for_a_commit(tmp_path: Path) -> None:
    spool = _open(tmp_path / "spool.sqlite", max_buffered=3)
    for i in range(3):
        spool.append("bs", _sensor(i))
    with pytest.raises(SpoolError, match="buffer full"):
        spool.append("bs", _sensor(3), timeout=0)
    spool.commit()
    assert spool.append("bs", _sensor(3), timeout=0) == 3


def test_a_producer_can_wait_until_what_it_appended_is_committed(tmp_path: Path) -> None:
    """`appended` is a ticket; `wait_committed` returns once a commit wrote everything up to it (from any
    thread), False on a timeout, and a failed commit wakes nobody."""
    path = tmp_path / "spool.sqlite"
    spool = _open(path)
    assert spool.wait_committed(timeout=0)  # nothing appended: nothing to wait for
    spool.append("em", _meter(0))
    ticket = spool.appended
    assert not spool.wait_committed(ticket, timeout=0.05)
    done: list[bool] = []
    waiter = threading.Thread(target=lambda: done.append(spool.wait_committed(ticket, timeout=10)))
    waiter.start()
    spool.append("em", _meter(1))  # appended after the ticket: the waiter does not wait for it
    spool.set_cursor("a", "1")
    assert spool.appended == ticket + 2
    spool.commit()
    waiter.join(10)
    assert done == [True]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM readings").fetchone() == (2,)
    assert spool.wait_committed(timeout=0)  # the cursor too was in that commit
    # A commit that fails does not say the readings are committed.
    spool.append_many("em", [(T0, _meter(2))])
    spool._db.execute("BEGIN")  # the next commit's BEGIN IMMEDIATE fails
    with pytest.raises(SpoolError, match="commit failed"):
        spool.commit()
    assert not spool.wait_committed(timeout=0.05)


def test_a_device_keeps_its_kind_and_a_foreign_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    spool = _open(path)
    with pytest.raises(SpoolError, match="spooled as electricity_meter"):
        spool.add_device("em", "heat_meter")
    spool.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    with pytest.raises(SpoolError, match="schema 99"):
        Spool(path)


def test_the_file_stays_within_twice_the_byte_bound(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    limits = SpoolLimits(max_bytes=1024 * 1024)
    spool = _open(path, limits=limits, synchronous="OFF")
    for round_ in range(10):  # about 10 times the bound, in commits of ~200 KiB
        for i in range(1000):
            k = round_ * 1000 + i
            spool.append("em", _meter(k), ts_ms=T0 + k)
            spool.append("bs", _sensor(k), ts_ms=T0 + k)
        spool.commit()
    assert spool.bytes <= limits.max_bytes
    spool._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert path.stat().st_size <= 2 * limits.max_bytes

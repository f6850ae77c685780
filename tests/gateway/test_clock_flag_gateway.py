"""The gateway sends the clock flag: readings stamped while its clock was not synchronised go out in messages
that say `"clock": "unsynced"`, the others in messages without the field, and a message never mixes them.

`ScriptedTime` and `PhasedAdapter` (tests/support/clock_script.py) also drive tests/integration/test_clock_flag_e2e.py
(on the real services).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from devices import BATCH_ADAPTER, DeviceKind, encode_batch, units_for
from gateway.adapters import Adapter, DeviceRef
from gateway.publisher import Will
from gateway.service import Gateway, Timing, encode_message
from gateway.spool import Spool, SpooledReading, encode_values
from tests.support.clock_script import PHASES, PhasedAdapter, ScriptedTime
from tests.support.gateway_fakes import FakePublisher

values_st = st.dictionaries(
    st.sampled_from(["energy_import", "power", "session_id", "x"]),
    st.one_of(st.floats(allow_nan=True, allow_infinity=False), st.text(max_size=8)),
    min_size=1,
)


@given(
    device=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True),
    first=st.integers(0, 2**40),
    readings=st.lists(st.tuples(st.integers(0, 2**45), values_st), min_size=1, max_size=5),
    unsynced=st.booleans(),
)
def test_the_message_is_byte_for_byte_what_encode_batch_writes_with_the_flag(
    device: str, first: int, readings: list[tuple[int, dict[str, float | str]]], unsynced: bool
) -> None:
    units = units_for(DeviceKind.ELECTRICITY_METER)
    rows = [SpooledReading(first + i, ts, unsynced, encode_values(v)) for i, (ts, v) in enumerate(readings)]
    got = encode_message(device, json.dumps(units, separators=(",", ":")), rows)
    assert got == encode_batch(device, first, units, readings, clock_unsynced=unsynced)
    assert (b'"clock":"unsynced"' in got) is unsynced


# --- the scripted clock and adapter of tests/support/clock_script.py -------------------------------------------

DEVICES = (DeviceRef("em1", DeviceKind.ELECTRICITY_METER), DeviceRef("bs1", DeviceKind.BUILDING_SENSOR))


def test_the_gateway_flags_exactly_the_messages_of_readings_taken_before_sync(tmp_path: Path) -> None:
    time = ScriptedTime(PHASES[0].start_ms, PHASES[0].sync)
    clock = time.clock()
    adapter = PhasedAdapter(DEVICES, PHASES, time, clock)
    spool = Spool(tmp_path / "spool.sqlite", now_ms=clock.now_ms, synced=lambda: clock.synced)
    publishers: list[FakePublisher] = []

    def make(on_ack: Any, will: Will, subscriptions: Any) -> FakePublisher:
        publishers.append(FakePublisher(on_ack, will, subscriptions))
        return publishers[-1]

    timing = Timing(
        commit_interval_s=0.005,
        publish_interval_s=0.005,
        clock_check_interval_s=0.002,
        heartbeat_interval_s=3600,
        drain_timeout_s=1,
    )
    gateway = Gateway("gw1", "d1", spool, cast(dict[str, Adapter], {"phased": adapter}), make, clock, timing)
    stop = threading.Event()
    timer = threading.Timer(20, stop.set)  # a safety net, never reached when the test passes
    timer.start()
    try:
        assert gateway.run(stop, exit_when_idle=True) == 0
    finally:
        timer.cancel()

    flagged: dict[tuple[str, int], bool] = {}
    seqs: dict[str, list[int]] = {}
    for sent in publishers[0].sent:
        if sent.topic.endswith("/status"):
            continue
        batch = BATCH_ADAPTER.validate_json(sent.payload)
        assert (b'"clock":"unsynced"' in sent.payload) is (batch.clock == "unsynced")
        for reading in batch.readings:
            assert (batch.device, reading.ts) not in flagged
            flagged[(batch.device, reading.ts)] = reading.clock_unsynced
        seqs.setdefault(batch.device, []).extend(range(batch.seq[0], batch.seq[1] + 1))
    assert flagged.keys() == adapter.truth.keys()
    assert len(flagged) == 2 * (3 + 4 + 5 + 2)
    assert {key for key, on in flagged.items() if on} == {
        key for key, phase in adapter.truth.items() if phase in ("boot", "stale", "lost")
    }
    assert sum(flagged.values()) == 2 * (3 + 4 + 2)
    assert seqs == {"em1": list(range(14)), "bs1": list(range(14))}
    assert spool.counters["spooled_unsynced"] == 2 * (3 + 4 + 2)

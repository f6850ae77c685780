"""The `unsynced_boot` fault sends its readings in `"clock": "unsynced"` batches, as a real gateway does, and
the truth says which stored points ingest flags: checked against the fault records (when the clock was
wrong) and ingest's own validation of the messages actually sent."""

from __future__ import annotations

import itertools
import json
from datetime import date
from typing import Any

from devices import validate_message
from devices.wire import CLOCK_UNSYNCED
from simulators import Cadence, FaultConfig, SimConfig
from tests.support.registries import fleet_registry
from tests.support.simulation import run

NOW = 1_900_000_000_000


def _unsynced_at(boots: list[dict[str, Any]], gateway: str, sent_ts: int) -> bool:
    """Was a reading sent with this timestamp stamped by a clock that had not synced? (from the fault records:
    the true time, sent time minus the offset, is between the end of the reboot and the sync)"""
    return any(
        f["gateway"] == gateway and f["boot_ms"] + f["rebooting_ms"] <= sent_ts - f["offset_ms"] < f["synced_ms"]
        for f in boots
    )


def test_unsynced_readings_travel_in_flagged_batches_and_the_truth_lists_the_stored_ones() -> None:
    registry = fleet_registry()
    config = SimConfig(
        start=date(2026, 2, 2),
        days=2,
        seed=5,
        cadence=Cadence(300, 900),
        faults=FaultConfig.parse("unsynced_boot=4", days=2),
        truth_points=True,
    )
    sim, got = run(registry, config)
    boots = [f for f in sim.truth.faults if f["fault"] == "unsynced_boot"]
    assert {f["clock"] for f in boots} == {"epoch", "stale"}  # both modes covered

    flagged_sent = 0
    stored_flagged: set[tuple[str, int]] = set()
    stored_plain: set[tuple[str, int]] = set()
    intervals: dict[tuple[str, int], int] = {}
    for m in got.messages:
        doc = json.loads(m.payload)
        flags = {_unsynced_at(boots, m.gateway, r["ts"]) for r in doc["readings"]}
        assert len(flags) == 1  # a batch is all synced or all not
        assert (doc.get("clock") == CLOCK_UNSYNCED) == flags.pop()
        assert "clock" not in doc or doc["clock"] == CLOCK_UNSYNCED
        flagged_sent += len(doc["readings"]) if "clock" in doc else 0
        key = (m.device, m.deliver_ms)
        intervals[key] = intervals.get(key, 0) + 1
        result = validate_message(m.topic, m.payload, registry, now_ms=NOW)
        for reading in result.good:
            (stored_flagged if reading.clock_unsynced else stored_plain).add((m.device, reading.ts))
    split = sum(1 for n in intervals.values() if n > 1)  # intervals sent as two batches: the clock changed
    assert split > 0
    assert flagged_sent == sim.truth.clock_unsynced_sent > 0

    truth = sim.truth.as_dict()
    from_truth = {(d, ts) for d, t in truth["devices"].items() for ts in t["clock_unsynced_stored"]}
    assert from_truth == stored_flagged
    assert len(stored_flagged) == truth["totals"]["clock_unsynced_stored"] > 0
    assert sum(t["clock_unsynced_sent"] for t in truth["devices"].values()) == flagged_sent
    # The epoch-mode readings are quarantined (before commissioning), not stored flagged.
    assert truth["totals"]["expected_quarantined"]["before_commissioning"] == flagged_sent - len(stored_flagged)
    assert sim.truth.points is not None
    assert stored_flagged | stored_plain == {(d, ts) for d, pts in sim.truth.points.items() for ts in pts}
    # Sequence numbers stay contiguous per device across the split batches.
    seqs: dict[str, list[tuple[int, int]]] = {}
    for m in got.messages:
        lo, hi = json.loads(m.payload)["seq"]
        seqs.setdefault(m.device, []).append((lo, hi))
    for ranges in seqs.values():
        ranges.sort()
        assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))

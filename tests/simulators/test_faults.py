"""Fault injection: every fault switchable, recorded in the truth, and the truth's expectations equal what
ingest's own validation (an independent implementation) does with the messages actually sent."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import date
from typing import Any

import pytest

from devices import Registry, validate_message
from simulators import Cadence, FaultConfig, GatewayEvent, SimConfig
from simulators.config import FAULT_NAMES
from tests.support.registries import fleet_registry
from tests.support.simulation import Collected, run

NOW = 1_900_000_000_000
START = date(2026, 2, 2)
CADENCE = Cadence(300, 900)


def config(faults: str, *, days: int = 2, seed: int = 4, spool: int = 100_000) -> SimConfig:
    spec = FaultConfig.parse(faults, days=days)
    return SimConfig(
        start=START,
        days=days,
        seed=seed,
        cadence=CADENCE,
        faults=FaultConfig(spec.counts, spool_capacity=spool),
        truth_points=True,
    )


def ingest_view(registry: Registry, got: Collected) -> tuple[dict[tuple[str, int], dict[str, Any]], Counter[str]]:
    """What ingest would store and quarantine: validate every delivered message; a repeated message
    (same topic and payload) overwrites the same points and the same quarantine rows."""
    stored: dict[tuple[str, int], dict[str, Any]] = {}
    quarantined: Counter[str] = Counter()
    seen: set[tuple[str, bytes]] = set()
    for m in got.messages:
        result = validate_message(m.topic, m.payload, registry, now_ms=NOW)
        for reading in result.good:
            assert result.device is not None
            stored[(result.device.id, reading.ts)] = dict(reading.values)
        if (m.topic, m.payload) not in seen:
            for rejection in result.rejected:
                quarantined[rejection.reason.value] += rejection.readings
        seen.add((m.topic, m.payload))
    return stored, quarantined


def expected_points(truth_points: dict[str, dict[int, Any]] | None) -> dict[tuple[str, int], dict[str, Any]]:
    assert truth_points is not None
    return {(d, ts): v for d, points in truth_points.items() for ts, v in points.items()}


@pytest.fixture(scope="module")
def clean() -> dict[tuple[str, int], dict[str, Any]]:
    registry = fleet_registry()
    sim, got = run(registry, config(""))
    stored, quarantined = ingest_view(registry, got)
    assert not quarantined
    assert stored == expected_points(sim.truth.points)
    return stored


def test_with_every_fault_on_the_truth_is_exactly_what_validation_stores_and_quarantines() -> None:
    registry = fleet_registry()
    sim, got = run(registry, config("all", days=3))
    stored, quarantined = ingest_view(registry, got)
    assert stored == expected_points(sim.truth.points)
    assert sim.truth.expected_stored == len(stored)
    assert dict(quarantined) == dict(sim.truth.expected_quarantined)
    malformed = {"decode_error", "invalid_schema", "wrong_unit", "unsupported_schema_version"}
    assert {"non_finite", "out_of_range", "before_commissioning"} <= set(quarantined)
    assert set(quarantined) - {"non_finite", "out_of_range", "before_commissioning"} <= malformed
    kinds = Counter(f["fault"] for f in sim.truth.faults)
    assert set(kinds) == set(FAULT_NAMES)
    # The truth file holds the same expectations.
    doc = sim.truth.as_dict()
    assert doc["totals"]["expected_stored"] == len(stored)
    assert sum(d["expected_stored"] for d in doc["devices"].values()) == len(stored)


@pytest.mark.parametrize("fault", FAULT_NAMES)
def test_each_fault_alone_changes_only_what_it_touches(
    fault: str, clean: dict[tuple[str, int], dict[str, Any]]
) -> None:
    registry = fleet_registry()
    sim, got = run(registry, config(fault))
    stored, quarantined = ingest_view(registry, got)
    assert stored == expected_points(sim.truth.points)
    assert dict(quarantined) == dict(sim.truth.expected_quarantined)
    recorded = Counter(f["fault"] for f in sim.truth.faults)
    assert set(recorded) == {fault}
    touched_devices = {f.get("device") for f in sim.truth.faults}
    touched_gateways = {f.get("gateway") for f in sim.truth.faults}
    for key, values in clean.items():  # every reading away from the faults is exactly the clean one
        device = registry.devices[key[0]]
        if key[0] in touched_devices or device.gateway in touched_gateways:
            continue
        assert stored.get(key) == values, (fault, key)
    if fault in ("duplicate", "out_of_order", "late", "disconnect"):
        assert stored == clean  # delivery faults lose nothing and change nothing
    if fault in ("nan", "out_of_range", "malformed"):
        assert set(stored) < set(clean)
    if fault == "duplicate":
        repeated = Counter((m.topic, m.payload) for m in got.messages)
        assert sum(n - 1 for n in repeated.values()) == recorded["duplicate"]
    if fault == "late":
        for f in sim.truth.faults:
            assert 2 * 3_600_000 <= f["delay_ms"] <= 72 * 3_600_000
            assert f["delivered_ms"] >= f["interval_start_ms"] + 900_000 + 2 * 3_600_000


def test_a_disconnected_gateway_publishes_nothing_then_flushes_its_spool_in_order() -> None:
    registry = fleet_registry()
    _, got = run(registry, config("disconnect=1"))
    (down, up) = got.events
    assert isinstance(down, GatewayEvent) and not down.online and up.online and down.gateway == up.gateway
    during = [m for m in got.messages if m.gateway == down.gateway and down.at_ms <= m.deliver_ms < up.at_ms]
    assert during == []
    flushed = [m for m in got.messages if m.gateway == down.gateway and m.deliver_ms == up.at_ms]
    assert flushed
    seqs = [json.loads(m.payload)["seq"][0] for m in flushed if m.device == flushed[0].device]
    assert seqs == sorted(seqs)


def test_a_full_spool_loses_the_oldest_batches_and_the_truth_counts_them(
    clean: dict[tuple[str, int], dict[str, Any]],
) -> None:
    registry = fleet_registry()
    sim, got = run(registry, config("disconnect=2", spool=3))
    stored, _ = ingest_view(registry, got)
    assert sim.truth.lost_readings > 0
    assert stored == expected_points(sim.truth.points)
    assert len(stored) + sim.truth.lost_readings == len(clean)
    lost = [f for f in sim.truth.faults if f["fault"] == "spool_overflow"]
    assert sum(f["readings"] for f in lost) == sim.truth.lost_readings


def test_registers_roll_over_at_their_width_and_a_replaced_meter_restarts_near_zero() -> None:
    registry = fleet_registry()
    sim, got = run(registry, config("rollover,meter_replacement"))
    faults = {f["fault"]: f for f in sim.truth.faults}
    roll = faults["rollover"]
    assert roll["width_declared_in_registry"] and roll["width_kwh"] == 100_000
    series = got.series(roll["device"], roll["metric"])
    drops = [(a, b) for (_, a), (_, b) in itertools.pairwise(series) if b < a]
    assert len(drops) == 1 and drops[0][0] > 99_000 and drops[0][1] < 1_000
    swap = faults["meter_replacement"]
    series = got.series(swap["device"], swap["metric"])
    after = [v for ts, v in series if ts > swap["at_ms"]]
    assert after[0] >= swap["new_initial_register"] and after[0] < swap["new_initial_register"] + 100
    assert dict(series)[swap["at_ms"]] == swap["old_final_register"]
    gap = [ts for ts, _ in series if swap["at_ms"] < ts < swap["at_ms"] + swap["gap_ms"]]
    assert gap == [] and swap["readings_not_taken"] == swap["gap_ms"] // 300_000 - 1


def test_unknown_faults_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        FaultConfig.parse("nan,gremlins", days=1)
    assert FaultConfig.parse("late=7,nan", days=3).counts == {"late": 7, "nan": 9}

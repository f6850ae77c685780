"""Ingest stores the batch-level `"clock": "unsynced"` flag as the boolean field `clock_unsynced=true` on every
point of such a batch, on the fast path and on the slow path alike; synchronised points carry nothing extra."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices import Reading, Registry, encode_batch, readings_topic, units_for
from ingest import IngestSettings, IngestStats, Pipeline
from ingest.mqtt import MqttConfig
from storage.lineprotocol import encode_readings
from tests.support.fastpath_contract import EM, FAST, NOW, TOPICS, base_doc, check, mutated, slow_lines
from tests.support.ingest_fakes import FakeSource, FakeWriter
from tests.support.readings import em_values
from tests.support.waiting import wait_until

UNITS = units_for("electricity_meter")


def em_payload(n: int, *, unsynced: bool, first: int = 3) -> bytes:
    rows = [(NOW - 3_600_000 + i * 60_000, em_values(i)) for i in range(n)]
    return encode_batch(EM.id, first, UNITS, rows, clock_unsynced=unsynced)


def test_encode_readings_adds_the_boolean_field_only_to_flagged_readings() -> None:
    plain = Reading(ts=5, values={"power": 1.5, "connector_status": "Charging"})
    flagged = plain.flagged_unsynced()
    assert encode_readings("m,device=d", [plain, flagged], [7, 8]) == [
        'm,device=d power=1.5,connector_status="Charging",seq=7i 5',
        'm,device=d power=1.5,connector_status="Charging",seq=8i,clock_unsynced=true 5',
    ]


@pytest.mark.parametrize("unsynced", [False, True])
def test_both_paths_make_the_same_lines_with_the_flag_on_every_line_of_an_unsynced_batch(unsynced: bool) -> None:
    payload = em_payload(4, unsynced=unsynced)
    fast = FAST.lines(TOPICS[EM.id], payload, NOW)
    assert fast is not None
    assert fast[1] == slow_lines(TOPICS[EM.id], payload)
    assert [
        line.endswith(f"i,clock_unsynced=true {NOW - 3_600_000 + i * 60_000}") for i, line in enumerate(fast[1])
    ] == [unsynced] * 4
    assert sum("clock_unsynced" in line for line in fast[1]) == (4 if unsynced else 0)


@pytest.mark.parametrize("value", [None, "synced", "UNSYNCED", "", 1, True, ["unsynced"], {"clock": "unsynced"}])
def test_the_fast_path_declines_any_other_clock_value(value: object) -> None:
    doc = json.loads(em_payload(2, unsynced=False))
    doc["clock"] = value
    payload = json.dumps(doc).encode()
    assert FAST.lines(TOPICS[EM.id], payload, NOW) is None
    # the authority: null reads as absent, anything else is an invalid schema
    expected = slow_lines(TOPICS[EM.id], em_payload(2, unsynced=False)) if value is None else None
    assert slow_lines(TOPICS[EM.id], payload) == expected


clock_values = st.one_of(
    st.just("unsynced"),
    st.just("unsynced"),
    st.sampled_from(["synced", "Unsynced", "unsynced ", ""]),
    st.none(),
    st.booleans(),
    st.integers(-1, 2),
)


@st.composite
def mutated_with_clock(draw: st.DrawFn) -> tuple[str, bytes]:
    """The mutations of tests/support/fastpath_contract.py, plus a `clock` field set (mostly to the valid value),
    sometimes after the payload was otherwise broken."""
    topic, payload = draw(mutated())
    try:
        doc: Any = json.loads(payload)
    except ValueError:
        return topic, payload
    if isinstance(doc, dict) and draw(st.integers(0, 4)) > 0:
        doc["clock"] = draw(clock_values)
        payload = json.dumps(doc, allow_nan=True).encode()
    return topic, payload


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_with_clock())
def test_mutated_messages_with_a_clock_flag_never_make_the_fast_path_disagree(message: tuple[str, bytes]) -> None:
    check(*message)


def test_the_unmutated_unsynced_messages_take_the_fast_path() -> None:
    for device in TOPICS:
        doc = base_doc(device, 3)
        doc["clock"] = "unsynced"
        assert check(TOPICS[device], json.dumps(doc).encode())


# --- through the pipeline (fake broker and database) -----------------------------------------------------------


@pytest.fixture
def registry(make_registry: Callable[[str], Registry]) -> Registry:
    return make_registry("cf1")


async def test_the_pipeline_flags_exactly_the_unsynced_readings_on_both_paths(
    tmp_path: Path, registry: Registry
) -> None:
    """Three messages: unsynced (fast path), unsynced with one invalid reading (slow path: salvaged), synced."""
    district = "cf1"
    topic = readings_topic(district, f"{district}-gw1", f"{district}-em", "electricity_meter")
    t0 = 1_790_000_000_000

    def rows(first: int, n: int) -> list[tuple[int, dict[str, float | str]]]:
        return [(t0 + (first + k) * 1000, em_values(first + k)) for k in range(n)]

    salvaged = rows(5, 5)
    salvaged[2] = (-1, salvaged[2][1])  # fails the schema: the message takes the reading-by-reading path
    messages = [
        (topic, encode_batch(f"{district}-em", 0, UNITS, rows(0, 5), clock_unsynced=True)),
        (topic, encode_batch(f"{district}-em", 5, UNITS, salvaged, clock_unsynced=True)),
        (topic, encode_batch(f"{district}-em", 10, UNITS, rows(10, 5))),
    ]
    settings_ = IngestSettings(
        registry=tmp_path / "unused.toml",
        quarantine=tmp_path / "q.sqlite",
        mqtt=MqttConfig(),
        batch_interval_s=0.01,
        retry_base_s=0.001,
        retry_max_s=0.01,
    )
    source, writer, stats = FakeSource(), FakeWriter(), IngestStats()
    pipeline = Pipeline(settings_, registry, stats=stats, writer=writer, source=source)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    source.feed(messages)
    await wait_until(lambda: len(source.acked) == 3, what="3 acks")
    stop.set()
    await asyncio.wait_for(task, 10)

    assert stats.readings_stored == 14
    assert dict(stats.readings_quarantined) == {"invalid_reading": 1}
    flagged = {int(line.split(",seq=")[1].split("i")[0]) for line in writer.lines if ",clock_unsynced=true " in line}
    plain = {int(line.split(",seq=")[1].split("i")[0]) for line in writer.lines if "clock_unsynced" not in line}
    assert flagged == {0, 1, 2, 3, 4, 5, 6, 8, 9}
    assert plain == {10, 11, 12, 13, 14}
    assert len(writer.lines) == 14

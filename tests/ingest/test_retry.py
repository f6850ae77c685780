"""Retry delays: exponential backoff with full jitter, never shorter than Retry-After (capped)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from devices import Registry
from devices.backoff import FULL, Backoff
from ingest import IngestSettings, IngestStats, Pipeline
from ingest.mqtt import MqttConfig
from storage.errors import SinkUnavailable
from tests.support.ingest_fakes import FakeSource
from tests.support.readings import em_messages
from tests.support.waiting import wait_until


def test_the_ceiling_doubles_up_to_the_maximum() -> None:
    b = Backoff(base_s=0.5, max_s=30.0, jitter=FULL)
    assert [b.ceiling(n) for n in range(1, 10)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert b.ceiling(10_000) == 30.0


def test_full_jitter_draws_between_zero_and_the_ceiling() -> None:
    draws: list[tuple[float, float]] = []

    def uniform(a: float, b: float) -> float:
        draws.append((a, b))
        return (a + b) / 2

    b = Backoff(base_s=1.0, max_s=8.0, jitter=FULL, uniform=uniform)
    assert [b.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert draws == [(0.0, 1.0), (0.0, 2.0), (0.0, 4.0), (0.0, 8.0), (0.0, 8.0)]
    real = Backoff(base_s=1.0, max_s=8.0, jitter=FULL)
    assert all(0.0 <= real.delay(4) <= 8.0 for _ in range(200))


def test_retry_after_is_a_floor_and_is_capped() -> None:
    b = Backoff(base_s=1.0, max_s=8.0, jitter=FULL, max_retry_after_s=60.0, uniform=lambda a, _b: a)
    assert b.delay(1, retry_after=5.0) == 5.0  # the server asked for 5 s: never sooner
    assert b.delay(1, retry_after=0.0) == 0.0
    assert b.delay(3, retry_after=3600.0) == 60.0  # a wrong header cannot park the consumer for an hour
    jittered = Backoff(base_s=1.0, max_s=8.0, jitter=FULL, uniform=lambda _a, b: b)
    assert jittered.delay(4, retry_after=2.0) == 8.0  # the jittered backoff may be longer than the hint


class ThrottlingWriter:
    """429 with Retry-After three times, then accepts."""

    def __init__(self) -> None:
        self.calls = 0
        self.bodies: list[bytes] = []

    async def prepare(self) -> None:
        pass

    async def write(self, body: bytes) -> None:
        self.calls += 1
        if self.calls <= 3:
            raise SinkUnavailable("429", retry_after=[2.5, 0.0, 40.0][self.calls - 1])
        self.bodies.append(body)

    async def aclose(self) -> None:
        pass


async def test_the_pipeline_waits_as_the_backoff_and_the_server_say(
    tmp_path: Path, make_registry: Callable[[str], Registry]
) -> None:
    settings = IngestSettings(
        registry=tmp_path / "r.toml",
        quarantine=tmp_path / "q.sqlite",
        mqtt=MqttConfig(),
        writers=1,
        batch_interval_s=0.01,
        retry_base_s=1.0,
        retry_max_s=30.0,
    )
    source, writer, stats = FakeSource(), ThrottlingWriter(), IngestStats()
    pipeline = Pipeline(settings, make_registry("r1"), stats=stats, writer=writer, source=source)
    pipeline.backoff.uniform = lambda _a, b: b  # the top of the jitter range, to make the delays exact
    waited: list[float] = []

    async def sleep(delay: float) -> None:
        waited.append(delay)
        await asyncio.sleep(0)

    pipeline.sleep = sleep
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    source.feed(em_messages("r1", 10, 10))
    await wait_until(lambda: len(source.acked) == 1, what="ack")
    stop.set()
    await asyncio.wait_for(task, 10)
    # attempt 1: max(backoff 1 s, Retry-After 2.5 s); attempt 2: backoff 2 s; attempt 3: Retry-After 40 s
    assert waited == [2.5, 2.0, 40.0]
    assert stats.write_retries == 3
    assert len(writer.bodies) == 1


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    from storage.errors import parse_retry_after

    now = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now=now) == 30.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:00 GMT", now=now) == 0.0  # already past
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None

"""In-memory stand-ins for ingest's broker and database: a source that records acknowledgements and
publishes, a writer that can be down or refuse lines, and a Pipeline built on them with short timings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from devices import Registry
from ingest.mqtt import Message
from storage.errors import SinkRejected, SinkUnavailable


class FakeSource:
    """An in-memory broker side: `feed` delivers messages, `ack` records what was acknowledged."""

    def __init__(self) -> None:
        self.subscribed = asyncio.Event()
        self._pending: list[Message] = []
        self._ready = asyncio.Event()
        self.acked: list[Message] = []
        self.stopped = False
        self._mid = 0
        #: (topic, payload) of every confirmation the pipeline published
        self.published: list[tuple[str, bytes]] = []
        #: called with the messages of each ack, and with each publish, before they are recorded (to check
        #: what is durable at that moment)
        self.on_ack: Callable[[Sequence[Message]], None] | None = None
        self.on_publish: Callable[[str, bytes], None] | None = None

    def feed(self, messages: Sequence[tuple[str, bytes]]) -> list[Message]:
        out = []
        for topic, payload in messages:
            self._mid += 1
            out.append(Message(topic, payload, self._mid, 1, 1, time.monotonic()))
        self._pending.extend(out)
        self._ready.set()
        return out

    async def start(self) -> None:
        self.subscribed.set()

    async def receive(self, wait_s: float | None = None) -> list[Message]:
        if not self._pending:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), wait_s)
            except TimeoutError:
                return []
        out, self._pending = self._pending, []
        return out

    def wake(self) -> None:
        self._ready.set()

    def ack(self, messages: Sequence[Message]) -> int:
        if self.on_ack is not None:
            self.on_ack(messages)
        self.acked.extend(m for m in messages if m.qos)
        return sum(1 for m in messages if m.qos)

    def publish(self, topic: str, payload: bytes) -> bool:
        if self.on_publish is not None:
            self.on_publish(topic, payload)
        self.published.append((topic, payload))
        return True

    async def stop(self) -> None:
        self.stopped = True


class FakeWriter:
    """A database: down (SinkUnavailable) while `down` is set; refuses any line containing one of
    `refuse` (storing the other lines, as InfluxDB 1.x does with a partial write). Readings' lines are kept
    in `lines`, the `unstored` points (`storage.unstored`) in `unstored`."""

    def __init__(self, *, refuse: Sequence[str] = (), fail_first: int = 0) -> None:
        self.down = False
        self.fail_first = fail_first
        self.refuse = tuple(refuse)
        self.requests: list[bytes] = []
        self.lines: set[str] = set()
        self.unstored: set[str] = set()
        self.calls = 0
        self.prepared = False

    async def prepare(self) -> None:
        if self.down:
            raise SinkUnavailable("down")
        self.prepared = True

    async def write(self, body: bytes) -> None:
        self.calls += 1
        call = self.calls
        await asyncio.sleep(0)
        if self.down or call <= self.fail_first:
            raise SinkUnavailable("down", retry_after=None)
        self.requests.append(body)
        lines = body.decode().split("\n")
        bad = [line for line in lines if any(r in line for r in self.refuse)]
        for line in lines:
            if line not in bad:
                (self.unstored if line.startswith("unstored,") else self.lines).add(line)
        if bad:
            raise SinkRejected("partial write", status=400, body=f'{{"error":"partial write: dropped={len(bad)}"}}')

    async def aclose(self) -> None:
        pass


def fake_pipeline(tmp_path: Path, registry: Registry, writer: Any, **overrides: Any) -> tuple[Any, FakeSource, Any]:
    """(pipeline, source, stats) of a Pipeline on an in-memory broker and `writer`, with short timings;
    `mqtt=` and any other IngestSettings field may be overridden."""
    from ingest import IngestSettings, IngestStats, Pipeline
    from ingest.mqtt import MqttConfig

    options: dict[str, Any] = {"batch_interval_s": 0.01, "retry_base_s": 0.001, "retry_max_s": 0.01}
    mqtt = overrides.pop("mqtt", MqttConfig())
    settings = IngestSettings(
        registry=tmp_path / "unused.toml", quarantine=tmp_path / "q.sqlite", mqtt=mqtt, **(options | overrides)
    )
    source = FakeSource()
    stats = IngestStats()
    return Pipeline(settings, registry, stats=stats, writer=writer, source=source), source, stats

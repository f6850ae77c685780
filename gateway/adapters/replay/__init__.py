"""File replay: the readings of a recorded message file, through the spool, under this gateway's topics.

The file is JSON lines, one `{"topic": ..., "payload": ...}` per line, as `districtpulse simulate --dry-run
--out F.jsonl` writes it (a v1 batch per payload). Each line's readings keep their recorded timestamps and
get this gateway's sequence numbers; device ids and kinds come from the topics. The line number is the
adapter's cursor, committed with the line's readings, so a gateway killed mid-file resumes at the next line
without repeating or skipping a reading. A line that cannot be read is logged (truncated) and skipped.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from devices.tables import Bounds
from devices.topics import TopicError, parse_readings_topic
from gateway.adapters.base import AdapterConfig, AdapterContext, AdapterSpec, DeviceRef, ReadingSink, Values
from gateway.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayConfig(AdapterConfig):
    type: Literal["replay"] = "replay"
    #: The message file (relative to the gateway config file's folder).
    file: Path
    #: Pace by the recorded timestamps at this multiple of real time (0: as fast as the spool takes them).
    speed: Annotated[float, Bounds(ge=0)] = 0.0


class BadLine(ValueError):
    pass


def parse_line(line: str) -> tuple[DeviceRef, list[tuple[int, Values]]]:
    """(device, [(ts, values), ...]) of one message line; BadLine says why not."""
    try:
        doc = json.loads(line)
        topic = parse_readings_topic(str(doc["topic"]))
        payload: dict[str, Any] = json.loads(doc["payload"])
        readings: list[tuple[int, Values]] = [(int(r["ts"]), dict(r["values"])) for r in payload["readings"]]
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError, TopicError) as exc:
        # OverflowError: a ts of 1e999 (found by tests/fuzz); RecursionError: nesting past json's limit
        raise BadLine(f"{type(exc).__name__}: {exc}") from exc
    if payload.get("device") != topic.device:
        raise BadLine(f"payload device {str(payload.get('device'))[:64]!r} != topic device {topic.device!r}")
    return DeviceRef(topic.device, topic.kind), readings


class ReplayAdapter:
    def __init__(self, config: ReplayConfig, path: Path) -> None:
        self.config = config
        self.path = path
        self.skipped = 0
        self._devices = self._scan()

    def _lines(self) -> Iterator[tuple[int, str]]:
        with self.path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    yield number, line

    def _scan(self) -> tuple[DeviceRef, ...]:
        found: dict[str, DeviceRef] = {}
        for number, line in self._lines():
            try:
                device, _ = parse_line(line)
            except BadLine:
                continue  # reported when replayed
            if found.setdefault(device.id, device).kind != device.kind:
                raise ConfigError(f"{self.path}:{number}: device {device.id} appears as two kinds")
        return tuple(found.values())

    def devices(self) -> Sequence[DeviceRef]:
        return self._devices

    def run(self, sink: ReadingSink, stop: threading.Event) -> None:
        done = int(sink.cursor() or 0)
        pace: tuple[float, int] | None = None  # (wall start, first recorded ts)
        for number, line in self._lines():
            if stop.is_set():
                return
            if number <= done:
                continue
            try:
                device, readings = parse_line(line)
            except BadLine as exc:
                self.skipped += 1
                log.warning("%s:%d: skipped: %s", self.path, number, str(exc)[:200])
                sink.put_many("", [], cursor=str(number))
                continue
            if self.config.speed > 0 and readings:
                pace = pace or (time.monotonic(), readings[0][0])
                due = pace[0] + (readings[0][0] - pace[1]) / 1000 / self.config.speed
                if stop.wait(max(0.0, due - time.monotonic())):
                    return
            sink.put_many(device.id, readings, cursor=str(number))


def create(config: ReplayConfig, context: AdapterContext) -> ReplayAdapter:
    path = config.file if config.file.is_absolute() else context.base_dir / config.file
    if not path.is_file():
        raise ConfigError(f"replay: no such file {path}")
    return ReplayAdapter(config, path)


SPEC = AdapterSpec("replay", ReplayConfig, create, "the readings of a recorded message file")

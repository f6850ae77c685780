"""Running a simulation in the tests and collecting what it sent; two days to simulate."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from devices import Registry
from simulators import GatewayEvent, Message, SimConfig, Simulation, StatusEvent

#: Recorded meter data no one here wrote (eemeter's samples, see tests/simulators/data/README.md).
RECORDED = Path(__file__).parents[1] / "simulators" / "data"

WINTER = date(2026, 1, 12)  # a Monday
SUMMER = date(2026, 6, 15)  # a Monday


@dataclass
class Collected:
    messages: list[Message] = field(default_factory=list)
    events: list[GatewayEvent] = field(default_factory=list)
    statuses: list[StatusEvent] = field(default_factory=list)

    def readings(self, device: str) -> list[tuple[int, dict[str, Any]]]:
        """Every reading of a device in delivery order (duplicates included)."""
        out = []
        for m in self.messages:
            if m.device == device:
                doc = json.loads(m.payload)
                out.extend((r["ts"], r["values"]) for r in doc["readings"])
        return out

    def series(self, device: str, metric: str) -> list[tuple[int, Any]]:
        """(ts, value) of one metric, sorted by time, each reading once."""
        unique = {ts: values[metric] for ts, values in self.readings(device) if metric in values}
        return sorted(unique.items())


def run(registry: Registry, config: SimConfig) -> tuple[Simulation, Collected]:
    sim = Simulation(registry, config)
    got = Collected()
    for item in sim.stream():
        if isinstance(item, Message):
            got.messages.append(item)
        elif isinstance(item, StatusEvent):
            got.statuses.append(item)
        else:
            got.events.append(item)
    return sim, got


def by_device(messages: Iterable[Message]) -> dict[str, list[Message]]:
    out: dict[str, list[Message]] = {}
    for m in messages:
        out.setdefault(m.device, []).append(m)
    return out

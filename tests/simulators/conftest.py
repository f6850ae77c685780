"""Helpers for the simulator tests: run a simulation and collect what it sent."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest

from devices import Registry, demo_registry_path
from simulators import GatewayEvent, Message, SimConfig, Simulation, StatusEvent


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


@pytest.fixture(scope="session")
def demo_registry() -> Registry:
    return Registry.load(demo_registry_path())


WINTER = date(2026, 1, 12)  # a Monday
SUMMER = date(2026, 6, 15)  # a Monday


FLEET_TOML = """
[[district]]
id = "{district}"
timezone = "Europe/Helsinki"
  [[district.building]]
  id = "{district}-home"
  use = "residential"
  floor_area_m2 = 2400
    [[district.building.gateway]]
    id = "{district}-gw1"
      [[district.building.gateway.device]]
      id = "{district}-em1"
      kind = "electricity_meter"
      commissioned = 2024-01-01T00:00:00Z
      max_power_w = 100000
      register_rollover_kwh = 100000
      [[district.building.gateway.device]]
      id = "{district}-em1-sub"
      kind = "electricity_meter"
      commissioned = 2024-01-01T00:00:00Z
      submeter_of = "{district}-em1"
      [[district.building.gateway.device]]
      id = "{district}-hm1"
      kind = "heat_meter"
      commissioned = 2024-01-01T00:00:00Z
      [[district.building.gateway.device]]
      id = "{district}-pv1"
      kind = "pv_inverter"
      commissioned = 2024-01-01T00:00:00Z
      max_power_w = 30000
      [[district.building.gateway.device]]
      id = "{district}-ev1"
      kind = "ev_charger"
      commissioned = 2024-01-01T00:00:00Z
      max_power_w = 11000
  [[district.building]]
  id = "{district}-office"
  use = "commercial"
  floor_area_m2 = 3000
    [[district.building.gateway]]
    id = "{district}-gw2"
      [[district.building.gateway.device]]
      id = "{district}-em2"
      kind = "electricity_meter"
      commissioned = 2024-01-01T00:00:00Z
      [[district.building.gateway.device]]
      id = "{district}-hm2"
      kind = "heat_meter"
      commissioned = 2024-01-01T00:00:00Z
      [[district.building.gateway.device]]
      id = "{district}-bs2"
      kind = "building_sensor"
      commissioned = 2024-01-01T00:00:00Z
      [[district.building.gateway.device]]
      id = "{district}-ev2"
      kind = "ev_charger"
      commissioned = 2024-01-01T00:00:00Z
      [[district.building.gateway.device]]
      id = "{district}-ws"
      kind = "weather_station"
      commissioned = 2024-01-01T00:00:00Z
"""


def fleet_registry(district: str = "f") -> Registry:
    """Two buildings, two gateways, every device kind, one meter with a declared register width."""
    return Registry.from_toml(FLEET_TOML.format(district=district))

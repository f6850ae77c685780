"""Registries for the tests: the small one most tests build for a district of their own, and the simulators'
fleet of every device kind."""

from __future__ import annotations

import uuid
from pathlib import Path

from devices import Registry

REGISTRY_TEMPLATE = """
[[district]]
id = "{district}"
timezone = "Europe/Helsinki"
  [[district.building]]
  id = "{district}-b1"
  floor_area_m2 = 1000
    [[district.building.gateway]]
    id = "{district}-gw1"
      [[district.building.gateway.device]]
      id = "{district}-em"
      kind = "electricity_meter"
      commissioned = 2024-01-01T00:00:00Z
      max_power_w = 100000
      [[district.building.gateway.device]]
      id = "{district}-bs"
      kind = "building_sensor"
      commissioned = 2024-01-01T00:00:00Z
      [[district.building.gateway.device]]
      id = "{district}-ev"
      kind = "ev_charger"
      commissioned = 2024-01-01T00:00:00Z
    [[district.building.gateway]]
    id = "{district}-gw2"
      [[district.building.gateway.device]]
      id = "{district}-hm"
      kind = "heat_meter"
      commissioned = 2025-06-01T00:00:00Z
"""


def small_registry_toml(district: str) -> str:
    return REGISTRY_TEMPLATE.format(district=district)


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


#: A house with two recorded meters and a weather station, for the replay of eemeter's samples.
UK_REPLAY_TOML = """
[[district]]
id = "{district}"
timezone = "Europe/London"
  [[district.building]]
  id = "uk-house0"
  floor_area_m2 = 90
    [[district.building.gateway]]
    id = "uk-gw0"
      [[district.building.gateway.device]]
      id = "uk0-em"
      kind = "electricity_meter"
      commissioned = 2010-01-01T00:00:00Z
      [[district.building.gateway.device]]
      id = "uk1-em"
      kind = "electricity_meter"
      commissioned = 2010-01-01T00:00:00Z
      [[district.building.gateway.device]]
      id = "uk0-ws"
      kind = "weather_station"
      commissioned = 2010-01-01T00:00:00Z
""".replace("{district}", "uk")


def fleet_registry(district: str = "f") -> Registry:
    """Two buildings, two gateways, every device kind, one meter with a declared register width."""
    return Registry.from_toml(FLEET_TOML.format(district=district))


def write_registry(path: Path, district: str) -> Registry:
    path.write_text(small_registry_toml(district))
    return Registry.load(path)


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:10]

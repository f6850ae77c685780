"""Shared fixtures: registries built in the test, so each test owns its district id and devices."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator

import pytest

from devices import Registry


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A test that runs a CLI's `main` calls `devices.logs.setup()`, which points the root logger at the
    sys.stderr of that moment: pytest's capture file, closed when the test ends. Left in place, that handler
    fails ("I/O operation on closed file") on the next record any later test's threads emit, and it has
    replaced pytest's own log capture. Put the root logger back as the test found it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


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


@pytest.fixture
def make_registry() -> Callable[[str], Registry]:
    def make(district: str) -> Registry:
        return Registry.from_toml(small_registry_toml(district))

    return make


@pytest.fixture
def unique_district() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def registry_text() -> Callable[[str], str]:
    return small_registry_toml

"""Integration tests run against the real Mosquitto and InfluxDB of `districtpulse services up`.

Every test in this directory gets the `integration` marker, so `pytest -m "not integration"` skips them on
a machine without the services.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from districtpulse.config import Endpoints
from districtpulse.services import down, up
from tests.support.services import private_endpoints

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Conftest hooks see the whole session's items: mark only the ones collected from this directory.
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def endpoints() -> Endpoints:
    """The shared services of the environment (DP_* variables): started if needed, reused if running.

    They are deliberately left running after the session: other test modules and the developer use them.
    """
    shared = Endpoints.from_env()
    up(shared)
    return shared


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Endpoints]:
    """A private Mosquitto and InfluxDB on free ports with their own state dir, for a test that kills, freezes
    or restarts them; stopped (by PID) at the end."""
    endpoints = private_endpoints(tmp_path / "state")
    up(endpoints, log=lambda _: None)
    try:
        yield endpoints
    finally:
        down(endpoints, log=lambda _: None)

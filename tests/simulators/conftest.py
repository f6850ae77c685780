"""Fixtures for the simulator tests (their helpers are in tests/support/simulation.py)."""

from __future__ import annotations

import pytest

from devices import Registry, demo_registry_path


@pytest.fixture(scope="session")
def demo_registry() -> Registry:
    return Registry.load(demo_registry_path())

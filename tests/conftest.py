"""Shared fixtures: registries built in the test, so each test owns its district id and devices; the fake
InfluxDB 2.x server. The helpers themselves are in tests/support (whose asserts pytest rewrites, as in tests)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator

import pytest

pytest.register_assert_rewrite("tests.support")

from devices import Registry  # noqa: E402
from tests.support.influx_servers import FakeInflux, fake_influx2  # noqa: E402
from tests.support.registries import small_registry_toml  # noqa: E402


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


@pytest.fixture
def influx2_server() -> Iterator[FakeInflux]:
    """A fake InfluxDB 2.x (answering /ping as v2.7.11) on a loopback port, recording every request."""
    with fake_influx2() as fake:
        yield fake

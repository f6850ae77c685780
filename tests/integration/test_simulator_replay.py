"""Recorded meter data (eemeter's samples) replayed through real gateway publishing into ingest: InfluxDB holds
the registers whose increases are exactly the recorded interval energies, and the recorded temperatures."""

from __future__ import annotations

import asyncio
import csv
import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from devices import Registry
from districtpulse.config import Endpoints
from simulators.publish import publish
from simulators.replay import Target, read_files, to_messages
from tests.support import registries
from tests.support.sim_ingest import Ingest, running_ingest
from tests.support.simulation import RECORDED


@pytest.fixture
async def ingest(endpoints: Endpoints, tmp_path: Path) -> AsyncIterator[Ingest]:
    district = "r" + uuid.uuid4().hex[:10]
    toml = registries.text("replay_uk").replace('id = "uk"', f'id = "{district}"', 1)
    async with running_ingest(endpoints, Registry.from_toml(toml), tmp_path) as harness:
        yield harness


async def test_recorded_meters_replayed_through_the_gateway_publisher_are_stored_exactly(ingest: Ingest) -> None:
    electricity, temperature = RECORDED / "uk-electricity-hourly-sample-0.csv", RECORDED / "uk-tempC-sample-0.csv"
    rows = read_files(
        [electricity, temperature],
        {
            electricity.name: Target("uk0-em", "energy_import", interval=True),
            temperature.name: Target("uk0-ws", "outdoor_temperature"),
        },
        ZoneInfo("UTC"),
    )
    messages = list(to_messages(rows, ingest.registry, publish_interval_s=3600))
    report = await asyncio.to_thread(
        publish,
        messages,
        host=ingest.endpoints.mqtt_host,
        port=ingest.endpoints.mqtt_port,
        client_prefix=ingest.district,
    )
    assert report.readings == 337 + 336
    await ingest.wait_acked(report.messages)
    stored = ingest.points()
    register = sorted((ts, v["energy_import"]) for (d, ts), v in stored.items() if d == "uk0-em")
    with electricity.open(newline="") as f:
        recorded = [float(r["value"]) for r in csv.DictReader(f)]
    assert len(register) == len(recorded) + 1
    increases = [b[1] - a[1] for a, b in itertools.pairwise(register)]
    assert increases == pytest.approx(recorded, abs=1e-12)
    assert register[-1][1] == sum(recorded)  # the same float sum, in the same order
    with temperature.open(newline="") as f:
        temps = [float(r["tempC"]) for r in csv.DictReader(f)]
    assert [v["outdoor_temperature"] for (d, _), v in sorted(stored.items()) if d == "uk0-ws"] == temps
    assert ingest.quarantined() == {}

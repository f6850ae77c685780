"""An in-process ingest pipeline on the real services, for integration tests: its own district, InfluxDB
database, quarantine and MQTT client, whose session the broker forgets on disconnect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from devices import Registry
from districtpulse.config import Endpoints
from ingest import InfluxConfig, IngestSettings, IngestStats, MqttConfig, Pipeline


@dataclass
class RunningIngest:
    endpoints: Endpoints
    registry: Registry
    district: str
    database: str
    quarantine_path: Path
    stats: IngestStats

    def query(self, q: str) -> list[dict[str, Any]]:
        """The series of an InfluxQL query on this test's database (timestamps in ms)."""
        response = httpx.post(
            f"{self.endpoints.influx_url}/query", params={"db": self.database, "epoch": "ms"}, data={"q": q}
        )
        response.raise_for_status()
        series: list[dict[str, Any]] = response.json()["results"][0].get("series", [])
        return series


T = TypeVar("T", bound=RunningIngest)


@asynccontextmanager
async def running_ingest(
    cls: type[T], endpoints: Endpoints, registry: Registry, registry_text: str, tmp_path: Path
) -> AsyncIterator[T]:
    """Run ingest for the registry's (only) district until the block ends; the database is dropped after."""
    district = next(iter(registry.districts))
    registry_path = tmp_path / "registry.toml"
    registry_path.write_text(registry_text)
    database = f"test_{district}"
    settings = IngestSettings(
        registry=registry_path,
        quarantine=tmp_path / "quarantine.sqlite",
        mqtt=MqttConfig(
            host=endpoints.mqtt_host,
            port=endpoints.mqtt_port,
            client_id=f"ingest-{district}",
            topics=(f"dp/v1/{district}/+/+/+",),
            session_expiry_s=0,  # the broker forgets this test's session when it disconnects
        ),
        influx=InfluxConfig(url=endpoints.influx_url, database=database),
        batch_interval_s=0.05,
    )
    stats = IngestStats()
    pipeline = Pipeline(settings, registry, stats=stats)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    await asyncio.wait_for(pipeline.source.subscribed.wait(), 10)
    try:
        yield cls(endpoints, registry, district, database, settings.quarantine, stats)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        httpx.post(f"{endpoints.influx_url}/query", data={"q": f'DROP DATABASE "{database}"'})

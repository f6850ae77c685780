"""An in-process ingest pipeline on the real services for the simulator's integration tests: its own district,
InfluxDB database, quarantine and MQTT client (session removed on exit)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devices import KINDS, Registry
from districtpulse.config import Endpoints
from ingest import InfluxConfig, IngestSettings, IngestStats, MqttConfig, Pipeline, Quarantine
from simulators.fleets import registry_toml


@dataclass
class Ingest:
    endpoints: Endpoints
    registry: Registry
    district: str
    database: str
    quarantine: Path
    stats: IngestStats

    def points(self) -> dict[tuple[str, int], dict[str, Any]]:
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for kind in KINDS.values():
            response = httpx.post(
                f"{self.endpoints.influx_url}/query",
                params={"db": self.database, "epoch": "ms"},
                data={"q": f'SELECT * FROM "{kind.measurement}" WHERE "district" = \'{self.district}\''},
            )
            response.raise_for_status()
            for s in response.json()["results"][0].get("series", []):
                for row in s["values"]:
                    doc = dict(zip(s["columns"], row, strict=True))
                    key = (doc.pop("device"), doc.pop("time"))
                    for tag in ("district", "building", "seq"):
                        doc.pop(tag)
                    out[key] = {k: v for k, v in doc.items() if v is not None}
        return out

    def quarantined(self) -> dict[str, int]:
        quarantine = Quarantine(self.quarantine)
        try:
            return quarantine.count_readings(topic_prefix=f"dp/v1/{self.district}/")
        finally:
            quarantine.close()

    async def wait_acked(self, messages: int, timeout: float = 60.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while self.stats.messages_acked < messages:
            assert asyncio.get_running_loop().time() < deadline, self.stats.as_dict()
            await asyncio.sleep(0.05)


@asynccontextmanager
async def running_ingest(endpoints: Endpoints, registry: Registry, tmp_path: Path) -> AsyncIterator[Ingest]:
    district = next(iter(registry.districts))
    registry_path = tmp_path / "registry.toml"
    registry_path.write_text(registry_toml(registry))
    database = f"test_{district}"
    settings = IngestSettings(
        registry=registry_path,
        quarantine=tmp_path / "quarantine.sqlite",
        mqtt=MqttConfig(
            host=endpoints.mqtt_host,
            port=endpoints.mqtt_port,
            client_id=f"ingest-{district}",
            topics=(f"dp/v1/{district}/+/+/+",),
            session_expiry_s=0,
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
        yield Ingest(endpoints, registry, district, database, settings.quarantine, stats)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        httpx.post(f"{endpoints.influx_url}/query", data={"q": f'DROP DATABASE "{database}"'})

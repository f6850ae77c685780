"""An in-process ingest pipeline on the real services for the simulator's integration tests: its own district,
InfluxDB database, quarantine and MQTT client (session removed on exit): `tests.support.ingest` with the
simulator's registry and the queries its tests make."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from devices import KINDS, Registry
from districtpulse.config import Endpoints
from ingest import Quarantine
from simulators.fleets import registry_toml
from tests.support.ingest import RunningIngest
from tests.support.ingest import running_ingest as shared_running_ingest


class Ingest(RunningIngest):
    def points(self) -> dict[tuple[str, int], dict[str, Any]]:
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for kind in KINDS.values():
            for s in self.query(f'SELECT * FROM "{kind.measurement}" WHERE "district" = \'{self.district}\''):
                for row in s["values"]:
                    doc = dict(zip(s["columns"], row, strict=True))
                    key = (doc.pop("device"), doc.pop("time"))
                    for tag in ("district", "building", "seq"):
                        doc.pop(tag)
                    out[key] = {k: v for k, v in doc.items() if v is not None}
        return out

    def quarantined(self) -> dict[str, int]:
        quarantine = Quarantine(self.quarantine_path)
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
    async with shared_running_ingest(Ingest, endpoints, registry, registry_toml(registry), tmp_path) as ingest:
        yield ingest

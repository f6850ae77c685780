"""Ingest on the real services, for integration tests: an in-process pipeline with its own district, InfluxDB
database, quarantine and MQTT client, whose session the broker forgets on disconnect (`running_ingest`); the
settings of one (`ingest_settings`); and `python -m ingest` in a process of its own (`ingest_process`)."""

from __future__ import annotations

import asyncio
import time
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


def ingest_settings(
    endpoints: Endpoints, tmp_path: Path, district: str, database: str, client_id: str, **overrides: Any
) -> Any:
    mqtt_options = {
        "host": endpoints.mqtt_host,
        "port": endpoints.mqtt_port,
        "client_id": client_id,
        "topics": (f"dp/v1/{district}/+/+/+",),
        "session_expiry_s": 600,
    } | overrides.pop("mqtt", {})
    influx_options = {"url": endpoints.influx_url, "database": database, "timeout": 5.0} | overrides.pop("influx", {})
    options = {"batch_interval_s": 0.05, "retry_base_s": 0.05, "retry_max_s": 0.5} | overrides
    return IngestSettings(
        registry=tmp_path / "registry.toml",
        quarantine=tmp_path / f"quarantine-{client_id}.sqlite",
        mqtt=MqttConfig(**mqtt_options),
        influx=InfluxConfig(**influx_options),
        **options,
    )


def ingest_process(
    endpoints: Endpoints, tmp_path: Path, district: str, database: str, client_id: str, *extra: str
) -> Any:
    """`python -m ingest` in its own process against `endpoints`; returns once it is subscribed."""
    import os
    import subprocess
    import sys

    ready = tmp_path / f"{client_id}.ready"
    ready.unlink(missing_ok=True)
    env = os.environ | {
        "DP_MQTT_PORT": str(endpoints.mqtt_port),
        "DP_INFLUX_PORT": str(endpoints.influx_port),
        "DP_INFLUX_DB": database,
        "DP_STATE_DIR": str(endpoints.state_dir),
        "DP_LOG_LEVEL": "WARNING",
    }
    log = (tmp_path / f"{client_id}.log").open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ingest",
            "--registry",
            str(tmp_path / "registry.toml"),
            "--client-id",
            client_id,
            "--topic",
            f"dp/v1/{district}/+/+/+",
            "--quarantine",
            str(tmp_path / f"quarantine-{client_id}.sqlite"),
            "--ready-file",
            str(ready),
            "--session-expiry",
            "600",
            "--metrics-port",
            "0",
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    log.close()
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"ingest did not start: {(tmp_path / f'{client_id}.log').read_text()[-2000:]}")
        time.sleep(0.02)
    return proc

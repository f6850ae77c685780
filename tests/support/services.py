"""The real services in tests: a private Mosquitto and InfluxDB instance's endpoints and environment, InfluxQL
queries on a test's database, and stopping or starting one service of a private instance."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from districtpulse.config import Endpoints
from storage.influx import InfluxConfig, InfluxV1
from tests.support.net import free_influx_port, free_port


def private_endpoints(state_dir: Path, database: str = "ingest") -> Endpoints:
    return Endpoints.from_env(
        {
            "DP_MQTT_PORT": str(free_port()),
            "DP_INFLUX_PORT": str(free_influx_port()),
            "DP_INFLUX_DB": database,
            "DP_STATE_DIR": str(state_dir),
        }
    )


def services_env(endpoints: Endpoints) -> dict[str, str]:
    """This process's environment pointed at `endpoints` (for a subprocess that reads the DP_* variables)."""
    return {
        **os.environ,
        "DP_MQTT_PORT": str(endpoints.mqtt_port),
        "DP_INFLUX_PORT": str(endpoints.influx_port),
        "DP_INFLUX_DB": endpoints.influx_db,
        "DP_STATE_DIR": str(endpoints.state_dir),
    }


def influx_query(endpoints: Endpoints, database: str, q: str) -> list[dict[str, Any]]:
    response = httpx.post(
        f"{endpoints.influx_url}/query", params={"db": database, "epoch": "ms"}, data={"q": q}, timeout=30
    )
    response.raise_for_status()
    result = response.json()["results"][0]
    assert "error" not in result, result
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def count_points(endpoints: Endpoints, database: str, measurement: str = "electricity") -> int:
    """Points of a measurement, counted by InfluxDB (every point has the integer field seq)."""
    series = influx_query(endpoints, database, f'SELECT count("seq") FROM "{measurement}"')
    return int(series[0]["values"][0][1]) if series else 0


def drop_database(endpoints: Endpoints, database: str) -> None:
    httpx.post(f"{endpoints.influx_url}/query", data={"q": f'DROP DATABASE "{database}"'}, timeout=30)


def remove_session(endpoints: Endpoints, client_id: str) -> None:
    """Connect with clean start and a zero expiry, then disconnect: the broker forgets the session."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.connect(endpoints.mqtt_host, endpoints.mqtt_port, clean_start=True)
    client.loop_start()
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()


def process_gone(pid: int) -> bool:
    """Gone or a zombie (where init reaps orphans late, a stopped service lingers in /proc as state Z)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def stop_service(endpoints: Endpoints, name: str, sig: int = 15) -> int:
    """Stop one of a private instance's services (SIGTERM by default) and wait until its process is gone:
    it stops answering before it exits (Mosquitto saves its database after closing its listener)."""
    from districtpulse.services import status

    pid = next(s.pid for s in status(endpoints) if s.name == name)
    assert pid is not None, f"{name} is not running"
    os.kill(pid, sig)
    deadline = time.monotonic() + 15
    while not process_gone(pid):
        assert time.monotonic() < deadline, f"{name} did not stop"
        time.sleep(0.02)
    return pid


def start_services(endpoints: Endpoints) -> None:
    """Start whatever of the private instance is not running."""
    from districtpulse.services import up

    up(endpoints, log=lambda _: None)


@asynccontextmanager
async def scratch_database(endpoints: Endpoints, prefix: str) -> AsyncIterator[InfluxV1]:
    """A database of its own on the shared InfluxDB (`<prefix>_<random>`), dropped afterwards."""
    client = InfluxV1(InfluxConfig(url=endpoints.influx_url, database=f"{prefix}_{uuid.uuid4().hex[:10]}"))
    await client.create_database()
    try:
        yield client
    finally:
        await client.query(f'DROP DATABASE "{client.config.database}"')
        await client.aclose()

"""The gateway keeps every reading until ingest confirms it is stored: the two ways the broker used to lose
readings, reproduced on a private Mosquitto and InfluxDB with a real `districtpulse gateway` process and a real
`python -m ingest` process.

- Mosquitto killed (kill -9) while ingest is down: the broker had PUBACKed the gateway's messages but not saved
  them. Before confirmations the gateway deleted them on PUBACK and they were lost.
- The gateway publishes before ingest has ever subscribed: Mosquitto answers PUBACK 0x10 "no matching
  subscribers" and drops the message. The gateway now keeps it, counts the code, and publishes it again.
In both, every reading the gateway ever spooled is in InfluxDB exactly once per (device, seq), with its own
values, and the spool is empty at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_mqtt import spooled_counters

from districtpulse.config import Endpoints
from districtpulse.services import down, up
from tests.conftest import small_registry_toml
from tests.ingest.support import (
    influx_query,
    ingest_process,
    private_endpoints,
    start_services,
    stop_service,
    unique,
)

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[gateway]
id = "{district}-gw1"
registry = "registry.toml"
publish_interval_s = 0.2
heartbeat_interval_s = 0.5

[mqtt]
host = "127.0.0.1"
port = {port}
keepalive = 5
reconnect_min_s = 0.1
reconnect_max_s = 0.5

[spool]
path = "spool.sqlite"
commit_interval_ms = 50

[delivery]
confirm_timeout_s = 1
confirm_timeout_max_s = 2
retry_min_s = 0.2

[[adapter]]
type = "simulated"
interval_s = 0.01
ticks = {ticks}
"""

MEASUREMENTS = ("electricity", "indoor", "ev_charging")


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Endpoints]:
    endpoints = private_endpoints(tmp_path / "state")
    up(endpoints, log=lambda _: None)
    try:
        yield endpoints
    finally:
        down(endpoints, log=lambda _: None)


def _gateway(tmp_path: Path, endpoints: Endpoints, district: str, ticks: int) -> subprocess.Popen[bytes]:
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG.format(district=district, port=endpoints.mqtt_port, ticks=ticks))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DP_LOG_FORMAT": "text"}
    with (tmp_path / "gateway.log").open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config), "--exit-when-idle"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def _stored(endpoints: Endpoints, database: str) -> dict[str, list[int]]:
    """device -> the sorted seq of every point InfluxDB holds for it."""
    out: dict[str, list[int]] = {}
    for measurement in MEASUREMENTS:
        for series in influx_query(endpoints, database, f'SELECT "seq" FROM "{measurement}" GROUP BY "device"'):
            out[series["tags"]["device"]] = sorted(int(v[1]) for v in series["values"])
    return out


def _check_all_stored(tmp_path: Path, endpoints: Endpoints, database: str) -> int:
    next_seq, left, counters = spooled_counters(tmp_path / "spool.sqlite")
    assert left == 0, "the spool still holds readings"
    assert not any(name.startswith("evicted") for name in counters)
    assert _stored(endpoints, database) == {device: list(range(n)) for device, n in next_seq.items()}
    return sum(next_seq.values())


def _wait_for_spool(tmp_path: Path, readings: int, timeout: float = 60) -> None:
    """Until the gateway has committed `readings` readings (its adapter's ticks are done)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            next_seq, _, _ = spooled_counters(tmp_path / "spool.sqlite")
            if sum(next_seq.values()) >= readings:
                return
        except Exception:
            pass
        assert time.monotonic() < deadline, "the gateway did not spool its readings"
        time.sleep(0.05)


def _last_status(tmp_path: Path) -> str:
    return (tmp_path / "gateway.log").read_text()[-3000:]


def test_a_broker_killed_while_ingest_is_down_loses_nothing(private: Endpoints, tmp_path: Path) -> None:
    district = unique("dk")
    (tmp_path / "registry.toml").write_text(small_registry_toml(district))
    database = f"db_{district}"
    client = f"ingest-{district}"
    ingest = ingest_process(private, tmp_path, district, database, client)
    ingest.send_signal(signal.SIGTERM)  # its persistent session stays: the broker queues for it
    assert ingest.wait(30) == 0

    ticks = 300  # 3 devices: 900 readings
    gateway = _gateway(tmp_path, private, district, ticks)
    try:
        _wait_for_spool(tmp_path, 3 * ticks)
        time.sleep(1.0)  # published and PUBACKed: queued in the broker for the absent ingest, not on disk
        stop_service(private, "mosquitto", signal.SIGKILL)
        start_services(private)
        ingest = ingest_process(private, tmp_path, district, database, client)
        try:
            assert gateway.wait(90) == 0, _last_status(tmp_path)
        finally:
            ingest.send_signal(signal.SIGTERM)
            ingest.wait(30)
    finally:
        if gateway.poll() is None:
            gateway.kill()
    assert _check_all_stored(tmp_path, private, database) == 3 * ticks


def test_readings_published_before_ingest_ever_subscribed_are_kept_and_stored(
    private: Endpoints, tmp_path: Path
) -> None:
    district = unique("dn")
    (tmp_path / "registry.toml").write_text(small_registry_toml(district))
    database = f"db_{district}"
    status_seen: list[dict[str, object]] = []

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    watcher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=unique("watch-"))
    watcher.on_message = lambda _c, _u, m: status_seen.append(json.loads(m.payload)) if m.payload else None
    watcher.connect("127.0.0.1", private.mqtt_port)
    watcher.subscribe(f"dp/v1/{district}/+/status", qos=1)
    watcher.loop_start()
    ticks = 200
    gateway = _gateway(tmp_path, private, district, ticks)
    try:
        _wait_for_spool(tmp_path, 3 * ticks)
        deadline = time.monotonic() + 30
        while not any(
            dict(s.get("delivery", {})).get("puback_reasons", {}).get("16", 0) > 0  # type: ignore[union-attr]
            for s in status_seen
        ):
            assert time.monotonic() < deadline, "no heartbeat counted PUBACK 0x10"
            time.sleep(0.05)
        assert gateway.poll() is None  # nothing confirmed, nothing deleted: it cannot be idle
        ingest = ingest_process(private, tmp_path, district, database, f"ingest-{district}")
        try:
            assert gateway.wait(90) == 0, _last_status(tmp_path)
        finally:
            ingest.send_signal(signal.SIGTERM)
            ingest.wait(30)
    finally:
        watcher.loop_stop()
        watcher.disconnect()
        if gateway.poll() is None:
            gateway.kill()
    assert _check_all_stored(tmp_path, private, database) == 3 * ticks
    shutdown = status_seen[-1]
    assert shutdown["state"] == "offline" and shutdown["spool"]["readings"] == 0  # type: ignore[index]

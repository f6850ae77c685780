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
import signal
import time
from pathlib import Path
from typing import Any

from districtpulse.config import Endpoints
from tests.support.delivery import check_all_stored, gateway_process, last_status, wait_for_spool
from tests.support.ingest import ingest_process
from tests.support.registries import small_registry_toml, unique
from tests.support.services import start_services, stop_service


def test_a_broker_killed_while_ingest_is_down_loses_nothing(private: Endpoints, tmp_path: Path) -> None:
    district = unique("dk")
    (tmp_path / "registry.toml").write_text(small_registry_toml(district))
    database = f"db_{district}"
    client = f"ingest-{district}"
    ingest = ingest_process(private, tmp_path, district, database, client)
    ingest.send_signal(signal.SIGTERM)  # its persistent session stays: the broker queues for it
    assert ingest.wait(30) == 0

    ticks = 300  # 3 devices: 900 readings
    gateway = gateway_process(tmp_path, private, district, ticks, "--exit-when-idle")
    try:
        wait_for_spool(tmp_path, 3 * ticks)
        time.sleep(1.0)  # published and PUBACKed: queued in the broker for the absent ingest, not on disk
        stop_service(private, "mosquitto", signal.SIGKILL)
        start_services(private)
        ingest = ingest_process(private, tmp_path, district, database, client)
        try:
            assert gateway.wait(90) == 0, last_status(tmp_path)
        finally:
            ingest.send_signal(signal.SIGTERM)
            ingest.wait(30)
    finally:
        if gateway.poll() is None:
            gateway.kill()
    assert check_all_stored(tmp_path, private, database) == 3 * ticks


def test_readings_published_before_ingest_ever_subscribed_are_kept_and_stored(
    private: Endpoints, tmp_path: Path
) -> None:
    district = unique("dn")
    (tmp_path / "registry.toml").write_text(small_registry_toml(district))
    database = f"db_{district}"
    status_seen: list[dict[str, Any]] = []

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    watcher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=unique("watch-"))
    watcher.on_message = lambda _c, _u, m: status_seen.append(json.loads(m.payload)) if m.payload else None
    watcher.connect("127.0.0.1", private.mqtt_port)
    watcher.subscribe(f"dp/v1/{district}/+/status", qos=1)
    watcher.loop_start()
    ticks = 200
    gateway = gateway_process(tmp_path, private, district, ticks, "--exit-when-idle")
    try:
        wait_for_spool(tmp_path, 3 * ticks)
        deadline = time.monotonic() + 30
        while not any(s.get("delivery", {}).get("puback_reasons", {}).get("16", 0) > 0 for s in status_seen):
            assert time.monotonic() < deadline, "no heartbeat counted PUBACK 0x10"
            time.sleep(0.05)
        assert gateway.poll() is None  # nothing confirmed, nothing deleted: it cannot be idle
        ingest = ingest_process(private, tmp_path, district, database, f"ingest-{district}")
        try:
            assert gateway.wait(90) == 0, last_status(tmp_path)
        finally:
            ingest.send_signal(signal.SIGTERM)
            ingest.wait(30)
    finally:
        watcher.loop_stop()
        watcher.disconnect()
        if gateway.poll() is None:
            gateway.kill()
    assert check_all_stored(tmp_path, private, database) == 3 * ticks
    shutdown = status_seen[-1]
    assert shutdown["state"] == "offline" and shutdown["spool"]["readings"] == 0

"""`districtpulse services`: the project's own Mosquitto and InfluxDB, started, stopped and restarted for real
(what needs no running service is in tests/districtpulse/test_services_offline.py).

The lifecycle test runs a second, private instance (temporary state dir, free ports) so that it can stop
and restart it without disturbing the shared instance that the other integration tests use.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from districtpulse import services
from districtpulse.config import Endpoints
from districtpulse.services import (
    ServiceError,
    ServiceStatus,
    down,
    layout,
    status,
    up,
)
from tests.support.net import free_influx_port as _free_influx_port
from tests.support.services import private_endpoints, process_gone, services_env

LOOPBACK_HEX = "0100007F"  # 127.0.0.1 as /proc/net/tcp prints it
TCP_LISTEN = "0A"


# --- helpers -------------------------------------------------------------------------------------------


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _by_name(statuses: list[ServiceStatus]) -> dict[str, ServiceStatus]:
    return {s.name: s for s in statuses}


def _pids(endpoints: Endpoints) -> dict[str, int | None]:
    return {s.name: s.pid for s in status(endpoints)}


def _listening_addresses(port: int) -> set[tuple[str, str]]:
    """(table, local address in hex) of every listening TCP socket on `port`, IPv4 and IPv6."""
    found = set()
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            address, _, hex_port = fields[1].rpartition(":")
            if fields[3] == TCP_LISTEN and int(hex_port, 16) == port:
                found.add((table, address))
    return found


def _write_points(endpoints: Endpoints, lines: list[str]) -> None:
    response = httpx.post(
        f"{endpoints.influx_url}/write",
        params={"db": endpoints.influx_db, "precision": "ms"},
        content="\n".join(lines).encode(),
        timeout=10,
    )
    assert response.status_code == 204, response.text


def _count(endpoints: Endpoints, measurement: str) -> int:
    response = httpx.post(
        f"{endpoints.influx_url}/query",
        data={"db": endpoints.influx_db, "q": f'SELECT count(*) FROM "{measurement}"'},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert "error" not in result, result
    series = result.get("series", [])
    return int(series[0]["values"][0][1]) if series else 0


@pytest.fixture
def private_instance(tmp_path: Path) -> Iterator[Endpoints]:
    """A second instance, stopped at the end whatever happens (the test stops it itself on success)."""
    endpoints = private_endpoints(tmp_path / "state", "lifecycle")
    try:
        yield endpoints
    finally:
        down(endpoints, log=lambda _: None)


# --- with services -------------------------------------------------------------------------------------


def test_up_fails_clearly_when_the_mqtt_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        port = foreign.getsockname()[1]
        endpoints = Endpoints.from_env(
            {
                "DP_MQTT_PORT": str(port),
                "DP_INFLUX_PORT": str(_free_influx_port()),
                "DP_STATE_DIR": str(tmp_path / "state"),
            }
        )
        with pytest.raises(ServiceError, match=rf"port {port} on 127\.0\.0\.1 .*DP_MQTT_PORT"):
            up(endpoints, log=lambda _: None)

    # Checked before starting anything: no half-started instance is left behind.
    assert not any(s.running for s in status(endpoints))
    assert not list((tmp_path / "state").rglob("*.pid"))


def test_lifecycle_of_a_private_instance(endpoints: Endpoints, private_instance: Endpoints) -> None:
    private = private_instance
    shared_pids = _pids(endpoints)
    assert all(shared_pids.values()), shared_pids

    # up -> both running, versions from the protocols/binaries
    up(private, log=lambda _: None)
    statuses = _by_name(status(private))
    assert statuses["mosquitto"].running, statuses
    assert statuses["influxdb"].running, statuses
    assert statuses["influxdb"].version is not None
    assert statuses["influxdb"].version.startswith("1.6.7")
    assert statuses["influxdb"].address == f"127.0.0.1:{private.influx_port}"
    assert statuses["mosquitto"].address == f"127.0.0.1:{private.mqtt_port}"
    pids = _pids(private)
    assert set(pids.values()).isdisjoint(shared_pids.values())

    # a second up starts nothing
    messages: list[str] = []
    up(private, log=messages.append)
    assert _pids(private) == pids
    assert sum("already running" in m for m in messages) == 2, messages

    # the CLI glue sees the same
    cli = subprocess.run(
        [sys.executable, "-m", "districtpulse.services", "status"],
        env=services_env(private),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert str(pids["influxdb"]) in cli.stdout

    # data goes in and comes out
    now_ms = int(time.time() * 1000)
    _write_points(private, [f"lifecycle,sensor=s{i} value={i}.5 {now_ms + i}" for i in range(3)])
    assert _count(private, "lifecycle") == 3

    # loopback only, IPv4 and IPv6
    for port in (private.mqtt_port, private.influx_port, private.influx_port + 1):
        assert _listening_addresses(port) == {("tcp", LOOPBACK_HEX)}, port

    # down stops exactly our processes; the shared instance keeps running
    down(private, log=lambda _: None)
    for pid in pids.values():
        assert pid is not None
        assert process_gone(pid), pid
    assert not any(s.running for s in status(private))
    assert not list(private.state_dir.rglob("*.pid"))
    shared = _by_name(status(endpoints))
    assert all(s.running for s in shared.values()), shared
    assert _pids(endpoints) == shared_pids

    # the data directories survive a restart
    up(private, log=lambda _: None)
    assert _pids(private) != pids
    assert _count(private, "lifecycle") == 3

    # one service restarted alone: the other stays down (a chaos run keeps InfluxDB down meanwhile)
    os.kill(_pids(private)["mosquitto"], 9)
    os.kill(_pids(private)["influxdb"], 9)
    deadline = time.monotonic() + 15
    while any(s.running for s in status(private)) and time.monotonic() < deadline:
        time.sleep(0.05)
    up(private, log=lambda _: None, only={"mosquitto"})
    statuses = _by_name(status(private))
    assert statuses["mosquitto"].running and not statuses["influxdb"].running, statuses
    with pytest.raises(ValueError, match="unknown services"):
        up(private, log=lambda _: None, only={"mosquito"})

    down(private, log=lambda _: None)
    assert not any(s.running for s in status(private))


def test_up_shows_the_log_tail_when_a_service_dies_at_startup(
    private_instance: Endpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_render = services.render_mosquitto_conf
    monkeypatch.setattr(
        layout, "render_mosquitto_conf", lambda endpoints: real_render(endpoints) + "no_such_option 1\n"
    )
    with pytest.raises(ServiceError, match=r"(?s)mosquitto \(pid \d+\) exited during startup.*no_such_option"):
        up(private_instance, log=lambda _: None)
    assert not (private_instance.state_dir / "mosquitto" / "mosquitto.pid").exists()

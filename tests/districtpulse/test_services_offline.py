"""`districtpulse services` without a running service: the rendered configurations bind loopback only, and
`up`, `wait_ready` and `status` fail clearly (a non-loopback host, nothing listening, missing binaries, a
failed apt-get). The services themselves run in tests/integration/test_services.py."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from devices.wire import MAX_PACKET_BYTES
from districtpulse.config import Endpoints
from districtpulse.services import (
    ServiceError,
    processes,
    render_influxdb_conf,
    render_mosquitto_conf,
    up,
    wait_ready,
)
from tests.support.services import private_endpoints, services_env


def test_rendered_mosquitto_conf_binds_loopback_only(tmp_path: Path) -> None:
    endpoints = private_endpoints(tmp_path / "state", "lifecycle")
    text = render_mosquitto_conf(endpoints)
    directives = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]

    assert f"listener {endpoints.mqtt_port} 127.0.0.1" in directives
    assert [line for line in directives if line.startswith("listener")] == [f"listener {endpoints.mqtt_port} 127.0.0.1"]
    assert "0.0.0.0" not in text
    assert "$" not in text  # every template placeholder was substituted
    assert "allow_anonymous true" in directives
    assert "max_queued_messages 200000" in directives
    assert "max_inflight_messages 1000" in directives
    assert f"max_packet_size {MAX_PACKET_BYTES}" in directives  # a message and its topic and headers
    state = str(endpoints.state_dir)
    assert f"persistence_location {state}/mosquitto/data/" in directives
    assert f"log_dest file {state}/mosquitto/mosquitto.log" in directives
    assert any(line.startswith("user ") for line in directives)


def test_rendered_influxdb_conf_binds_loopback_only(tmp_path: Path) -> None:
    endpoints = private_endpoints(tmp_path / "state", "lifecycle")
    text = render_influxdb_conf(endpoints)
    config = tomllib.loads(text)

    assert "0.0.0.0" not in text
    assert config["bind-address"] == f"127.0.0.1:{endpoints.influx_port + 1}"
    assert config["http"]["bind-address"] == f"127.0.0.1:{endpoints.influx_port}"
    bind_lines = [line.strip() for line in text.splitlines() if line.strip().startswith("bind-address")]
    assert len(bind_lines) == 2
    assert all(line.startswith('bind-address = "127.0.0.1:') for line in bind_lines)
    home = endpoints.state_dir / "influxdb"
    assert config["meta"]["dir"] == str(home / "meta")
    assert config["data"]["dir"] == str(home / "data")
    assert config["data"]["wal-dir"] == str(home / "wal")
    assert config["reporting-disabled"] is True
    assert config["http"]["log-enabled"] is False
    assert config["monitor"]["store-enabled"] is False


def test_up_refuses_a_non_loopback_host(tmp_path: Path) -> None:
    endpoints = Endpoints.from_env({"DP_MQTT_HOST": "192.0.2.10", "DP_STATE_DIR": str(tmp_path)})
    with pytest.raises(ServiceError, match="DP_MQTT_HOST"):
        up(endpoints, install=False, log=lambda _: None)


def test_wait_ready_times_out_with_a_clear_error(tmp_path: Path) -> None:
    endpoints = private_endpoints(tmp_path / "state", "lifecycle")
    with pytest.raises(ServiceError, match=r"(?s)not ready after 0.5 s.*mosquitto on 127\.0\.0\.1.*Connection refused"):
        wait_ready(endpoints, timeout=0.5)


def test_status_cli_exits_3_when_not_running(tmp_path: Path) -> None:
    endpoints = private_endpoints(tmp_path / "state", "lifecycle")
    result = subprocess.run(
        [sys.executable, "-m", "districtpulse.services", "status"],
        env=services_env(endpoints),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert "mosquitto" in result.stdout
    assert "down" in result.stdout


def test_up_installs_missing_binaries_with_apt_and_reports_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[list[str], dict[str, str]]] = []

    def fake_run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        env = kwargs.get("env")
        assert isinstance(env, dict)
        calls.append((command, env))
        return subprocess.CompletedProcess(command, 100 if "install" in command else 0)

    monkeypatch.setattr(processes, "_find_binary", lambda name: None)
    monkeypatch.setattr(processes.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(processes.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(processes.subprocess, "run", fake_run)

    with pytest.raises(ServiceError, match=r"apt-get install .* failed with exit code 100"):
        up(private_endpoints(tmp_path / "state", "lifecycle"), log=lambda _: None)

    assert [command for command, _ in calls] == [
        ["sudo", "apt-get", "update"],
        ["sudo", "apt-get", "install", "-y", "--no-install-recommends", "mosquitto", "influxdb"],
    ]
    assert all(env["DEBIAN_FRONTEND"] == "noninteractive" for _, env in calls)


def test_up_without_install_names_the_missing_binaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "_find_binary", lambda name: None if name == "influxd" else "/x/mosquitto")
    with pytest.raises(ServiceError, match="not installed: influxd"):
        up(private_endpoints(tmp_path / "state", "lifecycle"), install=False, log=lambda _: None)

"""The systemd unit and the sample gateway.toml that the Pi installation uses."""

from __future__ import annotations

import configparser
import shlex
import shutil
from pathlib import Path

from devices import demo_registry_path
from gateway.config import GatewayConfig

SYSTEMD = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((SYSTEMD / "districtpulse-gateway.service").read_text())
    return unit


def test_the_unit_runs_the_gateway_on_the_installed_config_and_restarts_on_failure_only() -> None:
    service = _unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    exe, config = "/opt/districtpulse/venv/bin/districtpulse", "/etc/districtpulse/gateway.toml"
    assert argv == [exe, "gateway", "--config", config]
    assert shlex.split(service["ExecStartPre"]) == [*argv, "--check"]
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"  # a config error does not loop
    assert service["KillSignal"] == "SIGTERM"
    assert service["StateDirectory"] == "districtpulse"
    assert service["User"] == "districtpulse"
    assert "MALLOC_ARENA_MAX=2" in service["Environment"]  # configparser keeps the last Environment= line
    assert "ProtectClock" not in service  # it would block the read-only adjtimex() clock check
    assert _unit()["Install"]["WantedBy"] == "multi-user.target"


def test_the_sample_config_is_valid_and_spools_in_the_state_directory(tmp_path: Path) -> None:
    shutil.copy(SYSTEMD / "gateway.toml", tmp_path / "gateway.toml")
    shutil.copy(demo_registry_path(), tmp_path / "registry.toml")
    config = GatewayConfig.load(tmp_path / "gateway.toml")
    assert config.district == "demo"
    assert config.spool_path == Path("/var/lib/districtpulse/spool.sqlite")
    assert len(config.registry_devices) > 0
    assert config.spool.synchronous == "FULL"

"""The command line: one command, a subcommand per component, and a gateway that runs without numba."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)


@pytest.mark.parametrize(
    "command", ["services", "demo", "gateway", "ingest", "quarantine", "simulate", "aggregate", "savings", "dashboard"]
)
def test_every_subcommand_has_help(command: str) -> None:
    proc = run("-m", "districtpulse", command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: districtpulse" in proc.stdout


@pytest.mark.parametrize("package", ["ingest", "gateway", "simulators"])
def test_each_component_runs_as_a_module(package: str) -> None:
    proc = run("-m", package, "--help")
    assert proc.returncode == 0, proc.stderr
    assert f"python -m {package}" in proc.stdout


def test_ingest_check_validates_the_configuration(tmp_path: Path) -> None:
    ok = run("-m", "districtpulse", "ingest", "--check")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["devices"] == 40
    broken = tmp_path / "bad.toml"
    broken.write_text("[[district]]\nid = 'has space'\n")
    bad = run("-m", "districtpulse", "ingest", "--check", "--registry", str(broken))
    assert bad.returncode == 2
    assert "invalid id 'has space'" in bad.stderr


def test_the_gateway_imports_no_numba_numpy_or_influxdb_client() -> None:
    code = (
        "import sys; from districtpulse.cli import main; import gateway, gateway.cli, gateway.publisher;"
        "server = {'numba', 'numpy', 'influxdb_client', 'httpx', 'ingest'};"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in server);"
        "print(','.join(bad))"
    )
    proc = run("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_the_gateway_extra_brings_no_server_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {
        dep.split(">")[0].split("=")[0].split("<")[0].strip().lower()
        for dep in project["dependencies"] + project["optional-dependencies"]["gateway"]
    }
    assert names == {"pydantic", "paho-mqtt"}


def test_simulate_dry_run_writes_the_exact_messages_and_the_same_seed_gives_the_same_file(tmp_path: Path) -> None:
    outs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.jsonl"
        proc = run(
            "-m",
            "districtpulse",
            "simulate",
            "--dry-run",
            "--out",
            str(out),
            "--day",
            "2026-11-20",
            "--seed",
            "5",
            "--truth",
            str(tmp_path / f"{name}.json"),
        )
        assert proc.returncode == 0, proc.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    lines = outs[0].splitlines()
    assert len(lines) == 40 * 96  # one message per device per 15 minutes
    first = json.loads(lines[0])
    assert set(first) == {"topic", "payload"}
    assert json.loads((tmp_path / "a.json").read_text())["readings"] == 40 * 1440

"""The gateway runs on a Pi without numba, numpy or an InfluxDB client: import every gateway module in a
fresh interpreter and look at what came with it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import gateway

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = {"numba", "numpy", "influxdb_client", "httpx", "aiomqtt", "pandas", "ingest", "aggregation", "simulators"}


def test_every_gateway_module_imports_without_server_packages() -> None:
    modules = sorted(
        m.name for m in pkgutil.walk_packages(gateway.__path__, "gateway.") if m.name != "gateway.__main__"
    )
    assert "gateway.spool" in modules
    assert "gateway.adapters.simulated" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "import districtpulse.cli\n"
        "districtpulse.cli.build_parser(['gateway'])\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(SERVER_ONLY)!r})\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""

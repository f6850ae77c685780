"""The gateway runs on a Pi without numba, numpy or an InfluxDB client: import every gateway module in a
fresh interpreter and look at what came with it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import gateway

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = {
    "numba",
    "numpy",
    "influxdb_client",
    "httpx",
    "aiomqtt",
    "pandas",
    "storage",
    "ingest",
    "aggregation",
    "simulators",
}


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
    proc = _python(code)
    assert proc.stdout.strip() == ""


PYDANTIC = {"pydantic", "pydantic_core"}


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter (a clean sys.modules) from the repository root; it must succeed."""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_a_gateway_built_with_a_registry_and_the_simulated_adapter_imports_no_pydantic(tmp_path: Path) -> None:
    """Issue 4: pydantic costs a Pi ~12 MB of its 40 MB budget; the gateway's config, registry reader and
    adapters are dataclasses loaded by `devices.tables`, so none of it may come back through an import."""
    from tests.support.registries import small_registry_toml

    (tmp_path / "registry.toml").write_text(small_registry_toml("imp"))
    (tmp_path / "gateway.toml").write_text(
        '[gateway]\nid = "imp-gw1"\nregistry = "registry.toml"\n[mqtt]\nhost = "127.0.0.1"\nport = 1\n'
        '[[adapter]]\ntype = "simulated"\nticks = 1\n'
    )
    code = (
        "import sys\n"
        "from gateway.cli import build_gateway\n"
        "from gateway.config import GatewayConfig\n"
        f"g = build_gateway(GatewayConfig.load({str(tmp_path / 'gateway.toml')!r}))\n"
        "print(g.district, sorted(d.id for r in g.adapters.values() for d in r.devices()))\n"
        "g.spool.close()\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(SERVER_ONLY | PYDANTIC)!r})\n"
        "print(','.join(bad))\n"
    )
    proc = _python(code)
    assert proc.stdout.splitlines() == ["imp ['imp-bs', 'imp-em', 'imp-ev']", ""]

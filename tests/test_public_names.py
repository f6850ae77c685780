"""Each package's public names: `__all__` exists where the package's `__init__` defines an API, every name in
it resolves, none is listed twice, and it is in ruff's isort-style order (RUF022: CONSTANTS, then Classes, then
functions). A package whose `__init__` is only its docstring (and version) exports nothing.

Names resolve through `getattr`, so the lazy names of `devices` (PEP 562 `__getattr__`) count; a fresh
interpreter shows that `devices` still loads them lazily and that the gateway's names resolve without numpy,
numba or the InfluxDB client, as on a Raspberry Pi."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["devices", "gateway", "storage", "ingest", "aggregation", "dashboard", "simulators", "districtpulse"]
#: Packages whose __init__ is a docstring (and __version__) only: the application composes, it exports nothing.
NO_API = {"districtpulse"}


def _isort_style(name: str) -> tuple[int, list[int | str]]:
    """RUF022's order: SCREAMING_SNAKE_CASE first, then CamelCase, then the rest; a natural sort within each."""
    group = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return group, [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def test_every_package_of_the_wheel_is_checked() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == PACKAGES


@pytest.mark.parametrize("package", sorted(set(PACKAGES) - NO_API))
def test_all_resolves_has_no_duplicates_and_is_sorted(package: str) -> None:
    module = importlib.import_module(package)
    names = module.__dict__.get("__all__")
    assert isinstance(names, list), f"{package}/__init__.py has no __all__ list"
    assert names, package
    assert all(isinstance(name, str) for name in names)
    assert sorted(name for name in set(names) if names.count(name) > 1) == []
    assert names == sorted(names, key=_isort_style)
    unresolved = []
    for name in names:
        try:
            getattr(module, name)
        except AttributeError:
            unresolved.append(name)
    assert unresolved == []


@pytest.mark.parametrize("package", sorted(NO_API))
def test_a_package_without_an_api_exports_nothing(package: str) -> None:
    module = importlib.import_module(package)
    assert "__all__" not in module.__dict__
    public = sorted(
        name for name, value in vars(module).items() if not name.startswith("_") and not inspect.ismodule(value)
    )
    assert public == []


def _fresh(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_devices_resolves_its_names_lazily() -> None:
    code = (
        "import sys\n"
        "import devices\n"
        "before = 'pydantic' in sys.modules or any(m.startswith('devices.') for m in sys.modules)\n"
        "missing = [n for n in devices.__all__ if getattr(devices, n, None) is None]\n"
        "print(before, missing)\n"
    )
    assert _fresh(code) == "False []"


def test_the_gateway_names_resolve_without_numpy_numba_or_the_influxdb_client() -> None:
    code = (
        "import sys\n"
        "for name in ('numpy', 'numba', 'influxdb_client'): sys.modules[name] = None  # importing them fails\n"
        "import gateway\n"
        "print([n for n in gateway.__all__ if getattr(gateway, n, None) is None])\n"
    )
    assert _fresh(code) == "[]"

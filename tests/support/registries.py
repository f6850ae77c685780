"""The registries the tests share, as files in tests/data (`path`, `text`), and ids of a test's own.

A test that needs a district of its own renames one: `text("small", district)` gives tests/data/small.toml with
its district id, and every id that starts with it (`"small-b1"`, `"small-em"`), renamed to `district`.
"""

from __future__ import annotations

import re
import tomllib
import uuid
from pathlib import Path

from devices import Registry

DATA = Path(__file__).resolve().parents[1] / "data"


def path(name: str) -> Path:
    """tests/data/<name>.toml."""
    return DATA / f"{name}.toml"


def text(name: str, district: str | None = None) -> str:
    """The registry's TOML; with `district`, its (only) district renamed to it, and every id prefixed with the
    district's id renamed alike."""
    raw = path(name).read_text(encoding="utf-8")
    if district is None:
        return raw
    (old,) = (d["id"] for d in tomllib.loads(raw)["district"])
    return re.sub(rf'"{re.escape(old)}(?=[-"])', f'"{district}', raw)


def small_registry_toml(district: str) -> str:
    """tests/data/small.toml for `district`: one building, two gateways, an electricity meter `<district>-em`,
    a building sensor, an EV charger and a heat meter."""
    return text("small", district)


def fleet_registry(district: str = "f") -> Registry:
    """tests/data/fleet.toml for `district`: two buildings, two gateways, every device kind, one meter with a
    declared register width."""
    return Registry.from_toml(text("fleet", district))


def write_registry(path: Path, district: str) -> Registry:
    path.write_text(small_registry_toml(district))
    return Registry.load(path)


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:10]

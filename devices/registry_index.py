"""What a gateway needs from registry.toml (its district and its devices), read without pydantic.

`devices.registry.Registry` is the full registry that ingest, the simulators and the demo use, built on
pydantic models; importing pydantic costs a Raspberry Pi gateway about 12 MB (issue 4). This module checks
the same file with `devices.tables` dataclasses that mirror those models field for field (ids, kinds,
bounds, time zones, dates, unknown keys) and the same rules across entries (ids unique per level, a
sub-meter's parent of the same kind), so a file one refuses the other refuses too; the messages may be
worded differently. `tests/devices/test_registry_index.py` holds the two to the same answers on every
registry in the repository.

`RegistryError` lives here, beside the only reader that must not import pydantic; `devices.registry`
re-exports it, so `from devices.registry import RegistryError` keeps working and both readers raise the
same exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from devices.kinds import DeviceKind
from devices.tables import Bounds, Check, TableError, load_toml
from devices.topics import check_id

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Id = Annotated[str, Check(check_id)]
Positive = Annotated[float, Bounds(gt=0)]


class RegistryError(ValueError):
    """The registry file cannot be read or is inconsistent."""


def _aware(value: datetime) -> None:
    if value.tzinfo is None:
        raise ValueError("commissioned needs a UTC offset, e.g. 2024-01-01T00:00:00Z")


def _zone(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {value!r}") from exc


@dataclass(frozen=True, slots=True)
class _Device:
    id: Id
    kind: DeviceKind
    name: str = ""
    commissioned: Annotated[datetime, Check(_aware)] = _EPOCH
    max_power_w: Positive | None = None
    register_rollover_kwh: Positive | None = None
    submeter_of: Id | None = None


@dataclass(frozen=True, slots=True)
class _Gateway:
    id: Id
    name: str = ""
    device: list[_Device] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Building:
    id: Id
    floor_area_m2: Positive
    name: str = ""
    use: str = "residential"
    retrofit: date | None = None  # a TOML date-time is refused: it would become a date in another zone
    gateway: list[_Gateway] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _District:
    id: Id
    name: str = ""
    timezone: Annotated[str, Check(_zone)] = "UTC"
    grid_zone: str = "EU27"
    heat_zone: str | None = None
    building: list[_Building] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _File:
    district: Annotated[list[_District], Bounds(min_length=1)]


def _check(registry: _File) -> None:
    """The rules across entries that `devices.registry.Registry` applies, in the same order."""
    seen: dict[str, set[str]] = {"district": set(), "building": set(), "gateway": set(), "device": set()}
    kinds: dict[str, DeviceKind] = {}
    parents: list[_Device] = []

    def unique(key: str, what: str) -> None:
        if key in seen[what]:
            raise RegistryError(f"duplicate {what} id {key!r}")
        seen[what].add(key)

    for district in registry.district:
        unique(district.id, "district")
        for building in district.building:
            unique(building.id, "building")
            for gateway in building.gateway:
                unique(gateway.id, "gateway")
                for device in gateway.device:
                    unique(device.id, "device")
                    kinds[device.id] = device.kind
                    if device.submeter_of:
                        parents.append(device)
    for device in parents:
        assert device.submeter_of is not None
        if kinds.get(device.submeter_of) is not device.kind:
            raise RegistryError(
                f"device {device.id!r}: submeter_of {device.submeter_of!r} is not a {device.kind} in the registry"
            )


def gateway_devices(path: str | Path, gateway_id: str) -> tuple[str, tuple[tuple[str, DeviceKind], ...]]:
    """(district id, ((device id, kind), ...)) of `gateway_id` in the registry file, devices in file order.

    Raises RegistryError when the file cannot be read, is invalid, or has no such gateway."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot read registry {path}: {exc.strerror}") from exc
    try:
        registry = load_toml(_File, text)
    except TableError as exc:
        raise RegistryError(f"{path}: {exc}") from exc
    try:
        _check(registry)
    except RegistryError as exc:
        raise RegistryError(f"{path}: {exc}") from None
    for district in registry.district:
        for building in district.building:
            for gateway in building.gateway:
                if gateway.id == gateway_id:
                    return district.id, tuple((d.id, d.kind) for d in gateway.device)
    raise RegistryError(f"gateway {gateway_id!r} is not in the registry {path}")


__all__ = ["RegistryError", "gateway_devices"]

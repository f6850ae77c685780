"""The registry of deployed districts, buildings, gateways and devices, loaded from a TOML file.

    [[district]]
    id = "demo"
    timezone = "Europe/Helsinki"
      [[district.building]]
      id = "b1"
      floor_area_m2 = 5200
      retrofit = 2025-10-01          # optional: energy-savings measure in place from this local date
        [[district.building.gateway]]
        id = "gw-b1"
          [[district.building.gateway.device]]
          id = "b1-em-main"
          kind = "electricity_meter"

The registry is the only source of InfluxDB tags (district, building, device): tags never come from payload
fields, which keeps series cardinality bounded and makes a redelivered reading land on the same point.

One model for every component: frozen dataclasses read by `devices.tables` (the standard library only), so
the gateway on a Raspberry Pi reads the same file with the same rules as ingest, the jobs and the simulators,
without importing pydantic (about 12 MB of a Pi gateway's 40 MB budget, issue 4). The price is start-up time
on a big registry: 17,600 devices validate in 0.53 s (pydantic took 0.11 s), beside the 0.95 s that tomllib
takes to parse the file (`benchmarks/registry_load.py`: validate_vs_parse 0.56).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from devices.kinds import DeviceKind
from devices.tables import Bounds, Check, TableError, load, load_toml
from devices.topics import check_id, readings_topic

__all__ = [
    "BuildingEntry",
    "Device",
    "DeviceEntry",
    "DistrictEntry",
    "GatewayEntry",
    "Registry",
    "RegistryError",
    "RegistryFile",
    "demo_registry_path",
    "gateway_devices",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Id = Annotated[str, Check(check_id)]
Positive = Annotated[float, Bounds(gt=0)]


class RegistryError(ValueError):
    """The registry file cannot be read or is inconsistent; the message names the file and the entry."""


def _aware(value: datetime) -> None:
    if value.tzinfo is None:
        raise ValueError("commissioned needs a UTC offset, e.g. 2024-01-01T00:00:00Z")


def _zone(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        # OSError: "Europe" names a folder of the zone database (IsADirectoryError; found by tests/fuzz)
        raise ValueError(f"unknown IANA time zone {value!r}") from exc


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    id: Id
    kind: DeviceKind
    name: str = ""
    commissioned: Annotated[datetime, Check(_aware)] = _EPOCH  # no reading may be older than this
    max_power_w: Positive | None = None  # plausibility limit for registers
    register_rollover_kwh: Positive | None = None  # register width, if it wraps
    submeter_of: Id | None = None  # the meter this one is a sub-meter of


@dataclass(frozen=True, slots=True)
class GatewayEntry:
    id: Id
    name: str = ""
    device: list[DeviceEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BuildingEntry:
    """A building. `retrofit` is the local date an energy-savings measure took effect: `districtpulse aggregate`
    then reports metered savings (CalTRACK 2.0 daily, IPMVP option C) with the 365 days before it as the
    baseline (CalTRACK's rule) and the reporting period from it to the last complete local day."""

    id: Id
    floor_area_m2: Positive
    name: str = ""
    use: str = "residential"
    retrofit: date | None = None  # a TOML date-time is refused: it would become a date in another zone
    gateway: list[GatewayEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DistrictEntry:
    id: Id
    name: str = ""
    timezone: Annotated[str, Check(_zone)] = "UTC"
    grid_zone: str = "EU27"  # electricity emission-factor zone (aggregation.co2)
    heat_zone: str | None = None  # district-heating network of the heat factor
    building: list[BuildingEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RegistryFile:
    district: Annotated[list[DistrictEntry], Bounds(min_length=1)]


def _check(registry: RegistryFile) -> None:
    """The rules across entries: ids unique per level, a sub-meter's parent a device of the same kind."""
    seen: dict[str, set[str]] = {"district": set(), "building": set(), "gateway": set(), "device": set()}
    kinds: dict[str, DeviceKind] = {}
    parents: list[DeviceEntry] = []

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
        registry = load_toml(RegistryFile, text)
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


@dataclass(frozen=True, slots=True)
class Device:
    """A device with its place in the hierarchy: everything ingest needs to tag and check its readings."""

    id: str
    kind: DeviceKind
    district: str
    building: str
    gateway: str
    commissioned_ms: int
    max_power_w: float | None
    register_rollover_kwh: float | None
    submeter_of: str | None = None

    @property
    def topic(self) -> str:
        return readings_topic(self.district, self.gateway, self.id, self.kind)


class Registry:
    """Districts, buildings, gateways and devices with lookups by id; ids are unique across the registry."""

    def __init__(self, model: RegistryFile) -> None:
        _check(model)
        self.model = model
        self.devices: dict[str, Device] = {}
        self.gateways: dict[str, tuple[DistrictEntry, BuildingEntry, GatewayEntry]] = {}
        self.buildings: dict[str, tuple[DistrictEntry, BuildingEntry]] = {}
        self.districts: dict[str, DistrictEntry] = {}
        for district in model.district:
            self.districts[district.id] = district
            for building in district.building:
                self.buildings[building.id] = (district, building)
                for gateway in building.gateway:
                    self.gateways[gateway.id] = (district, building, gateway)
                    for dev in gateway.device:
                        self.devices[dev.id] = Device(
                            id=dev.id,
                            kind=dev.kind,
                            district=district.id,
                            building=building.id,
                            gateway=gateway.id,
                            commissioned_ms=int(dev.commissioned.timestamp() * 1000),
                            max_power_w=dev.max_power_w,
                            register_rollover_kwh=dev.register_rollover_kwh,
                            submeter_of=dev.submeter_of,
                        )

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, source: str = "<table>") -> Self:
        """From a parsed TOML document (or the same structure built in code, e.g. `dataclasses.asdict`)."""
        try:
            model = load(RegistryFile, table)
        except TableError as exc:
            raise RegistryError(f"{source}: {exc}") from exc
        try:
            return cls(model)
        except RegistryError as exc:
            raise RegistryError(f"{source}: {exc}") from None

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<string>") -> Self:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RegistryError(f"{source}: not valid TOML: {exc}") from exc
        return cls.from_table(raw, source=source)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RegistryError(f"cannot read registry {path}: {exc.strerror}") from exc
        return cls.from_toml(text, source=str(path))

    def building_of(self, device_id: str) -> BuildingEntry:
        return self.buildings[self.devices[device_id].building][1]

    def devices_of_gateway(self, gateway_id: str) -> list[Device]:
        return [d for d in self.devices.values() if d.gateway == gateway_id]

    def __iter__(self) -> Iterator[Device]:
        return iter(self.devices.values())

    def __len__(self) -> int:
        return len(self.devices)


def demo_registry_path() -> Path:
    """The example registry of the demo district that ships with the package."""
    return Path(__file__).parent / "registries" / "demo.toml"

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
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from devices.kinds import DeviceKind
from devices.problems import describe
from devices.registry_index import RegistryError as RegistryError  # pydantic-free, re-exported
from devices.topics import check_id, readings_topic

Id = Annotated[str, AfterValidator(check_id)]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceEntry(_Model):
    id: Id
    kind: DeviceKind
    name: str = ""
    commissioned: datetime = Field(default=_EPOCH, description="no reading may be older than this")
    max_power_w: float | None = Field(default=None, gt=0, description="plausibility limit for registers")
    register_rollover_kwh: float | None = Field(default=None, gt=0, description="register width, if it wraps")
    submeter_of: Id | None = Field(default=None, description="the meter this one is a sub-meter of")

    @field_validator("commissioned")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("commissioned needs a UTC offset, e.g. 2024-01-01T00:00:00Z")
        return value


class GatewayEntry(_Model):
    id: Id
    name: str = ""
    device: list[DeviceEntry] = Field(default_factory=list)


class BuildingEntry(_Model):
    """A building. `retrofit` is the local date an energy-savings measure took effect: `districtpulse aggregate`
    then reports metered savings (CalTRACK 2.0 daily, IPMVP option C) with the 365 days before it as the
    baseline (CalTRACK's rule) and the reporting period from it to the last complete local day."""

    id: Id
    name: str = ""
    use: str = "residential"
    floor_area_m2: float = Field(gt=0)
    retrofit: date | None = Field(default=None, description="local date the savings measure took effect")
    gateway: list[GatewayEntry] = Field(default_factory=list)

    @field_validator("retrofit", mode="before")
    @classmethod
    def _plain_date(cls, value: object) -> object:
        if isinstance(value, datetime):  # a TOML datetime would silently become its date in another zone
            raise ValueError("retrofit is a local date (YYYY-MM-DD), not a date-time")
        return value


class DistrictEntry(_Model):
    id: Id
    name: str = ""
    timezone: str = "UTC"
    grid_zone: str = Field(default="EU27", description="electricity emission-factor zone (aggregation.co2)")
    heat_zone: str | None = Field(default=None, description="district-heating network of the heat factor")
    building: list[BuildingEntry] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value


class RegistryFile(_Model):
    district: list[DistrictEntry] = Field(min_length=1)


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
        self.model = model
        self.devices: dict[str, Device] = {}
        self.gateways: dict[str, tuple[DistrictEntry, BuildingEntry, GatewayEntry]] = {}
        self.buildings: dict[str, tuple[DistrictEntry, BuildingEntry]] = {}
        self.districts: dict[str, DistrictEntry] = {}
        for district in model.district:
            self._unique(self.districts, district.id, "district")
            self.districts[district.id] = district
            for building in district.building:
                self._unique(self.buildings, building.id, "building")
                self.buildings[building.id] = (district, building)
                for gateway in building.gateway:
                    self._unique(self.gateways, gateway.id, "gateway")
                    self.gateways[gateway.id] = (district, building, gateway)
                    for dev in gateway.device:
                        self._unique(self.devices, dev.id, "device")
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
        for device in self.devices.values():
            parent = self.devices.get(device.submeter_of) if device.submeter_of else None
            if device.submeter_of and (parent is None or parent.kind != device.kind):
                raise RegistryError(
                    f"device {device.id!r}: submeter_of {device.submeter_of!r} is not a {device.kind} in the registry"
                )

    @staticmethod
    def _unique(seen: Mapping[str, object], key: str, what: str) -> None:
        if key in seen:
            raise RegistryError(f"duplicate {what} id {key!r}")

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<string>") -> Self:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RegistryError(f"{source}: not valid TOML: {exc}") from exc
        try:
            return cls(RegistryFile.model_validate(raw))
        except ValidationError as exc:
            problems = describe(exc)
            raise RegistryError(f"{source}: {problems}") from exc

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

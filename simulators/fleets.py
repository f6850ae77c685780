"""Named fleets to simulate at scale, built as registries (and writable as TOML for an ingest to load).

`scalable-cities`: the Scalable Cities demonstration district: 17,500 household smart meters in 700
buildings (25 apartments each; 600 residential, 70 commercial, 30 schools), 500 EV charging points, a heat
meter and building sensors in every building and one weather station, one gateway per building.
Cadences are those of such deployments: smart meters read every 15 min and sent hourly (as a head-end
forwards AMI data), chargers every minute sent every 5 min, sensors every 5 min sent every 15 min.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from devices import DeviceKind, Registry
from simulators.config import Cadence

COMMISSIONED = datetime(2024, 1, 1, tzinfo=UTC)

SCALABLE_CITIES_CADENCES: dict[DeviceKind, Cadence] = {
    DeviceKind.ELECTRICITY_METER: Cadence(900, 3600),
    DeviceKind.HEAT_METER: Cadence(900, 3600),
    DeviceKind.EV_CHARGER: Cadence(60, 300),
    DeviceKind.BUILDING_SENSOR: Cadence(300, 900),
    DeviceKind.WEATHER_STATION: Cadence(60, 600),
    DeviceKind.PV_INVERTER: Cadence(300, 900),
}


def _device(device_id: str, kind: DeviceKind, **extra: Any) -> dict[str, Any]:
    return {"id": device_id, "kind": kind.value, "commissioned": COMMISSIONED, **extra}


def scalable_cities(
    district: str = "sc", *, buildings: int = 700, apartments: int = 25, chargers: int = 500
) -> Registry:
    """The fleet as a registry (ids `<district>-b0001-m01` ...); smaller variants for tests by keyword."""
    uses = ["residential"] * (buildings * 6 // 7) + ["commercial"] * (buildings // 10)
    uses += ["education"] * (buildings - len(uses))
    building_docs = []
    per_building = [chargers // buildings + (1 if i < chargers % buildings else 0) for i in range(buildings)]
    for i, use in enumerate(uses, 1):
        b = f"{district}-b{i:04d}"
        devices = [
            _device(f"{b}-m{j:02d}", DeviceKind.ELECTRICITY_METER, max_power_w=35_000) for j in range(1, apartments + 1)
        ]
        devices.append(_device(f"{b}-hm", DeviceKind.HEAT_METER, max_power_w=400_000))
        devices.append(_device(f"{b}-bs", DeviceKind.BUILDING_SENSOR))
        devices += [
            _device(f"{b}-ev{k}", DeviceKind.EV_CHARGER, max_power_w=22_000) for k in range(1, per_building[i - 1] + 1)
        ]
        if i == 1:
            devices.append(_device(f"{district}-ws", DeviceKind.WEATHER_STATION))
        building_docs.append(
            {"id": b, "use": use, "floor_area_m2": 70.0 * apartments, "gateway": [{"id": f"{b}-gw", "device": devices}]}
        )
    doc = {
        "district": [
            {"id": district, "name": "Scalable Cities", "timezone": "Europe/Helsinki", "building": building_docs}
        ]
    }

    return Registry.from_table(doc)


FLEETS: dict[str, Callable[[str], Registry]] = {"scalable-cities": scalable_cities}
FLEET_CADENCES: dict[str, dict[DeviceKind, Cadence]] = {"scalable-cities": SCALABLE_CITIES_CADENCES}


def registry_toml(registry: Registry) -> str:
    """The registry as TOML (the format `Registry.load` reads), so an ingest can validate a fleet's data."""
    lines: list[str] = []
    for d in registry.model.district:
        lines += ["[[district]]", f'id = "{d.id}"', f'timezone = "{d.timezone}"']
        for b in d.building:
            lines += [
                "  [[district.building]]",
                f'  id = "{b.id}"',
                f'  use = "{b.use}"',
                f"  floor_area_m2 = {b.floor_area_m2}",
            ]
            for g in b.gateway:
                lines += ["    [[district.building.gateway]]", f'    id = "{g.id}"']
                for dev in g.device:
                    lines += [
                        "      [[district.building.gateway.device]]",
                        f'      id = "{dev.id}"',
                        f'      kind = "{dev.kind.value}"',
                    ]
                    lines.append(f"      commissioned = {dev.commissioned.isoformat().replace('+00:00', 'Z')}")
                    if dev.max_power_w is not None:
                        lines.append(f"      max_power_w = {dev.max_power_w}")
                    if dev.register_rollover_kwh is not None:
                        lines.append(f"      register_rollover_kwh = {dev.register_rollover_kwh}")
                    if dev.submeter_of is not None:
                        lines.append(f'      submeter_of = "{dev.submeter_of}"')
    return "\n".join(lines) + "\n"

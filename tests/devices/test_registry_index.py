"""`devices.registry.gateway_devices` (what a gateway reads of the registry) gives a gateway exactly what the
full Registry gives, and refuses the same files, on every registry of the repository; the registry imports no
pydantic (a Pi gateway's memory budget)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devices.kinds import DeviceKind
from devices.registry import Registry, RegistryError, demo_registry_path, gateway_devices
from simulators.fleets import registry_toml, scalable_cities
from tests.support import registries

ROOT = Path(__file__).resolve().parents[2]


def _registry_files(tmp_path: Path) -> list[Path]:
    """Every registry in the repository: the demo's, any TOML file with districts under simulators/, tests/
    (tests/data) and deploy/, and the registries the tests and the fleets write."""
    files = [demo_registry_path()]
    for folder in ("simulators", "tests", "deploy"):
        files += [p for p in sorted((ROOT / folder).rglob("*.toml")) if "[[district]]" in p.read_text()]
    written = {
        "small.toml": registries.small_registry_toml("dx"),
        "fleet.toml": registries.text("fleet", "fx"),
        "scalable_cities.toml": registry_toml(scalable_cities("sc", buildings=8, apartments=3, chargers=5)),
    }
    for name, text in written.items():
        (tmp_path / name).write_text(text)
        files.append(tmp_path / name)
    return files


def test_every_gateway_of_every_registry_gets_what_the_full_registry_gives(tmp_path: Path) -> None:
    compared = 0
    for path in _registry_files(tmp_path):
        full = Registry.load(path)
        assert full.gateways, path
        for gateway_id, (district, _, _) in full.gateways.items():
            expected = tuple((d.id, d.kind) for d in full.devices_of_gateway(gateway_id))
            assert gateway_devices(path, gateway_id) == (district.id, expected), (path, gateway_id)
            compared += 1
    # demo: 3 gateways; tests/data: dashboard 2, fleet 2, replay_uk 1, small 2; the small registry and the fleet
    # renamed as the tests write them: 2 + 2; scalable cities: one per building (8)
    assert compared == 22
    assert gateway_devices(demo_registry_path(), "gw-b1")[1][0] == ("b1-em-main", DeviceKind.ELECTRICITY_METER)


DEVICE = '      [[district.building.gateway.device]]\n      id = "{id}"\n      kind = "{kind}"\n'
HEAD = (
    '[[district]]\nid = "d"\n{district}  [[district.building]]\n  id = "b"\n  floor_area_m2 = 100\n{building}'
    '    [[district.building.gateway]]\n    id = "g"\n'
)


def _text(devices: str = "", *, district: str = "", building: str = "") -> str:
    return HEAD.format(district=district, building=building) + devices


GOOD = _text(DEVICE.format(id="m1", kind="electricity_meter"))
BROKEN = {
    "not_toml": "[[district]\n",
    "no_district": "",
    "duplicate_device": _text(DEVICE.format(id="m1", kind="heat_meter") * 2),
    "duplicate_gateway": GOOD + '    [[district.building.gateway]]\n    id = "g"\n',
    "duplicate_building": GOOD + '  [[district.building]]\n  id = "b"\n  floor_area_m2 = 1\n',
    "duplicate_district": GOOD + '[[district]]\nid = "d"\n',
    "device_id_with_space": _text(DEVICE.format(id="m 1", kind="heat_meter")),
    "unknown_kind": _text(DEVICE.format(id="m1", kind="toaster")),
    "typo_in_a_key": _text(DEVICE.format(id="m1", kind="heat_meter") + "      max_powr_w = 1\n"),
    "zero_power": _text(DEVICE.format(id="m1", kind="heat_meter") + "      max_power_w = 0\n"),
    "naive_commissioned": _text(
        DEVICE.format(id="m1", kind="heat_meter") + "      commissioned = 2024-01-01T00:00:00\n"
    ),
    "submeter_of_another_kind": _text(
        DEVICE.format(id="m1", kind="heat_meter")
        + DEVICE.format(id="m2", kind="electricity_meter")
        + '      submeter_of = "m1"\n'
    ),
    "submeter_of_nothing": _text(DEVICE.format(id="m2", kind="heat_meter") + '      submeter_of = "m9"\n'),
    "unknown_time_zone": _text(district='timezone = "Mars/Olympus"\n'),
    "retrofit_date_time": _text(building="  retrofit = 2025-10-01T00:00:00Z\n"),
    "no_floor_area": _text().replace("  floor_area_m2 = 100\n", ""),
    "name_not_a_string": _text(district="name = 3\n"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_both_readers_refuse_the_same_broken_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(BROKEN[name])
    with pytest.raises(RegistryError):
        Registry.load(path)
    with pytest.raises(RegistryError, match=str(path)) as light:
        gateway_devices(path, "g")
    assert str(light.value)


def test_the_good_base_file_is_accepted_by_both(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(GOOD)
    assert [d.id for d in Registry.load(path)] == ["m1"]
    assert gateway_devices(path, "g") == ("d", (("m1", DeviceKind.ELECTRICITY_METER),))


def test_exact_messages_for_what_a_gateway_operator_sees(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(BROKEN["duplicate_device"])
    with pytest.raises(RegistryError) as info:
        gateway_devices(path, "g")
    assert str(info.value) == f"{path}: duplicate device id 'm1'"
    path.write_text(BROKEN["unknown_kind"] + "      rating = 3\n")
    with pytest.raises(RegistryError) as info:
        gateway_devices(path, "g")
    assert str(info.value) == (
        f"{path}: district.0.building.0.gateway.0.device.0.kind: must be one of 'electricity_meter', 'heat_meter', "
        "'ev_charger', 'building_sensor', 'pv_inverter', 'weather_station'; "
        "district.0.building.0.gateway.0.device.0.rating: unknown key (allowed: id, kind, name, commissioned, "
        "max_power_w, register_rollover_kwh, submeter_of)"
    )
    path.write_text(GOOD)
    with pytest.raises(RegistryError) as info:
        gateway_devices(path, "gw-x")
    assert str(info.value) == f"gateway 'gw-x' is not in the registry {path}"
    with pytest.raises(RegistryError) as info:
        gateway_devices(tmp_path / "missing.toml", "g")
    assert str(info.value) == f"cannot read registry {tmp_path / 'missing.toml'}: No such file or directory"


def test_registry_error_is_one_class_importable_without_pydantic() -> None:
    import devices

    assert RegistryError is devices.RegistryError
    code = "import sys, devices.registry\nprint(sorted(m for m in sys.modules if m.startswith('pydantic')))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"

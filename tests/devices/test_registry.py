from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from devices import DeviceKind, Registry, RegistryError, demo_registry_path


def test_the_demo_registry_has_three_buildings_and_forty_devices_of_every_kind() -> None:
    registry = Registry.load(demo_registry_path())
    assert len(registry.buildings) == 3
    assert len(registry) == 40
    assert set(Counter(d.kind for d in registry)) == set(DeviceKind)
    main = registry.devices["b1-em-main"]
    assert (main.district, main.building, main.gateway) == ("demo", "b1", "gw-b1")
    assert registry.devices["b1-em-sub1"].submeter_of == "b1-em-main"
    assert main.topic == "dp/v1/demo/gw-b1/b1-em-main/electricity_meter"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace('id = "x-hm"', 'id = "x-em"'), "duplicate device id 'x-em'"),
        (lambda t: t.replace('"Europe/Helsinki"', '"Mars/Olympus"'), "unknown IANA time zone"),
        (
            lambda t: t.replace('kind = "heat_meter"', 'kind = "toaster"'),
            "district.0.building.0.gateway.1.device.0.kind",
        ),
        (lambda t: t.replace('id = "x-bs"', 'id = "x bs"'), "invalid id 'x bs'"),
        (lambda t: t.replace("floor_area_m2 = 1000", "floor_area_m2 = 0"), "floor_area_m2"),
        (lambda t: t.replace("2025-06-01T00:00:00Z", "2025-06-01T00:00:00"), "commissioned needs a UTC offset"),
        (lambda t: t + "\n[oops", "not valid TOML"),
        (
            lambda t: t.replace("max_power_w = 100000", 'max_power_w = 100000\n      submeter_of = "x-hm"'),
            "submeter_of 'x-hm' is not a electricity_meter",
        ),
    ],
)
def test_registry_errors_say_what_is_wrong(change: object, message: str, registry_text: Callable[[str], str]) -> None:
    text = change(registry_text("x"))  # type: ignore[operator]
    with pytest.raises(RegistryError, match=message.replace("(", r"\(").replace(".", r"\.")):
        Registry.from_toml(text)

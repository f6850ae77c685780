"""A building's optional `retrofit` date: what `districtpulse aggregate` computes savings from."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest

from devices import Registry, RegistryError, demo_registry_path

AREA = "floor_area_m2 = 1000"


def test_retrofit_is_an_optional_local_date(registry_text: Callable[[str], str]) -> None:
    plain = Registry.from_toml(registry_text("x"))
    assert plain.buildings["x-b1"][1].retrofit is None
    dated = Registry.from_toml(registry_text("x").replace(AREA, f"{AREA}\n  retrofit = 2025-03-01"))
    assert dated.buildings["x-b1"][1].retrofit == date(2025, 3, 1)


def test_the_demo_buildings_have_no_retrofit() -> None:
    assert [b.retrofit for _, b in Registry.load(demo_registry_path()).buildings.values()] == [None, None, None]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2025-03-01T00:00:00Z", "retrofit: expected a local date"),
        ('"March"', "retrofit"),
        ("2025-02-30", "not valid TOML"),
    ],
)
def test_a_retrofit_that_is_not_a_date_is_refused(
    value: str, message: str, registry_text: Callable[[str], str]
) -> None:
    with pytest.raises(RegistryError, match=message):
        Registry.from_toml(registry_text("x").replace(AREA, f"{AREA}\n  retrofit = {value}"))

"""Registry load time: the one registry model (frozen dataclasses read by `devices.tables`) on a mission-size file.

Claim (devices/registry.py): validating a registry of 17,600 devices costs less than parsing its TOML, so one
pydantic-free model for every component (the gateway's memory budget) costs start-up time of the same order
as reading the file at all. Baseline measured in the same run: `tomllib.loads` of the same text. Reported:
`validate_s`, `parse_s`, their ratio, and the whole `Registry.from_toml` (parse, validate, cross-entry rules
and the lookup tables). Medians of `--repeat` runs; about 10 s here.

    PYTHONPATH=. python benchmarks/registry_load.py [--devices 17600] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tomllib

from devices.registry import Registry, RegistryFile
from devices.tables import load


def registry_text(devices: int) -> str:
    per_gateway, gateways_per_building, buildings_per_district = 44, 2, 50
    per_district = per_gateway * gateways_per_building * buildings_per_district
    lines = []
    for d in range(max(1, -(-devices // per_district))):
        lines.append(f'[[district]]\nid = "d{d}"\ntimezone = "Europe/Helsinki"\n')
        for b in range(buildings_per_district):
            lines.append(f'  [[district.building]]\n  id = "d{d}-b{b}"\n  floor_area_m2 = 1000\n')
            for g in range(gateways_per_building):
                lines.append(f'    [[district.building.gateway]]\n    id = "d{d}-b{b}-g{g}"\n')
                lines.extend(
                    f'      [[district.building.gateway.device]]\n      id = "d{d}-b{b}-g{g}-m{m}"\n'
                    '      kind = "electricity_meter"\n      max_power_w = 100000\n'
                    "      commissioned = 2024-01-01T00:00:00Z\n"
                    for m in range(per_gateway)
                )
    return "".join(lines)


def median_s(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--devices", type=int, default=17_600)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    text = registry_text(args.devices)
    raw = tomllib.loads(text)
    parse_s = median_s(lambda: tomllib.loads(text), args.repeat)
    validate_s = median_s(lambda: load(RegistryFile, raw), args.repeat)
    whole_s = median_s(lambda: Registry.from_toml(text), args.repeat)
    devices = len(Registry.from_toml(text))
    print(
        json.dumps(
            {
                "devices": devices,
                "parse_s": round(parse_s, 3),
                "validate_s": round(validate_s, 3),
                "validate_vs_parse": round(validate_s / parse_s, 2),
                "from_toml_s": round(whole_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()

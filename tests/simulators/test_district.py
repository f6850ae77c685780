from __future__ import annotations

import hashlib
import itertools
import json
from datetime import date

from devices import Registry, demo_registry_path, validate_message
from simulators import DistrictSimulator

NOW = 1_900_000_000_000


def digest(sim: DistrictSimulator) -> str:
    h = hashlib.sha256()
    for msg in sim.messages():
        h.update(msg.topic.encode() + b"\0" + msg.payload + b"\0")
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    registry = Registry.load(demo_registry_path())
    day = date(2026, 11, 20)
    assert digest(DistrictSimulator(registry, day, seed=7)) == digest(DistrictSimulator(registry, day, seed=7))
    assert digest(DistrictSimulator(registry, day, seed=7)) != digest(DistrictSimulator(registry, day, seed=8))


def test_a_day_is_one_reading_a_minute_per_device_and_only_the_injected_faults_fail_validation() -> None:
    registry = Registry.load(demo_registry_path())
    sim = DistrictSimulator(registry, date(2026, 11, 20), seed=1, inject_bad_readings=6)
    good = bad = 0
    for msg in sim.messages():
        result = validate_message(msg.topic, msg.payload, registry, now_ms=NOW)
        good += len(result.good)
        bad += result.rejected_readings
    assert sim.truth.readings == 40 * 1440 == good + bad
    assert bad == sim.truth.bad_readings == 6 == len(sim.truth.faults)


def test_dst_day_has_25_hours_of_readings() -> None:
    registry = Registry.load(demo_registry_path())
    sim = DistrictSimulator(registry, date(2026, 10, 25), seed=1, inject_bad_readings=0)  # EEST -> EET
    assert sum(m.readings for m in sim.messages()) == 40 * 25 * 60


def test_registers_only_grow_and_the_truth_is_their_increase() -> None:
    registry = Registry.load(demo_registry_path())
    sim = DistrictSimulator(registry, date(2026, 11, 20), seed=3, inject_bad_readings=0)
    series: dict[str, list[float]] = {}
    for msg in sim.messages():
        if msg.topic.endswith("/electricity_meter"):
            doc = json.loads(msg.payload)
            series.setdefault(msg.device, []).extend(r["values"]["energy_import"] for r in doc["readings"])
    for device, values in series.items():
        assert all(b >= a for a, b in itertools.pairwise(values)), device
        # The truth is the whole day's energy; the last reading is at 23:59, a minute before midnight.
        assert 0 <= sim.truth.energy_import_kwh[device] - (values[-1] - values[0]) < 1.0
    main = sum(sim.truth.energy_import_kwh[d] for d in series if d.endswith("-em-main"))
    # 5,200 m2 x 35 + 3,800 m2 x 50 + 6,100 m2 x 90 kWh/m2a over 365 days is ~2,520 kWh, plus EV charging.
    assert 2000 < main < 4500

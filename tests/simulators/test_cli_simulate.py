"""`districtpulse simulate`: seeds, days, faults, truth, byte-identical dry runs, and the scalable-cities fleet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from devices import DeviceKind, Registry
from simulators import SimConfig, load_truth
from simulators.cli import heartbeat_s
from simulators.fleets import SCALABLE_CITIES_CADENCES, registry_toml, scalable_cities
from tests.support.simulation import WINTER, run

ROOT = Path(__file__).resolve().parents[2]


def simulate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "districtpulse", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )


def test_same_seed_and_faults_give_a_byte_identical_file_and_a_matching_truth(tmp_path: Path) -> None:
    outs = []
    for name in ("a", "b"):
        proc = simulate(
            *("--day", "2026-03-02", "--days", "2", "--seed", "3", "--resolution", "300", "--publish-interval", "900"),
            *("--faults", "late,duplicate,nan=4,malformed", "--dry-run", "--out", str(tmp_path / f"{name}.jsonl")),
            *("--truth", str(tmp_path / f"{name}.json"), "--progress"),
        )
        assert proc.returncode == 0, proc.stderr
        outs.append((tmp_path / f"{name}.jsonl").read_bytes())
    assert outs[0] == outs[1]
    truth = load_truth(tmp_path / "a.json")
    lines = outs[0].splitlines()
    duplicates = sum(f["fault"] == "duplicate" for f in truth["faults"])
    assert duplicates == 2 * 6  # the default rate: 6 a day
    assert len(lines) == truth["totals"]["messages_published"] == truth["messages"] + duplicates == 40 * 96 * 2 + 12
    assert truth["days"] == 2 and truth["start"] == "2026-03-02"
    kinds = {f["fault"] for f in truth["faults"]}
    assert kinds == {"late", "duplicate", "nan", "malformed"}
    assert sum(f["fault"] == "nan" for f in truth["faults"]) == 4
    readings = sum(len(json.loads(json.loads(line)["payload"])["readings"]) for line in lines[:10])
    assert readings > 0
    other = simulate("--day", "2026-03-02", "--seed", "4", "--dry-run", "--out", str(tmp_path / "c.jsonl"))
    assert other.returncode == 0
    assert (tmp_path / "c.jsonl").read_bytes() != outs[0]


def test_bad_arguments_are_refused_with_a_reason(tmp_path: Path) -> None:
    proc = simulate("--faults", "gremlins", "--dry-run", "--out", str(tmp_path / "x.jsonl"))
    assert proc.returncode == 2 and "unknown fault 'gremlins'" in proc.stderr
    proc = simulate("--resolution", "7", "--dry-run", "--out", str(tmp_path / "x.jsonl"))
    assert proc.returncode == 2 and "publish interval" in proc.stderr
    proc = simulate("--dry-run")
    assert proc.returncode == 2 and "--out" in proc.stderr


def test_the_scalable_cities_fleet_has_its_devices_and_cadences() -> None:
    fleet = scalable_cities()
    kinds: dict[str, int] = {}
    for device in fleet:
        kinds[device.kind.value] = kinds.get(device.kind.value, 0) + 1
    assert kinds == {
        "electricity_meter": 17_500,
        "ev_charger": 500,
        "heat_meter": 700,
        "building_sensor": 700,
        "weather_station": 1,
    }
    assert len(fleet.gateways) == 700
    again = Registry.from_toml(registry_toml(fleet))
    assert [(d.id, d.kind, d.gateway) for d in again] == [(d.id, d.kind, d.gateway) for d in fleet]


def test_a_small_fleet_follows_the_deployment_cadences() -> None:
    fleet = scalable_cities("tiny", buildings=4, apartments=3, chargers=2)
    sim, got = run(fleet, SimConfig(start=WINTER, cadences=SCALABLE_CITIES_CADENCES, stagger=True))
    per_device: dict[str, int] = {}
    for m in got.messages:
        per_device[m.device] = per_device.get(m.device, 0) + 1
    meters = [d for d in fleet if d.kind is DeviceKind.ELECTRICITY_METER]
    assert {per_device[d.id] for d in meters} == {24}  # hourly batches of 4 quarter-hour readings
    assert {per_device[d.id] for d in fleet if d.kind is DeviceKind.EV_CHARGER} == {288}  # every 5 min
    assert sim.truth.readings == 12 * 96 + 4 * 96 + 4 * 288 + 2 * 1440 + 1440
    # Staggered: a meter's batches do not all leave at the top of the hour.
    offsets = {m.deliver_ms % 3_600_000 for m in got.messages if m.device.endswith("-m01")}
    assert len(offsets) > 1


def test_a_paced_run_beats_every_60_wall_clock_seconds_and_a_fast_one_once_per_interval() -> None:
    # (speed, publish interval) -> simulated seconds between heartbeats
    assert heartbeat_s(1.0, 900) == 60
    assert heartbeat_s(0.5, 900) == 30
    assert heartbeat_s(4.0, 900) == 240  # still 60 s of wall clock: the dashboard keeps it online
    assert heartbeat_s(3600.0, 900) == 900  # an hour a second: once per interval
    assert heartbeat_s(0.0, 900) is None  # flat out: the SimConfig default, once per interval
    assert heartbeat_s(0.001, 900) == 1

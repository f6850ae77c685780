"""Adapters: every folder follows the convention, every test case gives its expected readings, and the
simulated devices stay within the physical ranges of their kinds."""

from __future__ import annotations

import itertools
import json
import threading
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.kinds import KINDS, DeviceKind
from gateway.adapters import ADAPTERS, AdapterContext, DeviceRef, build_adapter, parse_adapter_config
from gateway.adapters.replay import ReplayAdapter
from gateway.adapters.simulated import values_fn
from gateway.errors import ConfigError
from tests.support.adapter_sink import T0, CollectingSink, read_expected

ADAPTERS_DIR = Path(__file__).resolve().parents[2] / "gateway" / "adapters"
FOLDERS = sorted(p.parent.name for p in ADAPTERS_DIR.glob("*/__init__.py"))
CASES = sorted(ADAPTERS_DIR.glob("*/testcases/*"))


def test_every_adapter_folder_has_its_kit_and_is_registered() -> None:
    assert sorted(ADAPTERS) == FOLDERS
    for name in FOLDERS:
        folder = ADAPTERS_DIR / name
        assert (folder / "README.md").is_file(), name
        assert any((folder / "testcases").iterdir()), name
        sample = tomllib.loads((folder / "sample.toml").read_text())
        assert [parse_adapter_config(table).type for table in sample["adapter"]] == [name]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parents[1].name}/{c.name}" for c in CASES])
def test_case(case: Path) -> None:
    config = parse_adapter_config(tomllib.loads((case / "adapter.toml").read_text()))
    assert config.type == case.parents[1].name
    adapter = build_adapter(config, AdapterContext("gw-test", "test", (), case))
    sink = CollectingSink()
    adapter.run(sink, threading.Event())
    expected = read_expected(case / "expected.jsonl")
    assert sink.readings == expected
    # Every device read is declared, as a kind whose metrics its readings have: the expectation comes from the
    # case's readings and the kinds' table (devices.kinds), not from what the adapter says of itself.
    declared = {d.id: d.kind for d in adapter.devices()}
    assert {r["device"] for r in expected} <= declared.keys()
    for r in expected:
        fitting = {kind for kind, spec in KINDS.items() if set(r["values"]) <= set(spec.metrics)}
        assert declared[r["device"]] in fitting, (r["device"], declared[r["device"]], sorted(r["values"]), fitting)


def test_replay_resumes_after_its_cursor_and_skips_a_bad_line(tmp_path: Path) -> None:
    case = ADAPTERS_DIR / "replay" / "testcases" / "with_a_bad_line"
    config = parse_adapter_config({"type": "replay", "file": "input.jsonl"})
    adapter = build_adapter(config, AdapterContext("gw-test", "test", (), case))
    assert isinstance(adapter, ReplayAdapter)
    assert [(d.id, d.kind.value) for d in adapter.devices()] == [
        ("b1-em-main", "electricity_meter"),
        ("b1-ev-01", "ev_charger"),
    ]
    full = CollectingSink()
    adapter.run(full, threading.Event())
    assert full.cursor_value == "3"
    assert adapter.skipped == 1
    resumed = CollectingSink(cursor="1")  # line 1 was committed before a crash
    adapter.run(resumed, threading.Event())
    assert resumed.readings == full.readings[2:]  # line 1 held two readings; line 2 is the bad one


def test_replay_refuses_a_missing_file(tmp_path: Path) -> None:
    config = parse_adapter_config({"type": "replay", "file": "nope.jsonl"})
    with pytest.raises(ConfigError, match="no such file"):
        build_adapter(config, AdapterContext("gw", "d", (), tmp_path))


def test_simulated_devices_come_from_the_registry_or_are_synthetic(tmp_path: Path) -> None:
    registry = (DeviceRef("m1", DeviceKind.ELECTRICITY_METER), DeviceRef("s1", DeviceKind.BUILDING_SENSOR))
    ctx = AdapterContext("gw", "d", registry, tmp_path)
    assert list(build_adapter(parse_adapter_config({"type": "simulated"}), ctx).devices()) == list(registry)
    subset = build_adapter(parse_adapter_config({"type": "simulated", "devices": ["s1"]}), ctx)
    assert list(subset.devices()) == [registry[1]]
    synthetic = build_adapter(parse_adapter_config({"type": "simulated", "count": 3, "kinds": ["pv_inverter"]}), ctx)
    assert [(d.id, d.kind) for d in synthetic.devices()] == [
        (f"gw-sim-000{i}", DeviceKind.PV_INVERTER) for i in range(3)
    ]
    with pytest.raises(ConfigError, match="not assigned to gateway gw: x9"):
        build_adapter(parse_adapter_config({"type": "simulated", "devices": ["x9"]}), ctx)
    with pytest.raises(ConfigError, match="either devices or count"):
        parse_adapter_config({"type": "simulated", "devices": ["s1"], "count": 2})
    with pytest.raises(ConfigError, match="unknown adapter type 'nosuch'"):
        parse_adapter_config({"type": "nosuch"})


def test_a_staggered_simulation_reads_each_device_once_per_tick_a_slice_at_a_time(tmp_path: Path) -> None:
    config = {"type": "simulated", "count": 250, "kinds": ["electricity_meter"], "interval_s": 0.05, "ticks": 3}
    ctx = AdapterContext("gw", "d", (), tmp_path)
    sink = CollectingSink()
    build_adapter(parse_adapter_config({**config, "stagger": True}), ctx).run(sink, threading.Event())
    # 100 slices a tick (250 devices: 50 slices of 3, 50 of 2), each stamped with its own clock reading
    assert len(sink.readings) == 750
    per_tick = [sink.readings[i * 250 : (i + 1) * 250] for i in range(3)]
    assert all([r["device"] for r in tick] == [f"gw-sim-{d:04d}" for d in range(250)] for tick in per_tick)
    stamps = sorted({r["ts"] for r in sink.readings})
    assert stamps == [T0 + 1000 * k for k in range(300)]
    first = per_tick[0]
    assert [sum(1 for r in first if r["ts"] == T0 + 1000 * k) for k in (0, 49, 50, 99)] == [3, 3, 2, 2]

    plain = CollectingSink()
    build_adapter(parse_adapter_config(config), ctx).run(plain, threading.Event())
    assert len(plain.readings) == 750 and sorted({r["ts"] for r in plain.readings}) == [T0, T0 + 1000, T0 + 2000]


@given(
    kind=st.sampled_from(list(DeviceKind)),
    seed=st.integers(0, 1000),
    t=st.integers(T0 - 10**10, T0 + 10**10),
    dt=st.integers(1, 10**9),
)
def test_simulated_values_are_in_range_with_units_and_registers_never_decrease(
    kind: DeviceKind, seed: int, t: int, dt: int
) -> None:
    fn = values_fn(DeviceRef("dev-1", kind), seed)
    spec = KINDS[kind]
    now, later = fn(t), fn(t + dt)
    assert set(now) == set(spec.metrics)
    for name, value in now.items():
        metric = spec.metrics[name]
        if metric.type == "str":
            assert isinstance(value, str)
            assert metric.choices is None or value in metric.choices
        else:
            assert isinstance(value, float)
            assert metric.min <= value <= metric.max, (name, value)
    for name in spec.cumulative_metrics:
        if name != "session_energy":  # restarts at 0 per session
            assert later[name] >= now[name]
    json.dumps(now, allow_nan=False)  # never NaN


def test_a_simulated_charger_starts_and_stops_one_session_per_period() -> None:
    fn = values_fn(DeviceRef("ev-1", DeviceKind.EV_CHARGER), 0)
    period = 4 * 3_600_000
    start = (T0 // period + 1) * period
    states = [fn(start + k * 60_000) for k in range(0, 241)]  # every minute for 4 hours
    k = start // period
    assert states[0]["session_id"] == f"ev-1-{k}"  # a session starts with the period
    assert states[-1]["session_id"] == f"ev-1-{k + 1}"  # and the next with the next one
    changes = [i for i, (a, b) in enumerate(itertools.pairwise(states), 1) if a["session_id"] != b["session_id"]]
    duration_min = 60 + (k % 4) * 30
    assert changes == [duration_min, 240]  # the stop after 1 to 2.5 hours, then the next start

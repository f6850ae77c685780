"""The OCPP adapter's state machine (no sockets): units, sessions, odd chargers, config, and how the spool
classes its readings. The websocket server is tested on loopback in tests/integration."""

from __future__ import annotations

import json
import sqlite3
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest

from devices.kinds import KINDS, DeviceKind
from gateway.adapters import AdapterContext, DeviceRef, build_adapter, parse_adapter_config
from gateway.adapters.base import Values
from gateway.adapters.ocpp import OcppAdapter
from gateway.adapters.ocpp.central import (
    TX_EPOCH_S,
    CentralSystem,
    camel_to_snake,
    sampled_energy_wh,
    sampled_power_w,
)
from gateway.errors import ConfigError
from gateway.spool import ReadingClass, Spool
from tests.support.adapter_sink import CollectingSink, read_expected

CASE = Path(__file__).resolve().parents[2] / "gateway" / "adapters" / "ocpp" / "testcases" / "full_session"
T0 = 1_790_000_000_000
CP = {"CP-1": {1: "ev-1", 2: "ev-2"}}

Put = tuple[str, dict[str, Any], int | None]


def central(charge_points: dict[str, dict[int, str]] | None = None) -> tuple[CentralSystem, list[Put]]:
    out: list[Put] = []

    def emit(device: str, values: Values, ts: int | None) -> None:
        out.append((device, dict(values), ts))

    return CentralSystem(charge_points or CP, 60, emit), out


def energy(value: str, unit: str | None = None, **extra: str) -> dict[str, str]:
    sv = {"value": value, "measurand": "Energy.Active.Import.Register", **extra}
    return sv if unit is None else {**sv, "unit": unit}


def test_energy_register_in_wh_or_kwh_per_its_unit_attribute() -> None:
    assert sampled_energy_wh([energy("1234.5", "Wh")]) == 1234.5
    assert sampled_energy_wh([energy("1234.5")]) == 1234.5  # Wh is the default unit
    assert sampled_energy_wh([{"value": "77"}]) == 77.0  # and the register the default measurand
    assert sampled_energy_wh([energy("1.2345", "kWh")]) == 1234.5
    assert sampled_energy_wh([energy("10", "varh")]) is None  # not an energy unit
    assert sampled_energy_wh([energy("5", "Wh", phase="L1")]) is None  # a phase is not the register
    assert sampled_energy_wh([energy("abc", "Wh"), energy("9", "Wh")]) == 9.0  # unreadable: the next one
    assert sampled_energy_wh([{"value": "3", "measurand": "Power.Active.Import"}]) is None


def test_power_is_the_total_or_the_sum_of_the_phases() -> None:
    p = {"measurand": "Power.Active.Import"}
    assert sampled_power_w([{**p, "value": "7400", "unit": "W"}]) == 7400.0
    assert sampled_power_w([{**p, "value": "7.4", "unit": "kW"}]) == 7400.0
    phases = [{**p, "value": "1000", "phase": ph} for ph in ("L1", "L2", "L3")]
    assert sampled_power_w(phases) == 3000.0
    assert sampled_power_w([*phases, {**p, "value": "2900"}]) == 2900.0  # the charger's own total wins
    assert sampled_power_w([{**p, "value": "1000", "phase": "L1-N"}]) is None
    assert sampled_power_w([energy("5")]) is None


def test_camel_to_snake_matches_what_the_ocpp_package_hands_handlers() -> None:
    ocpp_routing = pytest.importorskip("ocpp.charge_point")
    payload = {"connectorId": 1, "transactionId": 7, "meterValue": [{"sampledValue": [{"value": "1"}]}]}
    assert camel_to_snake(payload) == ocpp_routing.camel_to_snake_case(payload)
    assert camel_to_snake(payload)["meter_value"][0]["sampled_value"] == [{"value": "1"}]


def test_a_session_gives_its_start_meter_values_and_stop_relative_to_meter_start() -> None:
    cs, out = central()
    now = T0
    cs.call("CP-1", "StatusNotification", now, None, {"connector_id": 1, "status": "Preparing"})
    started = cs.call("CP-1", "StartTransaction", now, None, {"connector_id": 1, "meter_start": 5000, "id_tag": "A"})
    assert started is not None
    tx = started["transaction_id"]
    assert tx == T0 // 1000 - TX_EPOCH_S
    mv = {"connector_id": 1, "transaction_id": tx}
    cs.call("CP-1", "MeterValues", now, None, {**mv, "meter_value": [{"sampled_value": [energy("5250", "Wh")]}]})
    cs.call("CP-1", "MeterValues", now, None, {**mv, "meter_value": [{"sampled_value": [energy("5.5", "kWh")]}]})
    cs.call("CP-1", "StopTransaction", now, None, {"transaction_id": tx, "meter_stop": 6000})
    sid = str(tx)
    assert out == [
        ("ev-1", {"connector_status": "Preparing", "session_id": ""}, None),
        ("ev-1", {"connector_status": "Preparing", "session_id": sid, "session_energy": 0.0}, None),
        ("ev-1", {"connector_status": "Preparing", "session_id": sid, "session_energy": 0.25}, None),
        ("ev-1", {"connector_status": "Preparing", "session_id": sid, "session_energy": 0.5}, None),
        ("ev-1", {"connector_status": "Preparing", "session_id": "", "session_energy": 1.0, "power": 0.0}, None),
    ]


def test_transaction_ids_are_unique_within_one_second_and_across_connectors() -> None:
    cs, _ = central()
    ids = [
        cs.call("CP-1", "StartTransaction", T0, None, {"connector_id": c, "meter_start": 0})["transaction_id"]  # type: ignore[index]
        for c in (1, 2, 1)
    ]
    assert ids == [ids[0], ids[0] + 1, ids[0] + 2]


def test_stored_meter_values_become_one_reading_the_last() -> None:
    cs, out = central()
    tx = cs.call("CP-1", "StartTransaction", T0, 5, {"connector_id": 2, "meter_start": 100})["transaction_id"]  # type: ignore[index]
    samples = [{"timestamp": "x", "sampled_value": [energy(str(wh))]} for wh in (200, 300, 400)]
    cs.call("CP-1", "MeterValues", T0, 6, {"connector_id": 2, "transaction_id": tx, "meter_value": samples})
    assert out[-1] == ("ev-2", {"session_id": str(tx), "session_energy": 0.3}, 6)  # no status known yet
    assert len(out) == 2


def test_what_gives_no_reading_or_no_session_energy() -> None:
    cs, out = central()
    # Connector 0 (the charge point as a whole) and an unknown connector are not devices.
    cs.call("CP-1", "StatusNotification", T0, None, {"connector_id": 0, "status": "Faulted"})
    cs.call("CP-1", "StatusNotification", T0, None, {"connector_id": 3, "status": "Faulted"})
    # Meter values outside a session: the power, never the meter's absolute register as session energy.
    sampled = [energy("900"), {"value": "50", "measurand": "Power.Active.Import"}]
    cs.call("CP-1", "MeterValues", T0, None, {"connector_id": 1, "meter_value": [{"sampled_value": sampled}]})
    # No energy or power measurand at all: nothing to say.
    cs.call("CP-1", "MeterValues", T0, None, {"connector_id": 1, "meter_value": [{"sampled_value": []}]})
    # A stop of a transaction this gateway never opened (before a restart): accepted, no reading.
    assert cs.call("CP-1", "StopTransaction", T0, None, {"transaction_id": 42, "meter_stop": 1}) == {
        "id_tag_info": {"status": "Accepted"}
    }
    # A register below meterStart (meter replaced mid-session) is not a negative session energy.
    tx = cs.call("CP-1", "StartTransaction", T0, None, {"connector_id": 1, "meter_start": 1000})["transaction_id"]  # type: ignore[index]
    cs.call("CP-1", "MeterValues", T0, None, {"connector_id": 1, "meter_value": [{"sampled_value": [energy("10")]}]})
    assert cs.call("CP-1", "DataTransfer", T0, None, {}) is None  # not supported: a CallError
    sid = str(tx)
    assert [values for _, values, _ in out] == [
        {"session_id": "", "power": 50.0},
        {"session_id": sid, "session_energy": 0.0},
    ]


def test_a_start_on_a_busy_connector_replaces_the_open_transaction() -> None:
    cs, out = central()
    first = cs.call("CP-1", "StartTransaction", T0, None, {"connector_id": 1, "meter_start": 0})["transaction_id"]  # type: ignore[index]
    second = cs.call("CP-1", "StartTransaction", T0, None, {"connector_id": 1, "meter_start": 50})["transaction_id"]  # type: ignore[index]
    cs.call("CP-1", "StopTransaction", T0, None, {"transaction_id": first, "meter_stop": 80})  # forgotten: no reading
    cs.call("CP-1", "StopTransaction", T0, None, {"transaction_id": second, "meter_stop": 80})
    assert [values for _, values, _ in out] == [
        {"session_id": str(first), "session_energy": 0.0},
        {"session_id": str(second), "session_energy": 0.0},
        {"session_id": "", "session_energy": 0.03, "power": 0.0},
    ]


def test_boot_and_heartbeat_answer_with_the_gateway_time_and_interval() -> None:
    cs, out = central()
    assert cs.call("CP-1", "BootNotification", T0 + 5, None, {"charge_point_vendor": "A"}) == {
        "current_time": "2026-09-21T14:13:20.005Z",
        "interval": 60,
        "status": "Accepted",
    }
    assert cs.call("CP-1", "Heartbeat", T0, None, {}) == {"current_time": "2026-09-21T14:13:20.000Z"}
    assert out == []


def test_the_recorded_session_is_valid_for_the_ev_charger_kind() -> None:
    spec = KINDS[DeviceKind.EV_CHARGER]
    for reading in read_expected(CASE / "expected.jsonl"):
        for name, value in reading["values"].items():
            metric = spec.metrics[name]
            if metric.type == "str":
                assert isinstance(value, str) and len(value) <= metric.max_length
                assert metric.choices is None or value in metric.choices
            else:
                assert isinstance(value, float) and metric.min <= value <= metric.max


def test_the_spool_keeps_session_starts_and_stops_as_events(tmp_path: Path) -> None:
    """Run the recorded session through the adapter into a real spool and read back each reading's class."""
    config = parse_adapter_config(tomllib.loads((CASE / "adapter.toml").read_text()))
    adapter = build_adapter(config, AdapterContext("gw", "d", (), CASE))
    sink = CollectingSink()
    adapter.run(sink, threading.Event())
    spool = Spool(tmp_path / "spool.sqlite", now_ms=lambda: T0)
    spool.add_devices((d.id, d.kind) for d in adapter.devices())
    for r in sink.readings:
        spool.append(r["device"], r["values"], r["ts"])
    spool.commit()
    spool.close()
    with sqlite3.connect(tmp_path / "spool.sqlite") as db:
        classes = [ReadingClass(c) for (c,) in db.execute("SELECT cls FROM readings ORDER BY seq")]
    E, M, R = ReadingClass.EVENT, ReadingClass.MIXED, ReadingClass.REGISTER
    # Available, Preparing, start, Charging, 3 meter values, stop, Available: every state change is an event,
    # the meter values (same session, same status) are not.
    assert classes == [E, E, E, E, M, M, M, E, E]
    assert R not in classes


def test_config_is_checked() -> None:
    base: dict[str, Any] = {"type": "ocpp"}
    with pytest.raises(ConfigError, match="at least one charge point"):
        parse_adapter_config({**base, "charge_points": {}})
    with pytest.raises(ConfigError, match="charge point id 'a/b'"):
        parse_adapter_config({**base, "charge_points": {"a/b": {"1": "ev-1"}}})
    with pytest.raises(ConfigError, match="mapped twice"):
        parse_adapter_config({**base, "charge_points": {"A": {"1": "ev-1"}, "B": {"1": "ev-1"}}})
    with pytest.raises(ConfigError, match="no connectors"):
        parse_adapter_config({**base, "charge_points": {"A": {}}})
    with pytest.raises(ConfigError, match=r"adapter \(ocpp\): charge_points\.A\.0: must be >= 1 \(got 0\)"):
        parse_adapter_config({**base, "charge_points": {"A": {"0": "ev-1"}}})
    config = parse_adapter_config({**base, "charge_points": {"A": {"1": "ev-1", "2": "ev-2"}}})
    registry = (DeviceRef("ev-1", DeviceKind.EV_CHARGER), DeviceRef("m-1", DeviceKind.ELECTRICITY_METER))
    with pytest.raises(ConfigError, match="ev-2 is not assigned to gateway gw"):
        build_adapter(config, AdapterContext("gw", "d", registry, Path()))
    wrong = parse_adapter_config({**base, "charge_points": {"A": {"1": "m-1"}}})
    with pytest.raises(ConfigError, match="m-1 is a electricity_meter, not an ev_charger"):
        build_adapter(wrong, AdapterContext("gw", "d", registry, Path()))
    adapter = build_adapter(config, AdapterContext("gw", "d", (), Path()))
    assert isinstance(adapter, OcppAdapter)
    assert list(adapter.devices()) == [
        DeviceRef("ev-1", DeviceKind.EV_CHARGER),
        DeviceRef("ev-2", DeviceKind.EV_CHARGER),
    ]
    missing = parse_adapter_config({**base, "charge_points": {"A": {"1": "ev-1"}}, "replay": "nope.jsonl"})
    with pytest.raises(ConfigError, match="no such file"):
        build_adapter(missing, AdapterContext("gw", "d", (), Path("/nonexistent")))


# -- the state kept across restarts (the adapter's cursor) --------------------------------------------------------
CP3 = {"CP-1": {1: "ev-1", 2: "ev-2"}, "CP-2": {1: "ev-3"}}


def persisted(
    state: str | None = None, *, max_open: int = 1000, charge_points: dict[str, dict[int, str]] | None = None
) -> tuple[CentralSystem, list[Any]]:
    """A central system whose readings and saved states go, in order, to one list."""
    out: list[Any] = []

    def emit(device: str, values: Values, ts: int | None) -> None:
        out.append((device, dict(values)))

    cs = CentralSystem(
        charge_points or CP3, 60, emit, state=state, save=lambda doc: out.append(json.loads(doc)), max_open=max_open
    )
    return cs, out


def test_the_state_is_saved_before_a_start_reading_and_after_a_stop_reading() -> None:
    cs, out = persisted()
    cs.call("CP-1", "StatusNotification", T0, None, {"connector_id": 1, "status": "Charging"})
    cs.call("CP-1", "StatusNotification", T0, None, {"connector_id": 1, "status": "Charging"})  # unchanged: no save
    start = {"connector_id": 1, "meter_start": 5000, "id_tag": "TAG-SECRET"}
    tx = cs.call("CP-1", "StartTransaction", T0, T0 + 7, start)["transaction_id"]  # type: ignore[index]
    mv = {"connector_id": 1, "transaction_id": tx, "meter_value": [{"sampled_value": [energy("5100")]}]}
    cs.call("CP-1", "MeterValues", T0, None, mv)  # no state change: no save
    cs.call("CP-1", "StopTransaction", T0, None, {"transaction_id": tx, "meter_stop": 5500, "id_tag": "TAG-SECRET"})
    sid, status = str(tx), [["CP-1", 1, "Charging"]]
    assert out == [
        ("ev-1", {"connector_status": "Charging", "session_id": ""}),
        {"v": 1, "last_tx": 0, "open": [], "status": status},
        ("ev-1", {"connector_status": "Charging", "session_id": ""}),
        {"v": 1, "last_tx": tx, "open": [[tx, "CP-1", 1, 5000.0, T0 + 7]], "status": status},
        ("ev-1", {"connector_status": "Charging", "session_id": sid, "session_energy": 0.0}),
        ("ev-1", {"connector_status": "Charging", "session_id": sid, "session_energy": 0.1}),
        ("ev-1", {"connector_status": "Charging", "session_id": "", "session_energy": 0.5, "power": 0.0}),
        {"v": 1, "last_tx": tx, "open": [], "status": status},
    ]
    assert "TAG-SECRET" not in cs.state()


def test_a_restored_state_carries_on_as_if_there_had_been_no_restart() -> None:
    def opened() -> tuple[CentralSystem, list[Any], int, int]:
        cs, out = persisted()
        cs.call("CP-2", "StatusNotification", T0, None, {"connector_id": 1, "status": "Charging"})
        tx1 = cs.call("CP-2", "StartTransaction", T0, None, {"connector_id": 1, "meter_start": 1000})
        tx2 = cs.call("CP-1", "StartTransaction", T0, None, {"connector_id": 2, "meter_start": 0})
        return cs, out, tx1["transaction_id"], tx2["transaction_id"]  # type: ignore[index]

    def carry_on(cs: CentralSystem, clock_ms: int) -> Any:
        mv = {"connector_id": 1, "transaction_id": tx1, "meter_value": [{"sampled_value": [energy("1.6", "kWh")]}]}
        cs.call("CP-2", "MeterValues", clock_ms, None, mv)
        cs.call("CP-2", "StopTransaction", clock_ms, None, {"transaction_id": tx1, "meter_stop": 2000})
        return cs.call("CP-2", "StartTransaction", clock_ms, None, {"connector_id": 1, "meter_start": 2000})

    # Without a restart (the reference), then restored from the saved state with the clock an hour back.
    reference, ref_out, tx1, tx2 = opened()
    saved, n = reference.state(), len(ref_out)
    assert carry_on(reference, T0) == {"transaction_id": tx2 + 1, "id_tag_info": {"status": "Accepted"}}
    restored, out = persisted(saved)
    assert carry_on(restored, T0 - 3_600_000) == {"transaction_id": tx2 + 1, "id_tag_info": {"status": "Accepted"}}
    readings = [r for r in out if isinstance(r, tuple)]
    assert readings == [r for r in ref_out[n:] if isinstance(r, tuple)]
    assert readings == [
        ("ev-3", {"connector_status": "Charging", "session_id": str(tx1), "session_energy": 0.6}),
        ("ev-3", {"connector_status": "Charging", "session_id": "", "session_energy": 1.0, "power": 0.0}),
        ("ev-3", {"connector_status": "Charging", "session_id": str(tx2 + 1), "session_energy": 0.0}),
    ]
    assert json.loads(restored.state())["open"] == [
        [tx2, "CP-1", 2, 0.0, T0],
        [tx2 + 1, "CP-2", 1, 2000.0, T0 - 3_600_000],
    ]


def test_open_transactions_are_bounded_the_oldest_dropped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    cs, out = persisted(max_open=2)
    txs = [
        cs.call(cp, "StartTransaction", T0, None, {"connector_id": c, "meter_start": 0})["transaction_id"]  # type: ignore[index]
        for cp, c in (("CP-1", 1), ("CP-1", 2), ("CP-2", 1))
    ]
    assert cs.dropped == 1
    assert f"over 2 open transactions: oldest {txs[0]} dropped" in caplog.text
    assert [tx for tx, *_ in json.loads(cs.state())["open"]] == txs[1:]
    out.clear()
    cs.call("CP-1", "StopTransaction", T0, None, {"transaction_id": txs[0], "meter_stop": 10})  # dropped: no reading
    cs.call("CP-2", "StopTransaction", T0, None, {"transaction_id": txs[2], "meter_stop": 10})
    assert [r for r in out if isinstance(r, tuple)] == [
        ("ev-3", {"session_id": "", "session_energy": 0.01, "power": 0.0})
    ]
    # A saved state over the bound (a smaller bound after an upgrade) keeps the newest.
    many = {"v": 1, "last_tx": 9, "open": [[7, "CP-1", 1, 0.0, 0], [8, "CP-1", 2, 0.0, 0], [9, "CP-2", 1, 0.0, 0]]}
    restored, _ = persisted(json.dumps({**many, "status": []}), max_open=1)
    assert (json.loads(restored.state())["open"], restored.dropped) == ([[9, "CP-2", 1, 0.0, 0]], 2)


def test_an_unusable_saved_state_starts_clean_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    for bad, why in (("{", "unreadable"), ('{"v": 2}', "version 2"), ('{"v": 1, "last_tx": 5}', "'open'")):
        cs, _ = persisted(bad)
        assert json.loads(cs.state()) == {"v": 1, "last_tx": 0, "open": [], "status": []}
        assert why in caplog.text
    # A transaction of a connector no longer in the config is dropped, the rest kept.
    doc = {"v": 1, "last_tx": 9, "open": [[8, "CP-9", 1, 0.0, 0], [9, "CP-1", 2, 5.0, 0]], "status": [["CP-9", 1, "X"]]}
    cs, _ = persisted(json.dumps(doc))
    assert (json.loads(cs.state()), cs.dropped) == (
        {"v": 1, "last_tx": 9, "open": [[9, "CP-1", 2, 5.0, 0]], "status": []},
        1,
    )
    assert "CP-9: restored transaction 8 on connector 1, no longer configured: dropped" in caplog.text


def test_the_server_keeps_its_state_in_the_cursor_and_a_replay_does_not(tmp_path: Path) -> None:
    config = parse_adapter_config(tomllib.loads((CASE / "adapter.toml").read_text()))
    adapter = build_adapter(config, AdapterContext("gw", "d", (), CASE))
    assert isinstance(adapter, OcppAdapter)
    saved = {"v": 1, "last_tx": 41, "open": [[41, "CP-1", 2, 300.0, T0]], "status": [["CP-1", 2, "Charging"]]}
    sink = CollectingSink(json.dumps(saved))
    live = adapter.central(sink, stamp=True, persist=True)
    live.call("CP-1", "StopTransaction", T0, None, {"transaction_id": 41, "meter_stop": 1300})
    assert sink.readings[-1]["values"] == {
        "connector_status": "Charging",
        "session_id": "",
        "session_energy": 1.0,
        "power": 0.0,
    }
    assert json.loads(sink.cursor() or "") == {**saved, "open": []}
    # A replay starts clean whatever the cursor, and leaves it as it is: the same readings on every run.
    sink = CollectingSink("not even JSON")
    adapter.run(sink, threading.Event())
    assert sink.readings == read_expected(CASE / "expected.jsonl")
    assert sink.cursor() == "not even JSON"

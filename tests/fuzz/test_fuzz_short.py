"""The short fuzzing run of CI: 3,000 mutated inputs per decoder, no finding (the long run: `make fuzz`).
Then each finding of the long runs, as the smallest input that failed on the code before its fix."""

from __future__ import annotations

import json

import pytest

from devices import Reason, validate_message
from devices.registry import Registry, RegistryError
from gateway.adapters.ocpp.central import frame_problem
from gateway.adapters.replay import BadLine, parse_line
from tests.fuzz.__main__ import fuzz
from tests.fuzz.targets import TARGETS
from tests.support.fastpath_contract import EM, NOW, REGISTRY, TOPICS, check
from tests.support.registries import small_registry_toml


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_short_fuzzing_run_finds_nothing(name: str) -> None:
    result = fuzz(TARGETS[name], 3_000, seed=7, slow_ms=2_000, findings_dir=None)
    assert result["findings"] == []
    assert "accepted" in result["outcomes"] or name == "wire"  # the valid paths were exercised too
    assert len(result["outcomes"]) >= 2  # ... and the rejecting ones


def test_a_timestamp_of_hundreds_of_digits_is_a_future_timestamp_not_a_crash() -> None:
    payload = json.dumps(
        {
            "v": 1,
            "device": EM.id,
            "seq": [0, 0],
            "units": {"energy_import": "kWh"},
            "readings": [{"ts": 10**400, "values": {"energy_import": 1.0}}],
        }
    ).encode()
    result = validate_message(TOPICS[EM.id], payload, REGISTRY, now_ms=NOW)  # raised OverflowError
    assert [r.reason for r in result.rejected] == [Reason.FUTURE_TIMESTAMP]
    assert "of 401 digits" in result.rejected[0].detail
    check(TOPICS[EM.id], payload, NOW)  # and the fast path does not take it either


def test_a_replay_line_with_an_infinite_ts_is_a_bad_line() -> None:
    line = json.dumps({"topic": TOPICS[EM.id], "payload": '{"device": "x", "readings": [{"ts": 1e999, "values": {}}]}'})
    with pytest.raises(BadLine, match="OverflowError"):  # raised OverflowError itself
        parse_line(line)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (small_registry_toml("fz").replace('timezone = "Europe/Helsinki"', 'timezone = "Europe"'), "time zone"),
        (small_registry_toml("fz").replace("floor_area_m2 = 1000", "floor_area_m2 = " + "9" * 400), "too large"),
    ],
)
def test_a_zone_folder_or_a_huge_number_in_a_registry_is_a_registry_error(text: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message):  # raised IsADirectoryError / OverflowError
        Registry.from_toml(text)


@pytest.mark.parametrize(
    "frame",
    [
        '[2, ["m014"], ["Heartbeat"], {}]',  # the package's router raised TypeError: the connection ended
        '[2, "m1", "Heartbeat", 18446744073709551616]',
        '[2, "m1", "\\u0000", {}]',  # the package opened a schema file named with a NUL
        '[2, "m1", "Heartbe\\ud800at", {}]',
        '[2, "m1", "../../v201/schemas/Heartbeat", {}]',
    ],
)
def test_frames_not_shaped_like_ocpp_are_dropped_before_the_ocpp_package(frame: str) -> None:
    assert frame_problem(frame) is not None
    assert frame_problem('[2, "m1", "Heartbeat", {}]') is None


def test_a_meter_start_of_hundreds_of_digits_is_refused_not_a_crash() -> None:
    from gateway.adapters.ocpp.central import CentralSystem, ImplausibleValue

    central = CentralSystem({"CP-1": {1: "ev-1"}}, 300, lambda *_: None)
    payload = {"connector_id": 1, "id_tag": "T", "meter_start": 10**400, "timestamp": "2026-01-01T00:00:00Z"}
    with pytest.raises(ImplausibleValue, match="too large for a meter"):  # raised OverflowError
        central.call("CP-1", "StartTransaction", NOW, NOW, payload)

"""The decoders that take bytes from outside, each with its seeds and its oracle.

A target's `run(data)` returns the outcome: "accepted", or the reason code the decoder gave (one of a fixed
set per decoder: an unknown one is a finding). Anything else it raises is a finding: a decoder must answer
hostile input with its own rejection, never a crash. The v1 payload target also checks that ingest's fast
path agrees with the full validator (tests/support/fastpath_contract.py), on every input.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devices import Reason, encode_batch, units_for, validate_message
from devices.wire import (
    ConfirmError,
    Eviction,
    EvictionError,
    decode_confirm,
    decode_eviction,
    encode_confirms,
    encode_eviction,
    encode_status,
)
from tests.support.fastpath_contract import EM, EV, NOW, REGISTRY, TOPICS, check

REPO = Path(__file__).resolve().parents[2]
ADAPTERS = REPO / "gateway" / "adapters"


@dataclass(frozen=True)
class Target:
    name: str
    seeds: Callable[[], list[bytes]]
    run: Callable[[bytes], str]


# -- the v1 readings payload: fast path and full validator ---------------------------------------------------
REASONS = {r.value for r in Reason}


def _payload_seeds() -> list[bytes]:
    meter = [(NOW - 60_000 * i, {"energy_import": 1000.0 + i, "power": 1500.0, "voltage": 230.0}) for i in range(3)]
    charger = [(NOW - 60_000, {"session_energy": 1.5, "power": 7000.0, "connector_status": "Charging"})]
    seeds = [
        encode_batch(EM.id, 7, units_for(EM.kind), meter),
        encode_batch(EV.id, 3, units_for(EV.kind), charger),
    ]
    lines = (ADAPTERS / "replay" / "testcases" / "with_a_bad_line" / "input.jsonl").read_text().splitlines()
    for line in lines:
        try:
            seeds.append(json.loads(line)["payload"].encode())
        except (ValueError, KeyError, TypeError):
            continue
    return seeds


def _payload(data: bytes) -> str:
    topic = TOPICS[EM.id] if b"energy_import" in data or len(data) % 2 else TOPICS[EV.id]
    result = validate_message(topic, data, REGISTRY, now_ms=NOW)
    reasons = {r.reason.value for r in result.rejected}
    if not reasons <= REASONS or not all(isinstance(r.reason, Reason) for r in result.rejected):
        raise AssertionError(f"rejection outside the reason codes: {reasons - REASONS}")
    check(topic, data, NOW)  # the fast path agrees with the validator (asserts)
    return "accepted" if not result.rejected else min(reasons)


# -- gateway status documents (the dashboard) -------------------------------------------------------------------
def _status_seeds() -> list[bytes]:
    heartbeat = {"ts": NOW, "uptime_s": 12, "clock": {"state": "synchronised"}, "spool": {"readings": 3}}
    return [
        encode_status(gateway="gw-b1", district="demo", state="online", version="0.1.0", heartbeat=heartbeat),
        encode_status(gateway="gw-b1", district="demo", state="offline", version="0.1.0", reason="will"),
        b"online",
        b'"offline"',
    ]


def _status(data: bytes) -> str:
    from dashboard.snapshot import gateway_view
    from dashboard.sources import parse_status

    status = parse_status("gw-b1", data, NOW, retained=bool(len(data) % 2))
    if not isinstance(status.state, str):
        raise AssertionError(f"state {status.state!r} is not a string")
    gateway_view("gw-b1", "b1", 3, status, NOW, 60.0)  # what every refresh does with it
    return "refused" if "error" in status.doc else "accepted"


# -- MQTT sensor vendor payloads -------------------------------------------------------------------------------
SENSOR_REASONS = {
    "unknown_topic",
    "too_large",
    "bad_json",
    "no_mapped_field",
    "wrong_type",
    "out_of_range",
    "non_finite",
}
_SENSOR_CASE = ADAPTERS / "mqtt_sensors" / "testcases" / "four_vendors_and_bad_payloads"


def _sensor_decoder() -> tuple[object, list[str]]:
    from gateway.adapters import AdapterContext, build_adapter, parse_adapter_config

    table = tomllib.loads((_SENSOR_CASE / "adapter.toml").read_text())
    table.pop("messages", None)
    adapter = build_adapter(parse_adapter_config(table), AdapterContext("gw", "d", (), _SENSOR_CASE))
    decoder = adapter.decoder  # type: ignore[attr-defined]
    return decoder, sorted(decoder._topics)


_SENSORS: list[tuple[object, list[str]]] = []


def _sensor_seeds() -> list[bytes]:
    lines = (_SENSOR_CASE / "messages.jsonl").read_text().splitlines()
    return [json.loads(line)["payload"].encode() for line in lines if line.strip()]


def _sensor(data: bytes) -> str:
    from gateway.adapters.mqtt_sensors import BadPayload

    if not _SENSORS:
        _SENSORS.append(_sensor_decoder())
    decoder, topics = _SENSORS[0]
    topic = topics[len(data) % len(topics)]
    try:
        _, _, rejected = decoder.decode(topic, data)  # type: ignore[attr-defined]
    except BadPayload as exc:
        if exc.reason not in SENSOR_REASONS:
            raise AssertionError(f"reason {exc.reason!r} outside the codes") from exc
        return exc.reason
    reasons = {reason for reason, _ in rejected}
    if not reasons <= SENSOR_REASONS:
        raise AssertionError(f"reasons {reasons - SENSOR_REASONS} outside the codes")
    return "accepted" if not rejected else min(reasons)


# -- OCPP 1.6J frames: the ocpp package's parsing and schema, then the central system ----------------------------
_OCPP_CASE = ADAPTERS / "ocpp" / "testcases" / "full_session"
_CENTRAL: list[object] = []


def _ocpp_seeds() -> list[bytes]:
    lines = (_OCPP_CASE / "messages.jsonl").read_text().splitlines()
    return [json.dumps(json.loads(line)["call"]).encode() for line in lines if line.strip()]


def _central() -> object:
    if not _CENTRAL:
        from gateway.adapters.ocpp.central import CentralSystem

        _CENTRAL.append(CentralSystem({"CP-1": {1: "ev-1", 2: "ev-2"}}, 300, lambda *_: None))
    return _CENTRAL[0]


def _ocpp(data: bytes) -> str:
    from ocpp.exceptions import OCPPError
    from ocpp.messages import Call, unpack
    from ocpp.messages import _validate_payload as validate_payload  # the sync core: the public one is async

    from gateway.adapters.ocpp.central import ACTIONS, ImplausibleValue, camel_to_snake, frame_problem

    try:
        text = data.decode("utf-8")  # websockets refuses a text frame that is not UTF-8
    except UnicodeDecodeError:
        return "not_utf8"
    if frame_problem(text) is not None:  # what the server drops before the package routes it
        return "malformed_frame"
    try:
        message = unpack(text)
        if not isinstance(message, Call):
            return "not_a_call"
        validate_payload(message, "1.6")
    except OCPPError as exc:
        return str(exc.code)
    except RecursionError:
        return "too_deep"  # json.loads' own limit, raised before any OCPP code
    if message.action not in ACTIONS:
        return "not_implemented"
    try:
        _central().call("CP-1", message.action, NOW, NOW, camel_to_snake(message.payload))  # type: ignore[attr-defined]
    except ImplausibleValue:
        return "implausible_value"
    return "accepted"


# -- Modbus register responses -----------------------------------------------------------------------------------
_MAPS: list[object] = []


def _modbus_seeds() -> list[bytes]:
    return [bytes(range(256)) * 2, b"\x00" * 512, b"\xff" * 512, b"\x7f\x80\x00\x00" * 128]


def _modbus(data: bytes) -> str:
    from gateway.adapters.modbus.registers import ReadError, builtin_maps, decode, load_map, plan_reads

    if not _MAPS:
        _MAPS.extend(load_map(name, REPO) for name in builtin_maps())
    regmap = _MAPS[len(data) % len(_MAPS)]
    words = [int.from_bytes(data[i : i + 2].ljust(2, b"\0"), "big") for i in range(0, max(len(data), 2), 2)]
    registers: dict[int, int] = {}
    k = 0
    for block in plan_reads(regmap):  # type: ignore[arg-type]
        for address in range(block.address, block.address + block.count):
            registers[address] = words[k % len(words)]
            k += 1
    if data[:1] == b"\x00" and registers:
        registers.pop(next(iter(registers)))  # a short response: one register missing
    try:
        decode(regmap, registers)  # type: ignore[arg-type]
    except ReadError:
        return "read_error"
    return "accepted"


# -- recorded message lines (the replay adapter) --------------------------------------------------------------
def _replay_seeds() -> list[bytes]:
    return [
        line.encode()
        for line in (ADAPTERS / "replay" / "testcases" / "with_a_bad_line" / "input.jsonl").read_text().splitlines()
    ]


def _replay(data: bytes) -> str:
    from gateway.adapters.replay import BadLine, parse_line

    try:
        parse_line(data.decode("utf-8", "replace"))
    except BadLine:
        return "bad_line"
    return "accepted"


# -- confirmations and eviction notices ----------------------------------------------------------------------
def _wire_seeds() -> list[bytes]:
    eviction = Eviction("b1-em-main", 10, 20, NOW - 600_000, NOW - 60_000, "bytes_limit", "register")
    return [*encode_confirms({"b1-em-main": [(0, 9), (12, 40)]}, by="_ingest", ts_ms=NOW), encode_eviction(eviction)]


def _wire(data: bytes) -> str:
    outcome = []
    try:
        decode_confirm(data)
        outcome.append("confirm")
    except ConfirmError:
        pass
    try:
        decode_eviction(data)
        outcome.append("eviction")
    except EvictionError:
        pass
    return "+".join(outcome) or "refused"


# -- registry and gateway config TOML -------------------------------------------------------------------------
def _registry_seeds() -> list[bytes]:
    return [
        (REPO / "tests" / "data" / "small.toml").read_bytes(),
        (REPO / "devices" / "registries" / "demo.toml").read_bytes()[:4000],
    ]


def _registry(data: bytes) -> str:
    from devices.registry import Registry, RegistryError

    try:
        Registry.from_toml(data.decode("utf-8"))
    except UnicodeDecodeError:
        return "not_utf8"
    except RegistryError:
        return "refused"
    return "accepted"


def _config_seeds() -> list[bytes]:
    return [
        (ADAPTERS / "ocpp" / "sample.toml")
        .read_bytes()
        .replace(b"[[adapter]]", b'[gateway]\nid = "gw-b1"\ndistrict = "demo"\n[[adapter]]', 1),
        b'[gateway]\nid = "gw-b1"\ndistrict = "demo"\n[mqtt]\nhost = "b"\nport = 8883\ntls = true\n'
        b'[[adapter]]\ntype = "simulated"\n',
    ]


def _config(data: bytes) -> str:
    from gateway.config import GatewayConfig
    from gateway.errors import ConfigError

    try:
        GatewayConfig.from_toml(data.decode("utf-8"), base_dir=REPO / "tests" / "data")
    except UnicodeDecodeError:
        return "not_utf8"
    except ConfigError:
        return "refused"
    return "accepted"


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("payload", _payload_seeds, _payload),
        Target("status", _status_seeds, _status),
        Target("mqtt_sensors", _sensor_seeds, _sensor),
        Target("ocpp", _ocpp_seeds, _ocpp),
        Target("modbus", _modbus_seeds, _modbus),
        Target("replay", _replay_seeds, _replay),
        Target("wire", _wire_seeds, _wire),
        Target("registry", _registry_seeds, _registry),
        Target("gateway_config", _config_seeds, _config),
    )
}

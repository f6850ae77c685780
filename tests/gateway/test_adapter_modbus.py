"""The Modbus adapter: register decoding against values chosen by hand, and the network path against
pymodbus's own server on loopback (both meter maps, a server that goes away and comes back, a meter that
never answers, an exception response)."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from devices.kinds import DeviceKind
from gateway.adapters import AdapterContext, DeviceRef, build_adapter, parse_adapter_config
from gateway.adapters.modbus import DumpSource, ModbusAdapter
from gateway.adapters.modbus.registers import Block, RegisterSpec, decode_value, load_map, plan_reads
from gateway.errors import ConfigError
from tests.support.adapter_sink import T0, CollectingSink, read_expected
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "gateway" / "adapters" / "modbus" / "testcases"


class LoopbackServer:
    """pymodbus's ModbusTcpServer on 127.0.0.1, on an asyncio loop of its own thread."""

    def __init__(self, devices: list[SimDevice], port: int) -> None:
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> ModbusTcpServer:
            server = ModbusTcpServer(devices, address=("127.0.0.1", port))
            await server.serve_forever(background=True)
            return server

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def device_from_dump(unit: int, dump: Path) -> SimDevice:
    """A SimDevice whose registers are exactly the dump's (shared by the input and holding tables, as many
    meters do); every other address is invalid and answered with an exception."""
    runs = json.loads(dump.read_text())["input"]
    blocks = [SimData(int(start, 0), values=words, datatype=DataType.REGISTERS) for start, words in runs.items()]
    return SimDevice(id=unit, simdata=blocks)


def adapter_for(meters: Sequence[dict[str, Any]], *, timeout_s: float = 2.0, polls: int = 1) -> ModbusAdapter:
    raw = {"type": "modbus", "interval_s": 0.001, "timeout_s": timeout_s, "polls": polls, "meter": list(meters)}
    adapter = build_adapter(parse_adapter_config(raw), AdapterContext("gw-test", "test", (), ROOT))
    assert isinstance(adapter, ModbusAdapter)
    return adapter


@pytest.fixture
def both_meters() -> Iterator[LoopbackServer]:
    """One Modbus TCP gateway with an SDM630 at unit 1 and an EM24 at unit 2, serving the test case dumps."""
    server = LoopbackServer(
        [
            device_from_dump(1, CASES / "sdm630" / "registers.json"),
            device_from_dump(2, CASES / "em24" / "registers.json"),
        ],
        free_port(),
    )
    yield server
    server.stop()


def meters_on(port: int) -> list[dict[str, Any]]:
    return [
        {"device": "b1-em-main", "map": "sdm630", "host": "127.0.0.1", "port": port, "unit": 1},
        {"device": "b2-em-main", "map": "em24", "host": "127.0.0.1", "port": port, "unit": 2},
    ]


EXPECTED = {
    "b1-em-main": {"voltage": 230.1, "power": 5201.9, "energy_import": 81234.5, "energy_export": 123.25},
    "b2-em-main": {"voltage": 230.1, "power": -450.7, "energy_import": 81234.5, "energy_export": 123.2},
}


def test_both_maps_decode_exact_values_from_pymodbus_server(both_meters: LoopbackServer) -> None:
    adapter = adapter_for(meters_on(both_meters.port), polls=2)
    assert len({id(m.source) for m in adapter.meters}) == 1  # one connection for the two units
    sink = CollectingSink()
    adapter.run(sink, threading.Event())
    assert sink.readings == [
        {"device": dev, "ts": T0 + 1000 * i, "values": EXPECTED[dev]}
        for i, dev in enumerate(["b1-em-main", "b2-em-main", "b1-em-main", "b2-em-main"])
    ]
    # the network path gives what the test cases (dumps) give
    assert sink.readings[0]["values"] == read_expected(CASES / "sdm630" / "expected.jsonl")[0]["values"]
    assert sink.readings[1]["values"] == read_expected(CASES / "em24" / "expected.jsonl")[0]["values"]
    assert {d: (s.polls, s.failed) for d, s in adapter.stats.items()} == {"b1-em-main": (2, 0), "b2-em-main": (2, 0)}


def test_a_server_that_goes_away_and_comes_back(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    devices = [device_from_dump(1, CASES / "sdm630" / "registers.json")]
    server = LoopbackServer(devices, port)
    adapter = adapter_for([meters_on(port)[0]], timeout_s=0.5)
    meter = adapter.meters[0]
    sink = CollectingSink()
    try:
        assert adapter.poll(meter, sink)
        server.stop()
        with caplog.at_level("DEBUG", logger="gateway.adapters.modbus"):
            assert not adapter.poll(meter, sink)
            assert not adapter.poll(meter, sink)
        warnings = [r for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1  # logged once when the meter goes silent, not at every poll
        assert "b1-em-main" in warnings[0].getMessage()
        assert (meter.stats.polls, meter.stats.failed, meter.stats.failing_for) == (3, 2, 2)
        server = LoopbackServer(devices, port)
        assert adapter.poll(meter, sink)  # reconnects by itself
        assert (meter.stats.polls, meter.stats.failed, meter.stats.failing_for) == (4, 2, 0)
    finally:
        adapter.close()
        server.stop()
    assert [r["values"] for r in sink.readings] == [EXPECTED["b1-em-main"]] * 2


def test_a_meter_that_never_answers_times_out_and_the_other_meters_go_on(both_meters: LoopbackServer) -> None:
    with socket.socket() as silent:  # accepts the connection, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        meters = [
            {"device": "b9-em-dead", "map": "em24", "host": "127.0.0.1", "port": silent.getsockname()[1]},
            meters_on(both_meters.port)[0],
        ]
        adapter = adapter_for(meters, timeout_s=0.2, polls=2)
        sink = CollectingSink()
        adapter.run(sink, threading.Event())
    assert [r["device"] for r in sink.readings] == ["b1-em-main", "b1-em-main"]
    dead = adapter.stats["b9-em-dead"]
    assert (dead.polls, dead.failed) == (2, 2)
    assert "b9-em-dead" not in {r["device"] for r in sink.readings}


def test_an_exception_response_is_a_failed_poll(both_meters: LoopbackServer) -> None:
    # unit 1 is an SDM630 (0x0000-0x004B): the EM24 map also asks for 0x004E: ILLEGAL DATA ADDRESS
    wrong = {"device": "b1-em-main", "map": "em24", "host": "127.0.0.1", "port": both_meters.port, "unit": 1}
    adapter = adapter_for([wrong])
    sink = CollectingSink()
    adapter.run(sink, threading.Event())
    assert sink.readings == []
    stats = adapter.stats["b1-em-main"]
    assert (stats.polls, stats.failed) == (1, 1)
    assert stats.last_error.endswith("input 0x004e+2: ExceptionResponse(dev_id=1, function_code=132, exception_code=2)")


def test_decoding_rules() -> None:
    f32 = struct.pack(">f", 230.1)
    words = [int.from_bytes(f32[:2], "big"), int.from_bytes(f32[2:], "big")]
    assert decode_value(RegisterSpec(address=0, type="float32", unit="V"), words) == 230.1
    assert (
        decode_value(RegisterSpec(address=0, type="int32", word_order="little", divide=10, unit="W"), [0xEE65, 0xFFFF])
        == -450.7
    )
    assert decode_value(RegisterSpec(address=0, type="uint32", word_order="big", unit="W"), [1, 0]) == 65536.0
    assert decode_value(RegisterSpec(address=0, type="int16", divide=100, unit="V"), [0xFFFF]) == -0.01
    nan = decode_value(RegisterSpec(address=0, type="float32", unit="V"), [0x7FC0, 0])
    assert nan != nan  # passed on: ingest quarantines it as non_finite


def test_read_plans_follow_the_maps() -> None:
    assert plan_reads(load_map("sdm630", ROOT)) == (
        Block("input", 0x00, 2),
        Block("input", 0x34, 2),
        Block("input", 0x48, 4),
    )
    assert plan_reads(load_map("em24", ROOT)) == tuple(Block("input", a, 2) for a in (0x00, 0x28, 0x34, 0x4E))


def test_config_errors(tmp_path: Path) -> None:
    def build(meter: dict[str, Any], registry: tuple[DeviceRef, ...] = ()) -> None:
        config = parse_adapter_config({"type": "modbus", "meter": [meter]})
        build_adapter(config, AdapterContext("gw", "d", registry, tmp_path))

    with pytest.raises(ConfigError, match="either host"):
        build({"device": "m1", "map": "sdm630"})
    with pytest.raises(ConfigError, match="no built-in map 'sdm120'"):
        build({"device": "m1", "map": "sdm120", "host": "127.0.0.1"})
    bad_map = tmp_path / "bad.toml"
    bad_map.write_text(
        'name = "x"\ntable = "input"\nsources = ["s"]\n[registers.power]\naddress = 0\ntype = "float32"\nunit = "kW"\n'
    )
    with pytest.raises(ConfigError, match="power: the map gives 'kW'"):
        build({"device": "m1", "map": "bad.toml", "host": "127.0.0.1"})
    registry = (DeviceRef("hm1", DeviceKind.HEAT_METER),)
    with pytest.raises(ConfigError, match="not assigned to gateway gw"):
        build({"device": "m1", "map": "sdm630", "host": "127.0.0.1"}, registry)
    with pytest.raises(ConfigError, match="hm1 is a heat_meter"):
        build({"device": "hm1", "map": "sdm630", "host": "127.0.0.1"}, registry)
    with pytest.raises(ConfigError, match="register dump"):
        DumpSource(tmp_path / "missing.json")


def test_the_gateway_imports_pymodbus_only_when_a_meter_is_read() -> None:
    code = "import sys, gateway.adapters; print('pymodbus' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_a_stopped_adapter_polls_nothing(both_meters: LoopbackServer) -> None:
    adapter = adapter_for(meters_on(both_meters.port), polls=0)
    stop = threading.Event()
    stop.set()
    sink = CollectingSink()
    adapter.run(sink, stop)
    assert sink.readings == []
    assert {s.polls for s in adapter.stats.values()} == {0}

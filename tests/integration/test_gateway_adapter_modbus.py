"""Modbus meters through the real gateway: an SDM630 and an EM24 served by pymodbus's own server on
loopback (one Modbus TCP gateway, two unit ids) are polled by the modbus adapter, spooled, and published to
the shared Mosquitto as v1 batches with exactly the decoded values and every sequence number."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from devices import BATCH_ADAPTER
from districtpulse.config import Endpoints
from gateway.cli import build_gateway
from gateway.config import GatewayConfig
from tests.support.gateway_mqtt import Recorder, check_delivery, clear_retained, spooled_counters

CASES = Path(__file__).resolve().parents[2] / "gateway" / "adapters" / "modbus" / "testcases"

CONFIG = """
[gateway]
id = "{gateway}"
district = "{district}"
publish_interval_s = 0.05
heartbeat_interval_s = 60

[mqtt]
host = "{host}"
port = {port}

[spool]
path = "spool.sqlite"
commit_interval_ms = 20

[[adapter]]
type = "modbus"
interval_s = 0.05
timeout_s = 2.0
polls = 3

  [[adapter.meter]]
  device = "{district}-sdm630"
  map = "sdm630"
  host = "127.0.0.1"
  port = {modbus_port}
  unit = 1

  [[adapter.meter]]
  device = "{district}-em24"
  map = "em24"
  host = "127.0.0.1"
  port = {modbus_port}
  unit = 2
"""


def sim_device(unit: int, dump: Path) -> SimDevice:
    runs = json.loads(dump.read_text())["input"]
    return SimDevice(
        id=unit,
        simdata=[SimData(int(a, 0), values=words, datatype=DataType.REGISTERS) for a, words in runs.items()],
    )


def test_meters_on_pymodbus_server_reach_the_broker_with_exact_values(
    endpoints: Endpoints, tmp_path: Path, unique_district: str
) -> None:
    district, gateway_id = unique_district, f"{unique_district}-gw"
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever, daemon=True)
    loop_thread.start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        modbus_port = probe.getsockname()[1]

    async def start() -> ModbusTcpServer:
        devices = [sim_device(1, CASES / "sdm630" / "registers.json"), sim_device(2, CASES / "em24" / "registers.json")]
        server = ModbusTcpServer(devices, address=("127.0.0.1", modbus_port))
        await server.serve_forever(background=True)
        return server

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    host, port = endpoints.mqtt_host, endpoints.mqtt_port
    text = CONFIG.format(gateway=gateway_id, district=district, host=host, port=port, modbus_port=modbus_port)
    config = GatewayConfig.from_toml(text, base_dir=tmp_path)
    recorder = Recorder(host, port, f"dp/v1/{district}/{gateway_id}/#")
    try:
        gateway = build_gateway(config)
        result = gateway.run(threading.Event(), exit_when_idle=True)
        assert result == 0
        next_seq, left, _ = spooled_counters(tmp_path / "spool.sqlite")
        assert (next_seq, left) == ({f"{district}-sdm630": 3, f"{district}-em24": 3}, 0)
        recorder.wait_for(lambda: recorder.readings() >= 6, 30, "6 readings")
        assert check_delivery(recorder.snapshot(), next_seq)["readings"] == 6
    finally:
        recorder.close()
        asyncio.run_coroutine_threadsafe(server.shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join(10)
        loop.close()
        clear_retained(host, port, f"dp/v1/{district}/{gateway_id}/status")
    expected = {
        f"{district}-sdm630": json.loads((CASES / "sdm630" / "expected.jsonl").read_text())["values"],
        f"{district}-em24": json.loads((CASES / "em24" / "expected.jsonl").read_text())["values"],
    }
    for msg in recorder.snapshot():
        if msg.topic.endswith(("/status", "/confirm")):
            continue
        batch = BATCH_ADAPTER.validate_json(msg.payload)
        assert msg.topic == f"dp/v1/{district}/{gateway_id}/{batch.device}/electricity_meter"
        assert batch.units == {"energy_import": "kWh", "energy_export": "kWh", "power": "W", "voltage": "V"}
        assert all(r.values == expected[batch.device] for r in batch.readings)

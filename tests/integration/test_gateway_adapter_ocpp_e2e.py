"""A charger's session through the whole gateway: the `ocpp` client on loopback -> the OCPP adapter -> the
spool -> the publisher -> the shared Mosquitto, where a subscriber checks each published reading."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from devices import BATCH_ADAPTER
from districtpulse.config import Endpoints
from gateway.adapters.ocpp import OcppAdapter
from gateway.adapters.ocpp.central import camel_to_snake
from gateway.config import GatewayConfig
from tests.support.gateway_mqtt import GatewayThread, Recorder, check_delivery, clear_retained, spooled_counters

ocpp_v16 = pytest.importorskip("ocpp.v16")
websockets_client = pytest.importorskip("websockets.asyncio.client")

CASE = Path(__file__).resolve().parents[2] / "gateway" / "adapters" / "ocpp" / "testcases" / "full_session"

CONFIG = """
[gateway]
id = "{gateway}"
district = "{district}"
publish_interval_s = 0.1
heartbeat_interval_s = 60

[mqtt]
host = "{host}"
port = {port}

[spool]
path = "spool.sqlite"
commit_interval_ms = 50

[[adapter]]
type = "ocpp"
host = "127.0.0.1"
port = 0

[adapter.charge_points.CP-1]
1 = "{district}-ev-1"
2 = "{district}-ev-2"
"""


async def run_recorded_session(port: int) -> int:
    """Send the test case's calls from CP-1 with a real client; the transaction id the server gave."""
    tx = 0
    async with websockets_client.connect(f"ws://127.0.0.1:{port}/CP-1", subprotocols=["ocpp1.6"]) as ws:
        cp = ocpp_v16.ChargePoint("CP-1", ws)
        task = asyncio.create_task(cp.start())
        for line in (CASE / "messages.jsonl").read_text().splitlines():
            record = json.loads(line)
            if record["charge_point"] != "CP-1":
                continue
            _, _, action, payload = record["call"]
            payload = camel_to_snake(payload)
            if "transaction_id" in payload:
                payload["transaction_id"] = tx
            result = await cp.call(getattr(ocpp_v16.call, action)(**payload), suppress=False)
            if action == "StartTransaction":
                tx = result.transaction_id
        task.cancel()
    return tx


def test_a_recorded_session_is_published_reading_for_reading(
    endpoints: Endpoints, tmp_path: Path, unique_district: str
) -> None:
    district, gateway_id = unique_district, f"{unique_district}-gw"
    config = GatewayConfig.from_toml(
        CONFIG.format(gateway=gateway_id, district=district, host=endpoints.mqtt_host, port=endpoints.mqtt_port),
        base_dir=tmp_path,
    )
    recorder = Recorder(endpoints.mqtt_host, endpoints.mqtt_port, f"dp/v1/{district}/{gateway_id}/#")
    runner = GatewayThread(config)
    try:
        adapter = runner.start().adapters["ocpp"]
        assert isinstance(adapter, OcppAdapter)
        assert adapter.ready.wait(30), "the OCPP server did not start"
        assert adapter.port is not None
        tx = asyncio.run(run_recorded_session(adapter.port))
        expected = [json.loads(line)["values"] for line in (CASE / "expected.jsonl").read_text().splitlines()]
        recorder.wait_for(lambda: recorder.readings() >= len(expected), 30, "the session's readings")
        runner.stop.set()
        runner.join()
        next_seq, left, _ = spooled_counters(tmp_path / "spool.sqlite")
        assert left == 0
        assert next_seq == {f"{district}-ev-1": len(expected), f"{district}-ev-2": 0}
        messages = [m for m in recorder.snapshot() if not m.topic.endswith(("/status", "/confirm"))]
        check_delivery(messages, {f"{district}-ev-1": len(expected)})
        published: dict[int, dict[str, Any]] = {}
        for m in messages:
            batch = BATCH_ADAPTER.validate_json(m.payload)
            assert m.topic == f"dp/v1/{district}/{gateway_id}/{district}-ev-1/ev_charger"
            for i, reading in enumerate(batch.readings):
                published[batch.seq[0] + i] = dict(reading.values)
        recorded_sid = expected[2]["session_id"]
        assert [published[seq] for seq in range(len(expected))] == [
            {**v, "session_id": str(tx)} if v["session_id"] == recorded_sid else v for v in expected
        ]
    finally:
        runner.close()
        recorder.close()
        clear_retained(endpoints.mqtt_host, endpoints.mqtt_port, f"dp/v1/{district}/{gateway_id}/status")

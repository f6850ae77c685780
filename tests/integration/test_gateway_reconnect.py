"""The network between the gateway and the broker drops: the gateway keeps spooling, reconnects with backoff,
and delivers every reading (the shared broker stays up; a TCP proxy on loopback is what we cut)."""

from __future__ import annotations

from pathlib import Path

from districtpulse.config import Endpoints
from gateway.config import GatewayConfig
from tests.support.gateway_mqtt import GatewayThread, Recorder, check_delivery, clear_retained, spooled_counters
from tests.support.net import TcpProxy as Proxy

CONFIG = """
[gateway]
id = "{gateway}"
district = "{district}"
publish_interval_s = 0.1
heartbeat_interval_s = 60

[mqtt]
host = "127.0.0.1"
port = {port}
keepalive = 5
reconnect_min_s = 0.1
reconnect_max_s = 0.4

[spool]
path = "spool.sqlite"
commit_interval_ms = 50

[[adapter]]
type = "simulated"
count = 4
interval_s = 0.02
ticks = 150
"""


def test_a_dropped_connection_is_restored_and_nothing_is_lost(
    endpoints: Endpoints, tmp_path: Path, unique_district: str
) -> None:
    district, gateway_id = unique_district, f"{unique_district}-gw"
    proxy = Proxy((endpoints.mqtt_host, endpoints.mqtt_port))
    config = GatewayConfig.from_toml(
        CONFIG.format(gateway=gateway_id, district=district, port=proxy.port), base_dir=tmp_path
    )
    recorder = Recorder(endpoints.mqtt_host, endpoints.mqtt_port, f"dp/v1/{district}/{gateway_id}/#")
    runner = GatewayThread(config, exit_when_idle=True)
    try:
        gateway = runner.start()
        recorder.wait_for(lambda: recorder.readings() >= 100, 30, "the first readings")
        proxy.cut()
        recorder.wait_for(
            lambda: any(s.get("reason") == "connection lost" for s in recorder.statuses()), 30, "the Last Will"
        )
        during = recorder.readings()
        recorder.wait_for(lambda: gateway.spool.readings > 0, 30, "readings spooled while cut off")
        proxy.up.set()
        runner.join(60)
        assert gateway.publisher.connections >= 2  # type: ignore[attr-defined]
        assert proxy.accepted >= 2
        next_seq, left, _ = spooled_counters(tmp_path / "spool.sqlite")
        assert left == 0
        assert sum(next_seq.values()) == 4 * 150  # every tick of every device was spooled
        recorder.wait_for(lambda: recorder.readings() >= 600, 30, "600 readings")
        assert during < 600
        report = check_delivery(recorder.snapshot(), next_seq)
        assert report["readings"] == 600
        states = [(s["state"], s.get("reason")) for s in recorder.statuses()]
        assert states.count(("online", None)) >= 2  # announced again after the reconnect
        assert states[-1] == ("offline", "shutdown")
    finally:
        runner.close()
        recorder.close()
        proxy.close()
        clear_retained(endpoints.mqtt_host, endpoints.mqtt_port, f"dp/v1/{district}/{gateway_id}/status")

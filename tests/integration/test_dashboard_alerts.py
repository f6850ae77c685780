"""Alerts end to end on the real services: readings in InfluxDB, gateway statuses retained on Mosquitto,
rejections in a quarantine file; the running dashboard raises exactly the expected alerts, publishes them on
its MQTT topic and to a webhook, exports them on /metrics, and resolves one when its cause goes away."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from dashboard import DashboardConfig
from devices.topics import readings_topic, status_topic
from districtpulse.config import Endpoints
from gateway import BrokerConfig, Publisher
from storage.quarantine import Quarantine, QuarantineEntry
from tests.support.server_threads import DashboardThread

REGISTRY = """
[[district]]
id = "{d}"
  [[district.building]]
  id = "{d}-b1"
  floor_area_m2 = 1000
    [[district.building.gateway]]
    id = "{d}-gw1"
      [[district.building.gateway.device]]
      id = "{d}-a"
      kind = "electricity_meter"
      commissioned = 2024-01-01T00:00:00Z
      [[district.building.gateway.device]]
      id = "{d}-b"
      kind = "electricity_meter"
      commissioned = 2024-01-01T00:00:00Z
    [[district.building.gateway]]
    id = "{d}-gw2"
      [[district.building.gateway.device]]
      id = "{d}-c"
      kind = "building_sensor"
      commissioned = 2024-01-01T00:00:00Z
"""


class Hook(BaseHTTPRequestHandler):
    received: queue.Queue[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.put(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def em_line(d: str, device: str, ts: int, kwh: float, seq: int = 1) -> str:
    return (
        f"electricity,district={d},building={d}-b1,device={device} "
        f"energy_import={kwh},energy_export=0.0,power=1500.0,voltage=230.0,seq={seq}i {ts}"
    )


def collect(events: queue.Queue[dict[str, Any]], n: int, timeout: float) -> list[dict[str, Any]]:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        try:
            out.append(events.get(timeout=0.2))
        except queue.Empty:
            continue
    return out


def test_alerts_on_the_real_services(endpoints: Endpoints, tmp_path: Path, unique_district: str) -> None:
    d = unique_district
    database = f"test_{d}"
    registry_path = tmp_path / "registry.toml"
    registry_path.write_text(REGISTRY.format(d=d))
    alert_topic = f"dp-test-alerts/{d}"
    now = int(time.time() * 1000)

    influx = httpx.Client(base_url=endpoints.influx_url, timeout=30)
    influx.post("/query", data={"q": f'CREATE DATABASE "{database}"'}).raise_for_status()
    lines = [em_line(d, f"{d}-a", now - i * 1000, 100.0 + i, seq=10 - i) for i in range(10)]
    lines.append(em_line(d, f"{d}-b", now - 600_000, 50.0))  # ten minutes ago: silent
    lines += [
        f"indoor,district={d},building={d}-b1,device={d}-c temperature=21.0,seq={i}i {now - i * 1000}"
        for i in range(10)
    ]
    influx.post("/write", params={"db": database, "precision": "ms"}, content="\n".join(lines)).raise_for_status()

    quarantine = Quarantine(tmp_path / "quarantine.sqlite")
    topic_b = readings_topic(d, f"{d}-gw1", f"{d}-b", "electricity_meter")
    quarantine.add(
        QuarantineEntry(topic_b, f"{d}-b", "out_of_range", "power", i, 1, (), f"p{i}".encode(), now) for i in range(3)
    )
    quarantine.close()

    statuses = Publisher(BrokerConfig(endpoints.mqtt_host, endpoints.mqtt_port, client_id=f"st-{d}"))
    statuses.connect(10)
    gw1 = {
        "v": 1,
        "state": "online",
        "ts": now,
        "version": "0.1.0",
        "clock": {"sync": "unsynchronised", "source": "adjtimex"},
        "spool": {"readings": 1800, "oldest_age_s": 2000.0},
    }
    statuses.publish(status_topic(d, f"{d}-gw1"), json.dumps(gw1).encode(), retain=True)
    statuses.publish(status_topic(d, f"{d}-gw2"), b'{"v":1,"state":"offline","reason":"connection lost"}', retain=True)
    assert statuses.wait_acked(10)

    mqtt_events: queue.Queue[dict[str, Any]] = queue.Queue()
    listener = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"listen-{d}")
    listener.on_message = lambda _c, _u, msg: mqtt_events.put(json.loads(msg.payload))
    subscribed = threading.Event()
    listener.on_subscribe = lambda *_a: subscribed.set()
    listener.connect(endpoints.mqtt_host, endpoints.mqtt_port)
    listener.loop_start()
    listener.subscribe(alert_topic, qos=1)
    assert subscribed.wait(10)

    hook_events: queue.Queue[dict[str, Any]] = queue.Queue()
    handler = type("H", (Hook,), {"received": hook_events})
    hook = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=hook.serve_forever, daemon=True).start()

    config = DashboardConfig.from_mapping(
        {
            "dashboard": {
                "registry": str(registry_path),
                "quarantine": str(tmp_path / "quarantine.sqlite"),
                "refresh_s": 0.5,
                "reading_interval_s": 60,
            },
            "influx": {"url": endpoints.influx_url, "database": database},
            "mqtt": {
                "host": endpoints.mqtt_host,
                "port": endpoints.mqtt_port,
                "client_id": f"dash-{uuid.uuid4().hex[:6]}",
            },
            "auth": {"user": [{"name": "olga", "role": "operator", "password": "operator-pass"}]},
            "alerts": {
                "mqtt_topic": alert_topic,
                "webhook_url": f"http://127.0.0.1:{hook.server_address[1]}/alerts",
                "rule": [
                    {"kind": "device_silent", "intervals": 3, "severity": "critical"},
                    {"kind": "gateway_offline", "severity": "critical"},
                    {"kind": "spool_older_than", "seconds": 900},
                    {"kind": "quarantine_rate_above", "percent": 5, "window_s": 3600},
                    {"kind": "clock_unsynced"},
                ],
            },
        }
    )
    dashboard = DashboardThread(config)
    expected = {
        ("device_silent", f"{d}-b"),
        ("gateway_offline", f"{d}-gw2"),
        ("spool_older_than", f"{d}-gw1"),
        ("clock_unsynced", f"{d}-gw1"),
        ("quarantine_rate_above", d),
    }
    try:
        dashboard.start()
        raised = collect(mqtt_events, len(expected), 15)
        assert {(e["rule"], e["subject"]) for e in raised} == expected
        assert all(e["event"] == "raised" and e["district"] == d for e in raised)
        by_rule = {e["rule"]: e for e in raised}
        assert by_rule["quarantine_rate_above"]["value"] == 100 * 3 / (10 + 1 + 10 + 3)  # a, b, c stored in the hour
        assert by_rule["gateway_offline"]["message"] == f"gateway {d}-gw2 offline: connection lost"
        hooked = collect(hook_events, len(expected), 10)
        assert sorted(json.dumps(e, sort_keys=True) for e in hooked) == sorted(
            json.dumps(e, sort_keys=True) for e in raised
        )

        metrics = httpx.get(f"{dashboard.url}/metrics").text
        active = {
            line
            for line in metrics.splitlines()
            if line.startswith("districtpulse_alert_active{") and f'district="{d}"' in line
        }
        assert len(active) == len(expected)
        assert 'districtpulse_alerts_active{severity="critical"} 2.0' in metrics
        assert f'districtpulse_gateway_spool_readings{{district="{d}",gateway="{d}-gw1"}} 1800.0' in metrics

        # Device b reports again (written as ingest stores it): its alert resolves at the next refresh.
        fresh = em_line(d, f"{d}-b", int(time.time() * 1000), 51.0, seq=2)
        influx.post("/write", params={"db": database, "precision": "ms"}, content=fresh).raise_for_status()
        (resolved,) = collect(mqtt_events, 1, 10)
        assert (resolved["event"], resolved["rule"], resolved["subject"]) == ("resolved", "device_silent", f"{d}-b")
        assert mqtt_events.empty()
    finally:
        dashboard.stop()
        hook.shutdown()
        hook.server_close()
        listener.loop_stop()
        listener.disconnect()
        for gw in (f"{d}-gw1", f"{d}-gw2"):
            statuses.publish(status_topic(d, gw), b"", retain=True)
        statuses.wait_acked(10)
        statuses.close()
        influx.post("/query", data={"q": f'DROP DATABASE "{database}"'})
        influx.close()

"""A hostile retained gateway status on the real Mosquitto (`"ts": Infinity`, as JSON's NaN extensions allow)
must not break the dashboard: before the strict status decoder, every refresh failed on it (OverflowError in
the gateway view), and with the refreshes the alert evaluation. Now that gateway reads as `unknown`, the
other gateway is still shown, refreshes keep succeeding, and a good status replaces the bad one."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import httpx

from dashboard import DashboardConfig
from devices.topics import status_topic
from districtpulse.config import Endpoints
from gateway import BrokerConfig, Publisher
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
    [[district.building.gateway]]
    id = "{d}-gw2"
      [[district.building.gateway.device]]
      id = "{d}-b"
      kind = "electricity_meter"
"""


def _refreshes(metrics: str, outcome: str) -> float:
    match = re.search(rf'^districtpulse_dashboard_refreshes_total{{outcome="{outcome}"}} (\S+)$', metrics, re.M)
    assert match, metrics[:500]
    return float(match.group(1))


def _states(metrics: str, d: str) -> dict[str, str]:
    found = re.findall(rf'^districtpulse_gateway_up{{district="{d}",gateway="([^"]+)",state="([^"]+)"}}', metrics, re.M)
    return dict(found)


def _wait(dashboard: DashboardThread, check: object, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        metrics = httpx.get(f"{dashboard.url}/metrics", timeout=5).text
        if check(metrics):  # type: ignore[operator]
            return metrics
        if time.monotonic() > deadline:
            raise AssertionError(metrics[-2000:])
        time.sleep(0.2)


def test_a_retained_status_with_infinity_does_not_break_the_dashboard(
    endpoints: Endpoints, tmp_path: Path, unique_district: str
) -> None:
    d = unique_district
    registry = tmp_path / "registry.toml"
    registry.write_text(REGISTRY.format(d=d))
    httpx.post(f"{endpoints.influx_url}/query", data={"q": f'CREATE DATABASE "test_{d}"'}).raise_for_status()
    statuses = Publisher(BrokerConfig(endpoints.mqtt_host, endpoints.mqtt_port, client_id=f"st-{d}"))
    statuses.connect(10)
    now = int(time.time() * 1000)
    hostile = b'{"v":1,"state":"online","ts":Infinity,"spool":{"readings":1e400}}'
    statuses.publish(status_topic(d, f"{d}-gw1"), hostile, retain=True)
    statuses.publish(status_topic(d, f"{d}-gw2"), f'{{"v":1,"state":"online","ts":{now}}}'.encode(), retain=True)
    assert statuses.wait_acked(10)
    config = DashboardConfig.from_mapping(
        {
            "dashboard": {"registry": str(registry), "quarantine": str(tmp_path / "q.sqlite"), "refresh_s": 0.3},
            "influx": {"url": endpoints.influx_url, "database": f"test_{d}"},
            "auth": {"user": [{"name": "olga", "role": "operator", "password": "operator-pass"}]},
            "mqtt": {
                "host": endpoints.mqtt_host,
                "port": endpoints.mqtt_port,
                "client_id": f"dash-{uuid.uuid4().hex[:6]}",
            },
        }
    )
    dashboard = DashboardThread(config)
    try:
        dashboard.start()  # healthy: the first refresh produced a snapshot
        first = _wait(dashboard, lambda m: _refreshes(m, "ok") >= 3)
        assert _refreshes(first, "error") == 0
        assert _states(first, d) == {f"{d}-gw1": "unknown", f"{d}-gw2": "online"}
        # The gateway sends a good heartbeat: it replaces the hostile one.
        good = f'{{"v":1,"state":"online","ts":{int(time.time() * 1000)},"spool":{{"readings":7}}}}'
        statuses.publish(status_topic(d, f"{d}-gw1"), good.encode(), retain=True)
        after = _wait(dashboard, lambda m: _states(m, d).get(f"{d}-gw1") == "online")
        assert f'districtpulse_gateway_spool_readings{{district="{d}",gateway="{d}-gw1"}} 7.0' in after
        assert _refreshes(after, "error") == 0
    finally:
        dashboard.stop()
        for gw in ("gw1", "gw2"):
            statuses.publish(status_topic(d, f"{d}-{gw}"), b"", retain=True)
        statuses.wait_acked(10)
        statuses.close()

"""The dashboard in a real browser (Debian's headless Chromium through selenium and chromedriver).

The whole live chain runs: a district publishes one reading per second per device with current timestamps
through `gateway.Publisher`, the real ingest pipeline stores it in a database of its own, the dashboard
serves it. The browser logs in, sees every device reporting, sees the live power change, then one device
stops publishing and must show as silent (and raise its alert) within the configured time. A screenshot is
saved in the test's tmp dir and copied to docs/screenshots/dashboard.png.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from dashboard import DashboardConfig
from devices import Registry
from districtpulse.config import Endpoints
from tests.support.browser import chrome
from tests.support.live_district import LiveDistrict, registry_toml
from tests.support.server_threads import DashboardThread, IngestThread

REPO = Path(__file__).resolve().parents[2]
SILENT_AFTER_S = 3.0  # 3 intervals of 1 s
REFRESH_S = 1.0

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    with chrome() as driver:
        yield driver


def wait_until(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Poll `check` until true; return the seconds it took (fail with `what` after `timeout`)."""
    started = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - started
        except (StaleElementReferenceException, WebDriverException):
            pass  # the section was swapped by a live update between find and read: look again
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        time.sleep(0.1)


def test_live_dashboard_in_a_real_browser(
    endpoints: Endpoints, tmp_path: Path, unique_district: str, browser: webdriver.Chrome
) -> None:
    district = unique_district
    database = f"test_{district}"
    commissioned = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    registry_path = tmp_path / "registry.toml"
    registry_path.write_text(registry_toml(district, commissioned))
    registry = Registry.load(registry_path)
    quarantine = tmp_path / "quarantine.sqlite"
    config = DashboardConfig.from_mapping(
        {
            "dashboard": {
                "registry": str(registry_path),
                "quarantine": str(quarantine),
                "title": "DistrictPulse",
                "refresh_s": REFRESH_S,
                "energy_refresh_s": 5,
                "reading_interval_s": 1,
                "fresh_intervals": SILENT_AFTER_S,
                "heartbeat_interval_s": 5,
                "chart_window_s": 900,
                "chart_step_s": 15,
            },
            "influx": {"url": endpoints.influx_url, "database": database},
            "mqtt": {"host": endpoints.mqtt_host, "port": endpoints.mqtt_port},
            "auth": {
                "user": [
                    {"name": "operator", "role": "operator", "password": "correct horse battery"},
                    {"name": "guest", "role": "viewer", "password": "viewer password"},
                ]
            },
            "alerts": {
                "rule": [
                    {"kind": "device_silent", "intervals": SILENT_AFTER_S, "severity": "critical"},
                    {"kind": "gateway_offline", "severity": "critical"},
                    {"kind": "completeness_below", "percent": 90, "window_s": 60},
                    {"kind": "quarantine_rate_above", "percent": 5, "window_s": 60},
                    {"kind": "clock_unsynced"},
                ]
            },
        }
    )
    ingest = IngestThread(
        registry_path, quarantine, endpoints.mqtt_host, endpoints.mqtt_port, endpoints.influx_url, database
    )
    live = LiveDistrict(registry, endpoints.mqtt_host, endpoints.mqtt_port)
    dashboard = DashboardThread(config)
    stopped = f"{district}-bs2"
    try:
        ingest.start()
        live.start(backfill_s=900)
        # Two readings a sensor can never have sent: ingest quarantines them with their reasons.
        now_ms = int(time.time() * 1000)
        live.send_raw(f"{district}-bs1", [(now_ms - 90_000, {"temperature": math.nan, "relative_humidity": 40.0})])
        live.send_raw(f"{district}-bs2", [(now_ms - 80_000, {"temperature": 21.0, "relative_humidity": 140.0})])
        time.sleep(2)  # the first live readings are in
        dashboard.start()

        browser.get(f"{dashboard.url}/district/{district}")
        assert "/login" in browser.current_url  # no session: the login form first
        browser.find_element(By.ID, "user").send_keys("operator")
        browser.find_element(By.ID, "password").send_keys("correct horse battery")
        browser.find_element(By.ID, "login").click()
        wait_until("the overview after login", lambda: browser.current_url.endswith(f"/district/{district}"), 10)
        assert "operator · operator" in browser.find_element(By.CLASS_NAME, "user").text

        def text(css: str) -> str:
            return str(browser.find_element(By.CSS_SELECTOR, css).text)

        wait_until("the stream to be live", lambda: text("#live-text") == "live", 10)
        n = len(registry)
        wait_until("every device reporting", lambda: text("#st-devices .num").replace("\u2009", "") == f"{n}/{n}", 15)
        assert "every device is reporting" in text("#st-devices .sub")

        first = text("#kpi-power .num")
        first_at = browser.execute_script("return document.body.dataset.updated")
        wait_until(
            "live power to change",
            lambda: (
                text("#kpi-power .num") != first
                and browser.execute_script("return document.body.dataset.updated") != first_at
            ),
            10,
        )
        assert float(text("#kpi-power .num").replace("\u202f", "")) > 50  # kW: 2 main meters + PV, tens of kW each

        quarantined = {
            row.get_attribute("data-reason"): row.find_elements(By.TAG_NAME, "td")[1].text
            for row in browser.find_elements(By.CSS_SELECTOR, "#quality tr[data-reason]")
        }
        assert quarantined == {"non_finite": "1", "out_of_range": "1"}

        live.stop_device(stopped)
        stopped_at = time.monotonic()
        row = f'#health tr[data-device="{stopped}"][data-state="silent"]'
        took = wait_until(
            f"{stopped} shown as silent", lambda: bool(browser.find_elements(By.CSS_SELECTOR, row)), SILENT_AFTER_S + 8
        )
        # Silent means "no reading for 3 intervals": never before that, at most a refresh and a render later.
        assert time.monotonic() - stopped_at >= SILENT_AFTER_S - 1.0, took
        wait_until(
            "its alert",
            lambda: bool(
                browser.find_elements(
                    By.CSS_SELECTOR, f'#alerts tr[data-alert="device_silent"][data-subject="{stopped}"]'
                )
            ),
            5,
        )
        assert text("#st-devices .num").replace("\u2009", "") == f"{n - 1}/{n}"
        assert "st-devices" in browser.find_element(By.CSS_SELECTOR, ".tile.bad").get_attribute("id")

        assert browser.find_elements(By.CSS_SELECTOR, "#chart-plot canvas"), "the power chart was not drawn"
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors  # no script error, no failed request for a static file
        time.sleep(1.5)  # one more refresh so the flash of changed tiles has faded
        shot = tmp_path / "dashboard.png"
        height = browser.execute_script("return document.querySelector('main').getBoundingClientRect().bottom + 24")
        browser.set_window_size(1440, min(max(int(height) + 140, 900), 2600))  # + the window's own chrome
        time.sleep(0.5)
        assert browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 20_000
        target = REPO / "docs" / "screenshots" / "dashboard.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
    finally:
        dashboard.stop()
        live.close()
        ingest.stop()
        httpx.post(f"{endpoints.influx_url}/query", data={"q": f'DROP DATABASE "{database}"'})

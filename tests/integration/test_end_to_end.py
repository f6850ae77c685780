"""The real chain: gateway publisher -> Mosquitto -> ingest -> InfluxDB, with exact counts and values.

Each test owns a fresh InfluxDB database, a district id of its own (so its topics are its own) and a
unique MQTT client id whose session is removed at the end.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from devices import Registry, encode_batch, readings_topic, units_for
from districtpulse.config import Endpoints
from gateway import BrokerConfig, Publisher
from ingest import Quarantine
from tests.support.ingest import RunningIngest, running_ingest

T0 = 1_790_000_000_000  # 2026-09-21T14:13:20Z: in the past, after commissioning


class Harness(RunningIngest):
    def publish(self, messages: list[tuple[str, bytes]]) -> None:
        broker = BrokerConfig(
            self.endpoints.mqtt_host, self.endpoints.mqtt_port, client_id=f"pub-{uuid.uuid4().hex[:8]}"
        )
        with Publisher(broker) as pub:
            for topic, payload in messages:
                pub.publish(topic, payload)
            assert pub.wait_acked(30)

    async def wait_for(self, readings: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.stats.readings_stored + sum(self.stats.readings_quarantined.values()) < readings:
            assert time.monotonic() < deadline, f"timed out: {self.stats.as_dict()}"
            await asyncio.sleep(0.05)

    def points(self, measurement: str) -> dict[tuple[str, int], dict[str, Any]]:
        """(device, ts) -> fields, for every point of a measurement."""
        out = {}
        for s in self.query(f'SELECT * FROM "{measurement}"'):
            cols = s["columns"]
            for row in s["values"]:
                doc = dict(zip(cols, row, strict=True))
                key = (doc.pop("device"), doc.pop("time"))
                out[key] = {k: v for k, v in doc.items() if v is not None}
        return out


@pytest.fixture
async def harness(
    endpoints: Endpoints,
    tmp_path: Path,
    make_registry: Callable[[str], Registry],
    registry_text: Callable[[str], str],
    unique_district: str,
) -> AsyncIterator[Harness]:
    registry = make_registry(unique_district)
    async with running_ingest(Harness, endpoints, registry, registry_text(unique_district), tmp_path) as harness:
        yield harness


def em_readings(n: int, start: int = T0) -> list[tuple[int, dict[str, float | str]]]:
    return [
        (
            start + i * 60_000,
            {
                "energy_import": 1000.0 + i * 0.25,
                "energy_export": 0.0,
                "power": 900.0 + i,
                "voltage": 230.0 + (i % 3) * 0.5,
            },
        )
        for i in range(n)
    ]


def bs_readings(n: int, start: int = T0) -> list[tuple[int, dict[str, float | str]]]:
    return [
        (
            start + i * 60_000,
            {"temperature": 21.0 + i / 100, "relative_humidity": 40.0, "co2": 450.0 + i, "occupancy": float(i % 4)},
        )
        for i in range(n)
    ]


def ev_readings(n: int, start: int = T0) -> list[tuple[int, dict[str, float | str]]]:
    return [
        (
            start + i * 60_000,
            {"connector_status": "Charging", "session_id": 'tx-"7"', "session_energy": i * 0.18, "power": 11000.0},
        )
        for i in range(n)
    ]


def batches(
    district: str, gateway: str, device: str, kind: str, readings: list[tuple[int, dict[str, float | str]]], size: int
) -> list[tuple[str, bytes]]:
    topic = readings_topic(district, gateway, device, kind)
    return [
        (topic, encode_batch(device, i, units_for(kind), readings[i : i + size])) for i in range(0, len(readings), size)
    ]


def known_set(d: str) -> tuple[list[tuple[str, bytes]], dict[str, list[tuple[int, dict[str, float | str]]]]]:
    em, bs, ev = em_readings(45), bs_readings(30), ev_readings(12)
    messages = (
        batches(d, f"{d}-gw1", f"{d}-em", "electricity_meter", em, 15)
        + batches(d, f"{d}-gw1", f"{d}-bs", "building_sensor", bs, 10)
        + batches(d, f"{d}-gw1", f"{d}-ev", "ev_charger", ev, 4)
    )
    return messages, {"electricity": em, "indoor": bs, "ev_charging": ev}


async def test_exactly_the_published_readings_are_stored_with_their_values(harness: Harness) -> None:
    d = harness.district
    messages, expected = known_set(d)
    await asyncio.to_thread(harness.publish, messages)
    await harness.wait_for(45 + 30 + 12)

    assert harness.stats.readings_stored == 87
    assert sum(harness.stats.readings_quarantined.values()) == 0
    device = {"electricity": f"{d}-em", "indoor": f"{d}-bs", "ev_charging": f"{d}-ev"}
    for measurement, readings in expected.items():
        stored = harness.points(measurement)
        want = {(device[measurement], ts): values for ts, values in readings}
        assert set(stored) == set(want), measurement
        for key, values in want.items():
            fields = stored[key]
            assert fields.pop("seq") == readings.index((key[1], values))  # seq = position in the device's stream
            assert fields.pop("district") == d and fields.pop("building") == f"{d}-b1"
            assert fields == values, key


async def test_redelivered_batches_are_stored_once(harness: Harness) -> None:
    messages, _ = known_set(harness.district)
    await asyncio.to_thread(harness.publish, messages)
    await asyncio.to_thread(harness.publish, messages)  # the whole stream again: as after a gateway crash
    await harness.wait_for(2 * 87)
    assert harness.stats.readings_stored == 2 * 87
    counts = {s["name"]: s["values"][0][1] for s in harness.query('SELECT count("seq") FROM /.*/')}
    assert counts == {"electricity": 45, "indoor": 30, "ev_charging": 12}


async def test_bad_input_is_quarantined_with_reasons_and_the_rest_is_stored(harness: Harness) -> None:
    d = harness.district
    good = batches(d, f"{d}-gw1", f"{d}-em", "electricity_meter", em_readings(25), 1)  # 25 messages
    nan_batch = encode_batch(
        f"{d}-bs",
        0,
        units_for("building_sensor"),
        [
            (T0, {"temperature": 21.0, "relative_humidity": 40.0, "co2": 450.0, "occupancy": 1.0}),
            (T0 + 60_000, {"temperature": math.nan, "relative_humidity": 40.0, "co2": 450.0, "occupancy": 1.0}),
        ],
    )
    bad = [
        (readings_topic(d, f"{d}-gw1", f"{d}-em", "electricity_meter"), b"{not json"),
        (readings_topic(d, f"{d}-gw1", f"{d}-bs", "building_sensor"), nan_batch),
        (readings_topic(d, f"{d}-gw1", "nobody", "building_sensor"), nan_batch.replace(f"{d}-bs".encode(), b"nobody")),
    ]
    await asyncio.to_thread(harness.publish, good[:10] + bad + good[10:])
    await harness.wait_for(25 + 1 + 1 + 1 + 2)

    assert harness.stats.readings_stored == 26
    assert dict(harness.stats.readings_quarantined) == {"decode_error": 1, "non_finite": 1, "unknown_device": 2}
    counts = {s["name"]: s["values"][0][1] for s in harness.query('SELECT count("seq") FROM /.*/')}
    assert counts == {"electricity": 25, "indoor": 1}
    quarantine = Quarantine(harness.quarantine_path)
    try:
        assert quarantine.count_readings() == {"decode_error": 1, "non_finite": 1, "unknown_device": 2}
    finally:
        quarantine.close()


def test_demo_command_accounts_for_every_reading(endpoints: Endpoints, unique_district: str) -> None:
    """`districtpulse demo` end to end in its own process and database: the line the README promises."""
    env = os.environ | {"DP_INFLUX_DB": f"demo_{unique_district}", "DP_LOG_LEVEL": "WARNING"}
    proc = subprocess.run(
        [sys.executable, "-m", "districtpulse", "demo", "--no-install", "--no-dashboard"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    try:
        last = proc.stdout.strip().splitlines()[-1]
        match = re.fullmatch(r"demo: published=(\d+) stored=(\d+) quarantined=(\d+) confirmed=(\d+)", last)
        assert match, proc.stdout + proc.stderr
        published, stored, quarantined, confirmed = map(int, match.groups())
        assert proc.returncode == 0
        assert published == 40 * 1440  # 40 devices, one reading a minute for a 24-hour day
        assert quarantined == 5  # the simulator's deliberate NaN and out-of-range readings
        assert stored == published - quarantined
        assert confirmed == published  # every reading left its gateway's spool by ingest's confirmation
        assert "3 gateways published 57600 readings" in proc.stdout
        table = proc.stdout
        assert "Harbour Block A" in table and "Canal Office" in table
        savings = re.search(r"demo: savings to date ([\d,]+) kWh, CO2 avoided ([\d,]+) kg", proc.stdout)
        assert savings, proc.stdout  # the demo's baseline year was modelled and its savings written
        assert float(savings.group(1).replace(",", "")) > 0
    finally:
        httpx.post(f"{endpoints.influx_url}/query", data={"q": f'DROP DATABASE "demo_{unique_district}"'})
        json.dumps(None)

"""A third-party client that knows only the published contract (docs/contract/asyncapi.yaml): `mosquitto_pub`
sends a readings batch written by hand from the document, `mosquitto_sub` waits on the gateway's confirmation
topic; the readings are stored and the confirmation names exactly their sequence range."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from devices import Registry
from districtpulse.config import Endpoints
from tests.support.ingest import RunningIngest, running_ingest

T0 = 1_790_000_000_000


async def test_mosquitto_pub_following_the_document_gets_its_readings_stored_and_confirmed(
    endpoints: Endpoints,
    unique_district: str,
    make_registry: Callable[[str], Registry],
    registry_text: Callable[[str], str],
    tmp_path: Path,
) -> None:
    d = unique_district
    topic = f"dp/v1/{d}/{d}-gw1/{d}-em/electricity_meter"
    confirm = f"dp/v1/{d}/{d}-gw1/confirm"
    payload = (
        f'{{"v": 1, "device": "{d}-em", "seq": [40, 42],'
        ' "units": {"energy_import": "kWh", "power": "W"},'
        ' "readings": ['
        f'{{"ts": {T0}, "values": {{"energy_import": 81234.5, "power": 1830.0}}}},'
        f'{{"ts": {T0 + 60_000}, "values": {{"energy_import": 81234.6, "power": 1790.0}}}},'
        f'{{"ts": {T0 + 120_000}, "values": {{"energy_import": 81234.7, "power": 1810.0}}}}]}}'
    )
    port = str(endpoints.mqtt_port)
    registry = make_registry(d)
    async with running_ingest(RunningIngest, endpoints, registry, registry_text(d), tmp_path) as ingest:
        # A persistent session (-c, a fixed id, -x its expiry), made first (-E: exit once subscribed), keeps the
        # confirmation for the second mosquitto_sub, however soon ingest sends it.
        sub = ["mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-V", "mqttv5", "-q", "1", "-t", confirm]
        session = ["-c", "-i", f"contract-{d}", "-x", "60"]
        pub = ["mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-V", "mqttv5", "-q", "1", "-t", topic, "-m", payload]
        await asyncio.to_thread(subprocess.run, [*sub, *session, "-E"], check=True, timeout=30)
        try:
            await asyncio.to_thread(subprocess.run, pub, check=True, timeout=30)
            received = await asyncio.to_thread(
                subprocess.run, [*sub, *session, "-C", "1", "-W", "30"], capture_output=True, text=True, timeout=40
            )
        finally:  # forget the session: connect with a clean start, subscribe, leave
            await asyncio.to_thread(subprocess.run, [*sub, "-i", f"contract-{d}", "-E"], check=False, timeout=30)
        out = received.stdout
        document = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
        assert document["v"] == 1 and document["by"] == f"ingest-{d}"
        assert document["confirmed"] == {f"{d}-em": [[40, 42]]}
        deadline = time.monotonic() + 10
        while not (series := ingest.query('SELECT "seq", "energy_import" FROM "electricity"')):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert series[0]["values"] == [[T0, 40, 81234.5], [T0 + 60_000, 41, 81234.6], [T0 + 120_000, 42, 81234.7]]

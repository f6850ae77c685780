"""Chaos, short: one real gateway and one real ingest process on a private Mosquitto and InfluxDB, while ingest is
killed (kill -9), the gateway is killed, InfluxDB is frozen (SIGSTOP) and killed, and the broker is killed, one
after another mid-stream; then a last gateway life delivers everything and exits.

The truth is the gateway's spool (every reading it ever committed has a sequence number; the simulated devices'
values are a pure function of device and time): at the end every (device, seq) is in InfluxDB exactly once
(0 missing, 0 duplicated), the electricity meter's registers are the values the device gave at the time of
the reading (0 wrong), the quarantine is empty (the simulation has no invalid reading) and the spool is empty.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from devices.kinds import DeviceKind
from districtpulse.config import Endpoints
from districtpulse.services import status
from gateway.adapters.base import DeviceRef
from gateway.adapters.simulated import values_fn
from tests.support.delivery import check_all_stored, gateway_process, last_status
from tests.support.ingest import ingest_process
from tests.support.registries import small_registry_toml, unique
from tests.support.services import influx_query, start_services, stop_service


def _pid(endpoints: Endpoints, name: str) -> int:
    pid = next(s.pid for s in status(endpoints) if s.name == name)
    assert pid is not None
    return pid


def test_kills_and_freezes_of_every_part_lose_nothing_and_duplicate_nothing(private: Endpoints, tmp_path: Path) -> None:
    district = unique("ch")
    (tmp_path / "registry.toml").write_text(small_registry_toml(district))
    database = f"db_{district}"
    client = f"ingest-{district}"

    def start_ingest() -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = ingest_process(private, tmp_path, district, database, client)
        return proc

    ingest = start_ingest()
    gateway = gateway_process(tmp_path, private, district, 0)  # ticks = 0: runs until killed

    def kill_ingest() -> None:
        nonlocal ingest
        ingest.send_signal(signal.SIGKILL)
        ingest.wait(30)
        time.sleep(1.0)  # the gateway keeps publishing: the broker queues for the dead consumer's session
        ingest = start_ingest()

    def kill_gateway() -> None:
        nonlocal gateway
        gateway.send_signal(signal.SIGKILL)
        gateway.wait(30)
        gateway = gateway_process(tmp_path, private, district, 0)

    def freeze_influxdb() -> None:
        pid = _pid(private, "influxdb")
        os.kill(pid, signal.SIGSTOP)  # writes hang: ingest holds, the gateway's window fills, nothing is lost
        time.sleep(3.0)
        os.kill(pid, signal.SIGCONT)

    def kill_broker() -> None:
        stop_service(private, "mosquitto", signal.SIGKILL)
        time.sleep(0.5)
        start_services(private)

    def kill_influxdb() -> None:
        stop_service(private, "influxdb", signal.SIGKILL)
        time.sleep(0.5)
        start_services(private)

    faults: list[Callable[[], None]] = [kill_ingest, kill_gateway, freeze_influxdb, kill_broker, kill_influxdb]
    faults += [kill_broker, kill_ingest, kill_gateway]
    try:
        for fault in faults:
            time.sleep(1.5)
            assert gateway.poll() is None, last_status(tmp_path)
            fault()
        time.sleep(1.0)
        gateway.send_signal(signal.SIGKILL)
        gateway.wait(30)
        gateway = gateway_process(tmp_path, private, district, 50, "--exit-when-idle")  # the last life
        assert gateway.wait(120) == 0, last_status(tmp_path)
    finally:
        for proc in (gateway, ingest):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)

    total = check_all_stored(tmp_path, private, database)  # 0 missing, 0 duplicated, spool empty
    assert total > 1500  # the lives before the last one spooled readings too (3 devices, 100 ticks/s)
    meter = DeviceRef(f"{district}-em", DeviceKind.ELECTRICITY_METER)
    expected = values_fn(meter, 0)
    (series,) = influx_query(
        private, database, f'SELECT "energy_import" FROM "electricity" WHERE "device" = \'{meter.id}\''
    )
    # The simulated adapter computes a tick's values at the tick's time and the spool stamps each reading as it
    # is appended (up to a few ms later): a right value is the device's value at a time just before its stamp.
    wrong = [
        (ts, value)
        for ts, value in series["values"]
        if all(value != expected(ts - lag)["energy_import"] for lag in range(200))
    ]
    assert wrong == [] and len(series["values"]) > 500
    with sqlite3.connect(tmp_path / f"quarantine-{client}.sqlite") as db:
        assert db.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0

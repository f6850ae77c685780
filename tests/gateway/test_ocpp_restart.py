"""OCPP transactions that survive a gateway restart: the real `ocpp` ChargePoint client on loopback, the real
server, a real spool behind the gateway's own sink, and a second gateway on the same spool file.

A session starts on gateway 1; the spool commits; gateway 1 goes away, either by its normal stop (thread
joined, spool closed) or hard (nothing of it runs again: its spool is never closed nor committed again, as
after a kill); gateway 2 starts on the same file with its clock an hour back (a Pi without RTC), the charger
reconnects, and the session's meter values and stop must be exactly the readings they would have been
without the restart, and a new transaction's id the last one's + 1 (no reuse)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters import AdapterContext, build_adapter, parse_adapter_config
from gateway.adapters.ocpp import OcppAdapter
from gateway.adapters.ocpp.central import TX_EPOCH_S
from gateway.clock import Clock
from gateway.service import _Sink
from gateway.spool import ReadingClass, Spool

ocpp_v16 = pytest.importorskip("ocpp.v16")
websockets_client = pytest.importorskip("websockets.asyncio.client")
from ocpp.v16 import ChargePoint, call  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

T0 = 1_800_000_000_000
KEY = "ocpp"  # the adapter's cursor key
TAG = "RFID-04A2B9C1"
E, R = ReadingClass.EVENT, ReadingClass.REGISTER


def stepping(start_ms: int) -> Callable[[], int]:
    """A wall clock (ns) that steps one second per call, from `start_ms`."""
    steps = itertools.count()
    return lambda: (start_ms + 1000 * next(steps)) * 1_000_000


class Gateway:
    """One gateway's OCPP side: a spool, the gateway's sink over it and the adapter's server thread."""

    def __init__(self, path: Path, start_ms: int) -> None:
        self.clock = Clock(probe=lambda: ("synchronised", "test"), wall_ns=stepping(start_ms))
        self.spool = Spool(path, now_ms=self.clock.now_ms, synced=lambda: True)
        config = parse_adapter_config(
            {"type": "ocpp", "host": "127.0.0.1", "port": 0, "charge_points": {"CP-1": {"1": "ev-1", "2": "ev-2"}}}
        )
        adapter = build_adapter(config, AdapterContext("gw", "d", (), Path()))
        assert isinstance(adapter, OcppAdapter)
        adapter.persist = True
        self.adapter = adapter
        self.spool.add_devices((d.id, d.kind) for d in adapter.devices())
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=adapter.run, args=(_Sink(self.spool, self.clock, KEY), self.stop), daemon=True
        )
        self.thread.start()
        assert adapter.ready.wait(10), "the OCPP server did not start"

    @property
    def port(self) -> int:
        assert self.adapter.port is not None
        return self.adapter.port

    def shut(self) -> None:
        """The gateway's normal stop: the adapter's thread ends, the spool commits and closes."""
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.spool.commit()
        self.spool.close()


@asynccontextmanager
async def charger(port: int) -> AsyncIterator[Any]:
    async with websockets_client.connect(f"ws://127.0.0.1:{port}/CP-1", subprotocols=["ocpp1.6"]) as ws:
        cp = ChargePoint("CP-1", ws)
        task = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            task.cancel()
            with pytest.raises((asyncio.CancelledError, ConnectionClosed)):
                await task


def meter(tx: int, wh: str, power_w: str | None = None) -> Any:
    sampled = [{"value": wh, "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]
    if power_w is not None:
        sampled.append({"value": power_w, "measurand": "Power.Active.Import", "unit": "W"})
    return call.MeterValues(
        connector_id=1, transaction_id=tx, meter_value=[{"timestamp": "2027-01-15T08:00:00Z", "sampled_value": sampled}]
    )


def start(connector: int, meter_start: int) -> Any:
    return call.StartTransaction(
        connector_id=connector, id_tag=TAG, meter_start=meter_start, timestamp="2027-01-15T08:00:00Z"
    )


def stop(tx: int, meter_stop: int) -> Any:
    return call.StopTransaction(meter_stop=meter_stop, timestamp="2027-01-15T09:00:00Z", transaction_id=tx, id_tag=TAG)


def status(connector: int, value: str) -> Any:
    return call.StatusNotification(connector_id=connector, error_code="NoError", status=value)


def spooled(path: Path) -> list[tuple[str, dict[str, Any], ReadingClass]]:
    """Every committed reading: (device, values, class), per device in sequence order."""
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT d.id, r.body, r.cls FROM readings r JOIN devices d ON d.idx = r.device ORDER BY d.id, r.seq"
        ).fetchall()
    return [(device, json.loads(body), ReadingClass(cls)) for device, body, cls in rows]


def committed_cursor(path: Path) -> dict[str, Any]:
    with sqlite3.connect(path) as db:
        (value,) = db.execute("SELECT value FROM cursors WHERE key = ?", (KEY,)).fetchone()
    assert TAG not in value and TAG.lower() not in value.lower()
    doc: dict[str, Any] = json.loads(value)
    return doc


@pytest.mark.parametrize("how", ["normal", "hard"])
async def test_a_session_open_across_a_restart_ends_with_exactly_its_readings(
    how: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "spool.sqlite"
    gw1 = Gateway(path, T0)
    gw2: Gateway | None = None
    try:
        async with charger(gw1.port) as cp:
            await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"), suppress=False)
            await cp.call(status(1, "Preparing"), suppress=False)
            tx1 = (await cp.call(start(1, 5000), suppress=False)).transaction_id
            await cp.call(status(1, "Charging"), suppress=False)
            await cp.call(meter(tx1, "5250"), suppress=False)
            tx2 = (await cp.call(start(2, 100), suppress=False)).transaction_id
            await cp.call(stop(tx2, 400), suppress=False)
        assert T0 // 1000 - TX_EPOCH_S <= tx1 < tx2
        gw1.spool.commit()  # the group commit: readings and cursor together
        if how == "normal":
            gw1.shut()
        # Hard: gw1 is dropped as it is, never committed nor closed again; gw2 opens the file beside it.
        saved = committed_cursor(path)
        (*opened, start_ms), *more = saved.pop("open")
        assert (opened, more) == ([tx1, "CP-1", 1, 5000.0], [])
        assert T0 <= start_ms <= committed_start_ms(path)  # the gateway's time of the call, just before its reading
        assert saved == {"v": 1, "last_tx": tx2, "status": [["CP-1", 1, "Charging"]]}

        gw2 = Gateway(path, T0 - 3_600_000)  # its clock an hour back: ids must still not be reused
        async with charger(gw2.port) as cp:
            await cp.call(meter(tx1, "5600", "7000"), suppress=False)
            stopped = await cp.call(stop(tx1, 6000), suppress=False)
            await cp.call(status(1, "Available"), suppress=False)
            tx3 = (await cp.call(start(2, 400), suppress=False)).transaction_id
            await cp.call(stop(tx3, 450), suppress=False)
        assert stopped.id_tag_info["status"] == "Accepted"
        assert tx3 == tx2 + 1
        gw2.shut()
        assert committed_cursor(path) == {"v": 1, "last_tx": tx3, "open": [], "status": [["CP-1", 1, "Available"]]}
    finally:
        for gw in (gw1, gw2):
            if gw is not None and gw.thread.is_alive():
                gw.stop.set()
                gw.thread.join(10)

    s1, s2, s3 = str(tx1), str(tx2), str(tx3)
    # The first reading of each device after the restart is an EVENT whatever it says: the spool does not keep
    # the previous reading's event key across a restart (its rule, not the adapter's), which only keeps more.
    assert spooled(path) == [
        ("ev-1", {"connector_status": "Preparing", "session_id": ""}, E),
        ("ev-1", {"connector_status": "Preparing", "session_id": s1, "session_energy": 0.0}, E),
        ("ev-1", {"connector_status": "Charging", "session_id": s1}, E),
        ("ev-1", {"connector_status": "Charging", "session_id": s1, "session_energy": 0.25}, R),
        # gateway 2: the restored transaction's meter value and stop, relative to its meterStart of 5000 Wh
        ("ev-1", {"connector_status": "Charging", "session_id": s1, "session_energy": 0.6, "power": 7000.0}, E),
        ("ev-1", {"connector_status": "Charging", "session_id": "", "session_energy": 1.0, "power": 0.0}, E),
        ("ev-1", {"connector_status": "Available", "session_id": ""}, E),
        ("ev-2", {"session_id": s2, "session_energy": 0.0}, E),
        ("ev-2", {"session_id": "", "session_energy": 0.3, "power": 0.0}, E),
        ("ev-2", {"session_id": s3, "session_energy": 0.0}, E),
        ("ev-2", {"session_id": "", "session_energy": 0.05, "power": 0.0}, E),
    ]
    client_side = ("ocpp", "websockets.client")  # the test's ChargePoint logs what it sends
    assert not [r for r in caplog.records if r.name not in client_side and TAG in r.getMessage()]
    assert "restored 1 open transaction(s)" in caplog.text


def committed_start_ms(path: Path) -> int:
    """The timestamp of the first transaction's start reading (what the saved start time must be)."""
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT r.ts, r.body FROM readings r JOIN devices d ON d.idx = r.device WHERE d.id = 'ev-1' ORDER BY r.seq"
        ).fetchall()
    starts = [ts for ts, body in rows if json.loads(body).get("session_energy") == 0.0]
    assert len(starts) == 1
    return int(starts[0])

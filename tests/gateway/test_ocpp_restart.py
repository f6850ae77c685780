"""OCPP transactions that survive a gateway restart: the real `ocpp` ChargePoint client on loopback, the real
server, a real spool behind the gateway's own sink, and a second gateway on the same spool file.

A session starts on gateway 1, each call answered once the spool has committed it; gateway 1 goes away,
either by its normal stop (thread joined, spool closed) or hard (nothing of it runs again: its spool is never
closed nor committed again, as after a kill); gateway 2 starts on the same file with its clock an hour back
(a Pi without RTC), the charger reconnects, and the session's meter values and stop must be exactly the
readings they would have been without the restart, and a new transaction's id the last one's + 1 (no reuse)."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from gateway.adapters.ocpp.central import TX_EPOCH_S
from gateway.spool import ReadingClass
from tests.support.ocpp_gateway import (
    TAG,
    OcppGateway,
    boot,
    charger,
    committed_cursor,
    meter,
    spooled,
    start,
    status,
    stop,
)

T0 = 1_800_000_000_000
E, R = ReadingClass.EVENT, ReadingClass.REGISTER


@pytest.mark.parametrize("how", ["normal", "hard"])
async def test_a_session_open_across_a_restart_ends_with_exactly_its_readings(
    how: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "spool.sqlite"
    gw1 = OcppGateway(path, T0)
    gw2: OcppGateway | None = None
    try:
        async with gw1.committing(), charger(gw1.port) as cp:
            await cp.call(boot(), suppress=False)
            await cp.call(status(1, "Preparing"), suppress=False)
            tx1 = (await cp.call(start(1, 5000), suppress=False)).transaction_id
            await cp.call(status(1, "Charging"), suppress=False)
            await cp.call(meter(tx1, "5250"), suppress=False)
            tx2 = (await cp.call(start(2, 100), suppress=False)).transaction_id
            await cp.call(stop(tx2, 400), suppress=False)
        assert T0 // 1000 - TX_EPOCH_S <= tx1 < tx2
        assert gw1.spool.buffered == 0  # every answered call was committed (readings and cursor) before its answer
        if how == "normal":
            gw1.shut()
        # Hard: gw1 is dropped as it is, never committed nor closed again; gw2 opens the file beside it.
        saved = committed_cursor(path)
        (*opened, start_ms), *more = saved.pop("open")
        assert (opened, more) == ([tx1, "CP-1", 1, 5000.0], [])
        assert T0 <= start_ms <= committed_start_ms(path)  # the gateway's time of the call, just before its reading
        assert saved == {"v": 1, "last_tx": tx2, "status": [["CP-1", 1, "Charging"]]}

        gw2 = OcppGateway(path, T0 - 3_600_000)  # its clock an hour back: ids must still not be reused
        async with gw2.committing(), charger(gw2.port) as cp:
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
            if gw is not None:
                gw.abandon()

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

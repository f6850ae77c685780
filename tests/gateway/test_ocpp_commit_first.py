"""Commit first, then answer: a charger that has a CallResult deletes the call and never sends it again, so the
CallResult of a call that made a reading leaves only once the reading is in the spool file.

The real `ocpp` ChargePoint client on loopback, the real server, a real spool behind the gateway's own sink;
the test commits by hand (or stops committing, as a stalled or failing spool does) and reads the spool file
with a sqlite3 connection of its own."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.spool import ReadingClass
from tests.support.ocpp_gateway import TAG, OcppGateway, boot, charger, meter, spooled, start, status, stop

ocpp_exceptions = pytest.importorskip("ocpp.exceptions")

T0 = 1_800_000_000_000
E, M = ReadingClass.EVENT, ReadingClass.MIXED
#: Long enough for an answer that does not wait for the commit to arrive many times over.
NO_ANSWER_S = 0.5


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def answered_at_commit(gw: OcppGateway, cp: Any, request: Any, readings: int) -> Any:
    """Send `request`; check that no answer comes while its `readings` wait in the spool's buffer and that the
    file holds them when it does come, right after the commit."""
    on_disk = len(spooled(gw.path))
    task = asyncio.create_task(cp.call(request, suppress=False))
    await until(lambda: gw.spool.buffered == readings)
    await asyncio.sleep(NO_ANSWER_S)
    assert not task.done(), f"{request.__class__.__name__} answered before its reading was committed"
    assert len(spooled(gw.path)) == on_disk
    gw.spool.commit()
    result = await asyncio.wait_for(task, 5)
    assert len(spooled(gw.path)) == on_disk + readings  # there when the CallResult arrives
    return result


async def test_a_call_is_answered_only_once_its_reading_is_in_the_spool_file(tmp_path: Path) -> None:
    gw = OcppGateway(tmp_path / "spool.sqlite", T0)
    try:
        async with charger(gw.port) as cp:
            # A call without a reading is answered at once: nothing to commit.
            assert (await asyncio.wait_for(cp.call(boot(), suppress=False), 2)).status == "Accepted"
            await answered_at_commit(gw, cp, status(1, "Charging"), 1)
            tx = (await answered_at_commit(gw, cp, start(1, 5000), 1)).transaction_id
            await answered_at_commit(gw, cp, meter(tx, "5250", "7000"), 1)
            stopped = await answered_at_commit(gw, cp, stop(tx, 6000), 1)
            assert stopped.id_tag_info["status"] == "Accepted"
            # The transaction's close (the cursor) was committed with the stop reading: a kill now loses nothing.
            assert gw.spool.buffered == 0
            assert gw.spool.cursor("ocpp") is not None and '"open":[]' in (gw.spool.cursor("ocpp") or "")
        sid = str(tx)
        assert spooled(gw.path) == [
            ("ev-1", {"connector_status": "Charging", "session_id": ""}, E),
            ("ev-1", {"connector_status": "Charging", "session_id": sid, "session_energy": 0.0}, E),
            ("ev-1", {"connector_status": "Charging", "session_id": sid, "session_energy": 0.25, "power": 7000.0}, M),
            ("ev-1", {"connector_status": "Charging", "session_id": "", "session_energy": 1.0, "power": 0.0}, E),
        ]
        assert gw.adapter.not_committed == 0
    finally:
        gw.abandon()


async def test_with_commits_stalled_the_charger_gets_an_internal_error_and_its_retry_is_stored_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = OcppGateway(tmp_path / "spool.sqlite", T0, commit_timeout_s=0.5)
    try:
        async with charger(gw.port) as cp:
            async with gw.committing():
                tx = (await cp.call(start(1, 5000), suppress=False)).transaction_id
            # The spool stops committing (a dead SD card, a main loop stuck): no answer may say "stored".
            for request in (meter(tx, "5400"), stop(tx, 6000)):
                with pytest.raises(ocpp_exceptions.InternalError, match="not stored yet"):
                    await asyncio.wait_for(cp.call(request, suppress=False), 5)
            assert gw.adapter.not_committed == 2
            assert spooled(gw.path) == [("ev-1", {"session_id": str(tx), "session_energy": 0.0}, E)]
            # Commits come back; the charger sends the stop again: accepted, and the session has one stop.
            async with gw.committing():
                stopped = await cp.call(stop(tx, 6000), suppress=False)
        assert stopped.id_tag_info["status"] == "Accepted"
    finally:
        gw.abandon()
    sid = str(tx)
    assert spooled(gw.path) == [
        ("ev-1", {"session_id": sid, "session_energy": 0.0}, E),
        ("ev-1", {"session_id": sid, "session_energy": 0.4}, ReadingClass.REGISTER),
        ("ev-1", {"session_id": "", "session_energy": 1.0, "power": 0.0}, E),
    ]
    assert "CP-1: MeterValues not committed to the spool within 0.5 s: answered InternalError" in caplog.text
    assert "CP-1: StopTransaction not committed to the spool within 0.5 s" in caplog.text
    client_side = ("ocpp", "websockets.client")  # the test's ChargePoint logs what it sends and receives
    gateway_side = [r for r in caplog.records if r.name not in client_side]
    assert not [r for r in gateway_side if TAG in r.getMessage()]  # the ocpp package's error log is held back
    assert not [r for r in gateway_side if r.exc_info]


async def test_a_stop_of_the_gateway_ends_a_wait_for_a_commit_at_once(tmp_path: Path) -> None:
    """The gateway's shutdown commits only after its adapters' threads end: a wait must not hold them."""
    gw = OcppGateway(tmp_path / "spool.sqlite", T0, commit_timeout_s=30)
    try:
        async with charger(gw.port) as cp:
            async with gw.committing():
                tx = (await cp.call(start(1, 5000), suppress=False)).transaction_id
            pending = asyncio.create_task(cp.call(meter(tx, "5400"), suppress=False))
            await until(lambda: gw.spool.buffered == 1)
            began = time.monotonic()
            gw.stop.set()
            await asyncio.to_thread(gw.thread.join, 5)
            assert not gw.thread.is_alive()
            assert time.monotonic() - began < 2
            with pytest.raises((ocpp_exceptions.InternalError, asyncio.TimeoutError)):
                await asyncio.wait_for(pending, 2)  # a CallError, or no answer: never a CallResult
        gw.spool.commit()  # what the shutdown then commits; the charger sends the meter value again later
        assert len(spooled(gw.path)) == 2
    finally:
        gw.abandon()

"""The OCPP adapter's websocket server on loopback, driven by the `ocpp` package's own ChargePoint client.

The full session is the recorded sequence of the adapter's test case (`testcases/full_session`), sent call by
call by a real client: its readings must be exactly the test case's, except the clock (the sink's here) and
the transaction id (the one the server gives this run)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters import AdapterContext, Values, build_adapter, parse_adapter_config
from gateway.adapters.ocpp import OcppAdapter

ocpp_v16 = pytest.importorskip("ocpp.v16")
websockets_client = pytest.importorskip("websockets.asyncio.client")
from ocpp.v16 import ChargePoint, call  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

CASE = Path(__file__).resolve().parents[2] / "gateway" / "adapters" / "ocpp" / "testcases" / "full_session"
T0 = 1_800_000_000_000
HEARTBEAT_S = 45


class ThreadSafeSink:
    """Collects readings from the adapter's thread; `now_ms()` steps one second per call from T0. What it was
    given is "committed" at once (the spool's commit-first answers are tested in tests/gateway)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = T0
        self._calls = 0
        self._ticket = 0
        self.readings: list[dict[str, Any]] = []
        self.cursor_value: str | None = None

    def now_ms(self) -> int:
        with self._lock:
            self._now = T0 + 1000 * self._calls
            self._calls += 1
            return self._now

    def put(self, device_id: str, values: Values, ts_ms: int | None = None, *, unsynced: bool | None = None) -> None:
        with self._lock:
            self.readings.append(
                {"device": device_id, "ts": self._now if ts_ms is None else ts_ms, "values": dict(values)}
            )
            self._ticket += 1

    def put_many(self, device_id: str, readings: Any, *, unsynced: bool = False, cursor: str | None = None) -> None:
        assert not list(readings), "the OCPP adapter puts one reading at a time (put_many: its cursor alone)"
        with self._lock:
            self.cursor_value = cursor
            self._ticket += 1

    def cursor(self) -> str | None:
        return self.cursor_value

    def ticket(self) -> int:
        with self._lock:
            return self._ticket

    def wait_committed(self, ticket: int, timeout: float) -> bool:
        return True

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.readings)


@pytest.fixture
def server() -> Iterator[tuple[OcppAdapter, ThreadSafeSink, threading.Event, threading.Thread]]:
    config = parse_adapter_config(
        {
            "type": "ocpp",
            "host": "127.0.0.1",
            "port": 0,
            "heartbeat_interval_s": HEARTBEAT_S,
            "charge_points": {"CP-1": {"1": "ev-1", "2": "ev-2"}, "CP-2": {"1": "ev-3"}},
        }
    )
    adapter = build_adapter(config, AdapterContext("gw", "d", (), Path()))
    assert isinstance(adapter, OcppAdapter)
    sink, stop = ThreadSafeSink(), threading.Event()
    thread = threading.Thread(target=adapter.run, args=(sink, stop), name="ocpp-test", daemon=True)
    thread.start()
    assert adapter.ready.wait(10), "the OCPP server did not start"
    yield adapter, sink, stop, thread
    stop.set()
    thread.join(10)
    assert not thread.is_alive(), "the OCPP server did not stop"


@asynccontextmanager
async def charger(port: int, cp_id: str) -> AsyncIterator[tuple[Any, Any]]:
    """A connected `ocpp` ChargePoint client, its receive loop running."""
    async with websockets_client.connect(f"ws://127.0.0.1:{port}/{cp_id}", subprotocols=["ocpp1.6"]) as ws:
        cp = ChargePoint(cp_id, ws)
        task = asyncio.create_task(cp.start())
        try:
            yield cp, ws
        finally:
            task.cancel()
            with pytest.raises((asyncio.CancelledError, ConnectionClosed)):
                await task


def recorded_calls() -> list[tuple[str, dict[str, Any]]]:
    """(action, snake_case payload) of the recorded session's calls from CP-1."""
    from gateway.adapters.ocpp.central import camel_to_snake

    out = []
    for line in (CASE / "messages.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["charge_point"] == "CP-1":
            _, _, action, payload = record["call"]
            out.append((action, camel_to_snake(payload)))
    return out


def with_tx(payload: dict[str, Any], tx: int) -> dict[str, Any]:
    return {**payload, "transaction_id": tx} if "transaction_id" in payload else payload


async def test_a_full_session_gives_exactly_the_recorded_readings(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    adapter, sink, _, _ = server
    tx: int | None = None
    responses = {}
    async with charger(adapter.port, "CP-1") as (cp, _):
        for action, payload in recorded_calls():
            result = await cp.call(getattr(call, action)(**with_tx(payload, tx or 0)), suppress=False)
            responses[action] = result
            if action == "StartTransaction":
                tx = result.transaction_id
    assert responses["BootNotification"].status == "Accepted"
    assert responses["BootNotification"].interval == HEARTBEAT_S
    assert responses["StartTransaction"].id_tag_info["status"] == "Accepted"
    assert responses["Heartbeat"].current_time.endswith("Z")
    expected = [json.loads(line) for line in (CASE / "expected.jsonl").read_text().splitlines()]
    recorded_sid = expected[2]["values"]["session_id"]
    got = sink.snapshot()
    assert [r["values"] for r in got] == [
        {**r["values"], **({"session_id": str(tx)} if r["values"]["session_id"] == recorded_sid else {})}
        for r in expected
    ]
    assert {r["device"] for r in got} == {"ev-1"}
    stamps = [r["ts"] for r in got]
    assert stamps == sorted(set(stamps))  # one now_ms() per call: each reading has its own stamp
    assert "CP-1: connected" in caplog.text
    client_side = ("ocpp", "websockets.client")  # the test's ChargePoint logs what it sends
    gateway_side = [r.getMessage() for r in caplog.records if r.name not in client_side]
    assert not [m for m in gateway_side if "TAG-0001" in m]  # RFID tags stay out of the logs, even at DEBUG


async def test_an_unknown_charge_point_is_refused_at_the_handshake(server: Any) -> None:
    adapter, sink, _, _ = server
    for path in ("CP-9", "CP-1/extra/CP-X", ""):
        with pytest.raises(InvalidStatus) as refused:
            async with websockets_client.connect(f"ws://127.0.0.1:{adapter.port}/{path}", subprotocols=["ocpp1.6"]):
                pass
        assert refused.value.response.status_code == 404
    # Without the ocpp1.6 subprotocol a known charge point is refused too, before any message.
    with pytest.raises(InvalidStatus) as refused:
        async with websockets_client.connect(f"ws://127.0.0.1:{adapter.port}/CP-2"):
            pass
    assert refused.value.response.status_code == 400
    assert sink.snapshot() == []


async def test_a_charger_that_reconnects_mid_session_carries_on_with_its_transaction(server: Any) -> None:
    adapter, sink, _, _ = server

    def mv(tx: int, wh: str) -> Any:
        sampled = [{"value": wh, "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]
        return call.MeterValues(
            connector_id=1,
            transaction_id=tx,
            meter_value=[{"timestamp": "2027-01-15T08:00:00Z", "sampled_value": sampled}],
        )

    async with charger(adapter.port, "CP-2") as (cp, _):
        await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"), suppress=False)
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"), suppress=False)
        started = await cp.call(
            call.StartTransaction(connector_id=1, id_tag="T", meter_start=2000, timestamp="2027-01-15T08:00:00Z"),
            suppress=False,
        )
        tx = started.transaction_id
        await cp.call(mv(tx, "2400"), suppress=False)
    # The socket is gone mid-session; the charger comes back (no new boot) and sends what it stored.
    async with charger(adapter.port, "CP-2") as (cp, _):
        await cp.call(mv(tx, "3100"), suppress=False)
        await cp.call(
            call.StopTransaction(meter_stop=3500, timestamp="2027-01-15T09:00:00Z", transaction_id=tx), suppress=False
        )
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"), suppress=False)
    sid = str(tx)
    assert [(r["device"], r["values"]) for r in sink.snapshot()] == [
        ("ev-3", {"connector_status": "Charging", "session_id": ""}),
        ("ev-3", {"connector_status": "Charging", "session_id": sid, "session_energy": 0.0}),
        ("ev-3", {"connector_status": "Charging", "session_id": sid, "session_energy": 0.4}),
        ("ev-3", {"connector_status": "Charging", "session_id": sid, "session_energy": 1.1}),
        ("ev-3", {"connector_status": "Charging", "session_id": "", "session_energy": 1.5, "power": 0.0}),
        ("ev-3", {"connector_status": "Available", "session_id": ""}),
    ]


async def test_a_second_connection_replaces_the_first_and_stop_closes_connections(server: Any) -> None:
    adapter, sink, stop, thread = server
    async with charger(adapter.port, "CP-1") as (_, first), charger(adapter.port, "CP-1") as (cp, second):
        await asyncio.wait_for(first.wait_closed(), 10)
        assert first.close_code == 1000  # replaced by the second connection
        await cp.call(call.Heartbeat(), suppress=False)
        # Stop the server from the gateway's side: the open connection is closed with 1001 (going away).
        stop.set()
        await asyncio.to_thread(thread.join, 10)
        assert not thread.is_alive()
        assert second.close_code == 1001
    assert sink.snapshot() == []


def test_a_port_in_use_is_a_fatal_error_of_run(server: Any) -> None:
    """The gateway exits non-zero (and systemd restarts it) rather than run without its chargers."""
    adapter, _, _, _ = server
    config = parse_adapter_config(
        {"type": "ocpp", "host": "127.0.0.1", "port": adapter.port, "charge_points": {"CP-1": {"1": "ev-1"}}}
    )
    second = build_adapter(config, AdapterContext("gw", "d", (), Path()))
    with pytest.raises(OSError, match="address already in use"):
        second.run(ThreadSafeSink(), threading.Event())

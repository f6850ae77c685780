"""A gateway's OCPP side for tests: a real spool behind the gateway's own sink, the adapter's server thread, and
the `ocpp` package's ChargePoint client on loopback. Commits happen only when the test makes them (`commit()`,
or `committing()` for a group commit every 50 ms), on the test's thread, which owns the spool's connection."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import sqlite3
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters import AdapterContext, build_adapter, parse_adapter_config
from gateway.adapters.ocpp import OcppAdapter
from gateway.clock import Clock
from gateway.service import _Sink
from gateway.spool import ReadingClass, Spool

ocpp_v16 = pytest.importorskip("ocpp.v16")
websockets_client = pytest.importorskip("websockets.asyncio.client")
from ocpp.v16 import ChargePoint, call  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

KEY = "ocpp"  # the adapter's cursor key
TAG = "RFID-04A2B9C1"


def stepping(start_ms: int) -> Callable[[], int]:
    """A wall clock (ns) that steps one second per call, from `start_ms`."""
    steps = itertools.count()
    return lambda: (start_ms + 1000 * next(steps)) * 1_000_000


class OcppGateway:
    """One gateway's OCPP side: a spool, the gateway's sink over it and the adapter's server thread."""

    def __init__(self, path: Path, start_ms: int, **config: Any) -> None:
        self.path = path
        self.clock = Clock(probe=lambda: ("synchronised", "test"), wall_ns=stepping(start_ms))
        self.spool = Spool(path, now_ms=self.clock.now_ms, synced=lambda: True)
        table = {"type": "ocpp", "host": "127.0.0.1", "port": 0, "charge_points": {"CP-1": {"1": "ev-1", "2": "ev-2"}}}
        adapter = build_adapter(parse_adapter_config({**table, **config}), AdapterContext("gw", "d", (), Path()))
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

    @asynccontextmanager
    async def committing(self, interval_s: float = 0.05) -> AsyncIterator[None]:
        """The gateway's group commit, on the test's loop (the spool's thread), while the block runs."""

        async def commit_loop() -> None:
            while True:
                self.spool.commit()
                await asyncio.sleep(interval_s)

        task = asyncio.create_task(commit_loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def shut(self) -> None:
        """The gateway's normal stop: the adapter's thread ends, the spool commits and closes."""
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.spool.commit()
        self.spool.close()

    def abandon(self) -> None:
        """Stop the server thread if a failed test left it running (the spool is left as it is)."""
        if self.thread.is_alive():
            self.stop.set()
            self.thread.join(10)


def basic(user: str, key: str) -> dict[str, str]:
    """The Authorization header of security profiles 1 and 2 (HTTP Basic: charge point id, AuthorizationKey)."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}


@asynccontextmanager
async def charger(
    port: int, cp_id: str = "CP-1", *, key: str | None = None, tls: ssl.SSLContext | None = None
) -> AsyncIterator[Any]:
    """A connected `ocpp` ChargePoint client, its receive loop running; with `key` it authenticates (profile
    1), with `tls` over wss:// (profile 2, the context trusting the gateway's certificate)."""
    url = f"{'wss' if tls else 'ws'}://127.0.0.1:{port}/{cp_id}"
    headers = basic(cp_id, key) if key is not None else None
    async with websockets_client.connect(url, subprotocols=["ocpp1.6"], additional_headers=headers, ssl=tls) as ws:
        cp = ChargePoint(cp_id, ws)
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


def boot() -> Any:
    return call.BootNotification(charge_point_model="M", charge_point_vendor="V")


def spooled(path: Path) -> list[tuple[str, dict[str, Any], ReadingClass]]:
    """Every committed reading, read with a connection of its own: (device, values, class), per device in
    sequence order."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute(
            "SELECT d.id, r.body, r.cls FROM readings r JOIN devices d ON d.idx = r.device ORDER BY d.id, r.seq"
        ).fetchall()
    return [(device, json.loads(body), ReadingClass(cls)) for device, body, cls in rows]


def committed_cursor(path: Path) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        (value,) = db.execute("SELECT value FROM cursors WHERE key = ?", (KEY,)).fetchone()
    assert TAG not in value and TAG.lower() not in value.lower()
    doc: dict[str, Any] = json.loads(value)
    return doc

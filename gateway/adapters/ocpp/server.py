"""The websocket side of the OCPP adapter: `websockets` serves, `ocpp` parses, validates and answers.

Imported only when the adapter runs (it needs the `ocpp` extra); `ocpp` and `websockets` themselves are
imported inside `serve` so that importing this module (the gateway's import-graph test does) needs neither.

One `ocpp.v16.ChargePoint` per connection, with its routes pointed at the adapter's `CentralSystem`, which
keeps the state per charge point across connections. A second connection with the id of a connected charge
point replaces the first (a charger that reconnects before the server noticed the old socket was dead).
Handlers call the sink on the loop: when the spool's buffer is full, `put` blocks and so does every charger's
connection until the next group commit. That is the backpressure wanted (a charger resends an unanswered
call), and it lasts at most a commit interval.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from gateway.adapters.base import ReadingSink
from gateway.adapters.ocpp.central import ACTIONS

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection
    from websockets.http11 import Request, Response

    from gateway.adapters.ocpp import OcppAdapter

log = logging.getLogger(__name__)
#: The `ocpp` package logs every message at INFO and `websockets` every frame at DEBUG; messages carry RFID
#: idTags, which stay out of the logs: both log here, held at WARNING.
WIRE_LOG = logging.getLogger(__name__ + ".wire")
WIRE_LOG.setLevel(logging.WARNING)
SUBPROTOCOL = "ocpp1.6"
STOP_POLL_S = 0.1


def charge_point_id(path: str) -> str:
    """The charge point id of a connection: the last segment of the request path."""
    return unquote(urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1])


def serve(adapter: OcppAdapter, sink: ReadingSink, stop: threading.Event) -> None:
    """Listen until `stop` is set, on an event loop of this thread's own."""
    asyncio.run(_serve(adapter, sink, stop))


async def _serve(adapter: OcppAdapter, sink: ReadingSink, stop: threading.Event) -> None:
    from ocpp.v16 import ChargePoint, call_result  # type: ignore[import-untyped]
    from websockets.asyncio.server import serve as ws_serve
    from websockets.exceptions import ConnectionClosed
    from websockets.typing import Subprotocol

    central = adapter.central(sink, stamp=True, persist=adapter.persist)
    connected: dict[str, ServerConnection] = {}

    def route(cp_id: str, action: str) -> dict[str, Any]:
        def handler(**payload: Any) -> Any:
            now = sink.now_ms()
            response = central.call(cp_id, action, now, None, payload)
            return getattr(call_result, action)(**(response or {}))

        return {"_on_action": handler, "_skip_schema_validation": False}

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        cp_id = charge_point_id(request.path)
        if not central.knows(cp_id):
            log.warning("refused unknown charge point %r from %s", cp_id[:64], connection.remote_address)
            return connection.respond(HTTPStatus.NOT_FOUND, "unknown charge point\n")
        return None

    async def handler(connection: ServerConnection) -> None:
        cp_id = charge_point_id(connection.request.path if connection.request else "")
        if connection.subprotocol != SUBPROTOCOL:
            log.warning("%s: no %s subprotocol: closed", cp_id, SUBPROTOCOL)
            await connection.close(1002, f"{SUBPROTOCOL} required")
            return
        previous = connected.get(cp_id)
        connected[cp_id] = connection
        if previous is not None:
            log.info("%s: reconnected; closing its previous connection", cp_id)
            await previous.close(1000, "replaced by a new connection")
        charge_point = ChargePoint(cp_id, connection, logger=WIRE_LOG)
        charge_point.route_map = {action: route(cp_id, action) for action in ACTIONS}
        log.info("%s: connected from %s", cp_id, connection.remote_address)
        try:
            await charge_point.start()
        except ConnectionClosed:
            pass
        finally:
            if connected.get(cp_id) is connection:
                del connected[cp_id]
            log.info("%s: disconnected", cp_id)

    config = adapter.config
    async with ws_serve(
        handler,
        config.host,
        config.port,
        subprotocols=[Subprotocol(SUBPROTOCOL)],
        process_request=process_request,
        logger=WIRE_LOG,
    ) as server:
        adapter.port = int(next(iter(server.sockets)).getsockname()[1])
        adapter.ready.set()
        log.info("OCPP 1.6J central system on ws://%s:%d/<charge point id>", config.host, adapter.port)
        # `stop` is a threading.Event set by another thread: polled, so that no helper thread can outlive the loop.
        while not stop.is_set():  # noqa: ASYNC110
            await asyncio.sleep(STOP_POLL_S)
    adapter.ready.clear()

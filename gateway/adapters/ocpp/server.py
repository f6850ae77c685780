"""The websocket side of the OCPP adapter: `websockets` serves, `ocpp` parses, validates and answers.

Imported only when the adapter runs (it needs the `ocpp` extra); `ocpp` and `websockets` themselves are
imported inside `serve` so that importing this module (the gateway's import-graph test does) needs neither.

One `ocpp.v16.ChargePoint` per connection, with its routes pointed at the adapter's `CentralSystem`, which
keeps the state per charge point across connections. A second connection with the id of a connected charge
point replaces the first (a charger that reconnects before the server noticed the old socket was dead).
Handlers call the sink on the loop: when the spool's buffer is full, `put` blocks and so does every charger's
connection until the next group commit. That is the backpressure wanted (a charger resends an unanswered
call), and it lasts at most a commit interval.

Commit first, then answer. A charger deletes a StopTransaction or MeterValues once it has its CallResult and
never sends it again, so a call that put a reading or the state (its sink ticket moved) is answered only
after the spool's next group commit has written it: the wait runs in a worker thread (`sink.wait_committed`
blocks; the loop goes on serving the other chargers), one per charge point at most since the `ocpp` package
handles a connection's calls one at a time. If the commit does not come within the adapter's
`commit_timeout_s`, or the gateway stops meanwhile, the charger gets a CallError InternalError instead, logged
and counted in `OcppAdapter.not_committed`; it sends the call again later, and a retried StopTransaction of a
transaction already closed is accepted without a second reading. A retried MeterValues gives a second reading
of the same register a little later: a register read twice costs nothing, a lost one costs resolution.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from gateway.adapters.base import ReadingSink
from gateway.adapters.ocpp.central import ACTIONS, ImplausibleValue, frame_problem
from gateway.adapters.ocpp.keys import Lockout, basic_credentials, verify_key
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection
    from websockets.http11 import Request, Response

    from gateway.adapters.ocpp import OcppAdapter, OcppConfig

log = logging.getLogger(__name__)
#: The `ocpp` package logs every message at INFO and `websockets` every frame at DEBUG; messages carry RFID
#: idTags, which stay out of the logs: both log here, held at WARNING.
WIRE_LOG = logging.getLogger(__name__ + ".wire")
WIRE_LOG.setLevel(logging.WARNING)
SUBPROTOCOL = "ocpp1.6"
STOP_POLL_S = 0.1
#: Threads waiting for commits at most (one per charge point is never a queue).
MAX_WAITERS = 32


class LoggedHere(Exception):
    """An error a handler raised after logging it itself, without the call's payload (which holds idTags)."""


def _not_logged_here(record: logging.LogRecord) -> bool:
    """The `ocpp` package logs a handler's exception with the whole message: not for the ones logged here."""
    return not (record.exc_info and isinstance(record.exc_info[1], LoggedHere))


WIRE_LOG.addFilter(_not_logged_here)


def wait_durable(sink: ReadingSink, ticket: int, timeout: float, stop: threading.Event) -> bool:
    """In a worker thread: True once the spool has committed up to `ticket`; False after `timeout` seconds or
    once the gateway stops (whose shutdown commits only after this adapter's thread has ended)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if sink.wait_committed(ticket, max(0.0, min(left, STOP_POLL_S))):
            return True
        if left <= STOP_POLL_S or stop.is_set():
            return False


def charge_point_id(path: str) -> str:
    """The charge point id of a connection: the last segment of the request path."""
    return unquote(urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1])


def server_tls(config: OcppConfig) -> ssl.SSLContext | None:
    """Profile 2: TLS 1.2+ with the gateway's certificate; None otherwise. Unreadable files are a ConfigError."""
    if config.security_profile != 2 or config.tls_cert_file is None or config.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(config.tls_cert_file), str(config.tls_key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"ocpp: cannot load the TLS files {config.tls_cert_file}, {config.tls_key_file}: {exc}"
        ) from exc
    return context


def serve(adapter: OcppAdapter, sink: ReadingSink, stop: threading.Event) -> None:
    """Listen until `stop` is set, on an event loop of this thread's own."""
    asyncio.run(_serve(adapter, sink, stop))


async def _serve(adapter: OcppAdapter, sink: ReadingSink, stop: threading.Event) -> None:
    from ocpp.exceptions import InternalError, PropertyConstraintViolationError  # type: ignore[import-untyped]
    from ocpp.v16 import ChargePoint, call_result  # type: ignore[import-untyped]
    from websockets.asyncio.server import serve as ws_serve
    from websockets.exceptions import ConnectionClosed
    from websockets.typing import Subprotocol

    class NotCommitted(InternalError, LoggedHere):  # type: ignore[misc]
        """The call's readings are not on disk yet: the charger must send it again."""

    class Refused(PropertyConstraintViolationError, LoggedHere):  # type: ignore[misc]
        """A value no meter gives (central.ImplausibleValue): the charger is told, nothing is stored."""

    class GuardedChargePoint(ChargePoint):  # type: ignore[misc]
        """The package's ChargePoint, with frames that are not shaped like OCPP-J dropped before it routes them."""

        async def route_message(self, raw_msg: str | bytes) -> None:
            problem = frame_problem(raw_msg)
            if problem is not None:
                adapter.malformed += 1
                log.warning("%s: dropped a malformed OCPP-J frame: %s", self.id, problem)
                return
            await super().route_message(raw_msg)

    config = adapter.config
    central = adapter.central(sink, stamp=True, persist=adapter.persist)
    connected: dict[str, ServerConnection] = {}
    loop = asyncio.get_running_loop()
    waiters = ThreadPoolExecutor(min(len(config.charge_points), MAX_WAITERS), thread_name_prefix="ocpp-commit")

    def route(cp_id: str, action: str) -> dict[str, Any]:
        async def handler(**payload: Any) -> Any:
            before = sink.ticket()
            try:
                response = central.call(cp_id, action, sink.now_ms(), None, payload)
            except ImplausibleValue as exc:
                log.warning("%s: %s refused: %s", cp_id, action, exc)
                raise Refused(str(exc)) from None
            ticket = sink.ticket()
            if ticket != before and not await loop.run_in_executor(
                waiters, wait_durable, sink, ticket, config.commit_timeout_s, stop
            ):
                adapter.not_committed += 1
                log.warning(
                    "%s: %s not committed to the spool within %.1f s: answered InternalError, the charger retries",
                    cp_id,
                    action,
                    config.commit_timeout_s,
                )
                raise NotCommitted("reading not stored yet; send the call again later")
            return getattr(call_result, action)(**(response or {}))

        return {"_on_action": handler, "_skip_schema_validation": False}

    lockout = Lockout()

    async def process_request(connection: ServerConnection, request: Request) -> Response | None:
        """Before any OCPP message: an unknown id is 404; in profiles 1-2 a missing or wrong AuthorizationKey
        is 401 (and a locked-out address 429), so an impostor never reaches, let alone replaces, the real
        charger's connection. The key is checked off the loop (PBKDF2), in constant time, and never logged."""
        cp_id = charge_point_id(request.path)
        address = str(connection.remote_address[0]) if connection.remote_address else "?"
        if not central.knows(cp_id):
            log.warning("refused unknown charge point %r from %s", cp_id[:64], address)
            return connection.respond(HTTPStatus.NOT_FOUND, "unknown charge point\n")
        if config.security_profile == 0:
            return None
        if lockout.locked(cp_id, address):
            adapter.auth_refused += 1
            return connection.respond(HTTPStatus.TOO_MANY_REQUESTS, "too many wrong keys, try later\n")
        credentials = basic_credentials(request.headers.get("Authorization"))
        ok = False
        if credentials is not None and credentials[0] == cp_id:
            ok = await loop.run_in_executor(waiters, verify_key, credentials[1], config.auth_keys[cp_id])
        if ok:
            lockout.succeeded(cp_id, address)
            return None
        lockout.failed(cp_id, address)
        adapter.auth_refused += 1
        why = (
            "no Basic credentials"
            if credentials is None
            else "wrong username"
            if credentials[0] != cp_id
            else "wrong key"
        )
        log.warning("%s: refused a connection from %s: %s", cp_id, address, why)
        response = connection.respond(HTTPStatus.UNAUTHORIZED, "authorization needed\n")
        response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
        return response

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
        charge_point = GuardedChargePoint(cp_id, connection, logger=WIRE_LOG)
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

    try:
        async with ws_serve(
            handler,
            config.host,
            config.port,
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            process_request=process_request,
            logger=WIRE_LOG,
            ssl=server_tls(config),
        ) as server:
            adapter.port = int(next(iter(server.sockets)).getsockname()[1])
            adapter.ready.set()
            scheme = "wss" if config.security_profile == 2 else "ws"
            log.info(
                "OCPP 1.6J central system on %s://%s:%d/<charge point id>, security profile %d",
                scheme,
                config.host,
                adapter.port,
                config.security_profile,
            )
            # `stop` is a threading.Event set by another thread: polled, so that no helper thread can outlive
            # the loop.
            while not stop.is_set():  # noqa: ASYNC110
                await asyncio.sleep(STOP_POLL_S)
    finally:
        waiters.shutdown(wait=True)  # each wait ends within STOP_POLL_S of the stop: no thread outlives the loop
    adapter.ready.clear()

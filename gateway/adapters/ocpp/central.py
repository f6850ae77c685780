"""The OCPP 1.6 central system's state and its mapping of charger messages to readings, without any I/O.

Kept apart from the websocket server so that it runs (and is tested) without the `ocpp` and `websockets`
packages: the server hands it each call's payload (snake_case keys, as the `ocpp` package delivers them) and
sends back what it returns; a recorded message file goes through the same methods.

Every ev_charger reading carries the connector's state, `session_id` (empty when no session is open) and,
once a StatusNotification has told it, `connector_status`, so the spool's event rule (a reading whose
session id or status differs from the previous one) sees exactly the session starts and stops and the
status changes, and never a meter value:

    StatusNotification   connector_status, session_id
    StartTransaction     connector_status, session_id = the new id, session_energy = 0 (meterStart)
    MeterValues          connector_status, session_id, session_energy (register - meterStart, kWh), power (W)
    StopTransaction      connector_status, session_id = "", session_energy = final (meterStop - meterStart),
                         power = 0

The stop reading carries the session's final register under the empty id: that keeps it an EVENT for the
spool (the id changes), and a start and a stop alone still give the session's energy if the spool had to
shed every meter value in between. Transactions are keyed by the charge point, not the connection, so a
charger that drops its websocket mid-session and reconnects carries on with the same transaction.

They also survive a gateway restart: the open transactions (id, charge point, connector, meterStart, start
time), the last transaction id handed out and each connector's last status are a small JSON document (`state`)
that the adapter keeps as its spool cursor, so a StopTransaction or MeterValues after a restart gives the
readings it would have given without one, and ids keep increasing even if the clock went back (a Pi without
RTC) or more than one session a second started before the restart (a charger may still hold an old id). The
RFID idTag is never part of it. The document is saved (`save`) before the StartTransaction reading is put
(a crash between the two keeps the transaction and loses the start reading, not the stop's energy), and after
the StopTransaction reading (a crash between the two keeps the transaction open, so the charger's resent
stop is still accepted with a reading). The server answers a call only once its readings and this document
are committed to the spool (see `server`), so a charger never deletes a call whose reading could still be
lost. A connector holds one open transaction (a new start replaces it);
at most `max_open` are kept in all, the oldest dropped with a warning and counted in `dropped`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.adapters.base import Values

log = logging.getLogger(__name__)

#: Transaction ids count seconds from 2020-01-01T00:00Z (then +1 per transaction), so they stay unique
#: across gateway restarts and fit the 32-bit integers chargers store until 2088.
TX_EPOCH_S = 1_577_836_800
ENERGY_REGISTER = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
#: Energy and power scale to Wh and W.
ENERGY_UNITS: Mapping[str, float] = {"Wh": 1.0, "kWh": 1000.0}
POWER_UNITS: Mapping[str, float] = {"W": 1.0, "kW": 1000.0}
TOTAL_PHASES = ("L1", "L2", "L3")
#: At most this many open transactions are kept (and so saved): 1,000 x ~50 bytes of JSON per state change.
MAX_OPEN = 1000
#: The version of the saved state document; a document of another version is not restored.
STATE_VERSION = 1

#: (device id, values, timestamp ms or None for "now, by the gateway clock")
Emit = Callable[[str, Values, int | None], None]
Payload = Mapping[str, Any]
#: Called with the new state document each time it changes (the adapter commits it as its cursor).
Save = Callable[[str], None]


@dataclass(slots=True)
class _Connector:
    device: str
    status: str | None = None
    session_id: str = ""
    transaction_id: int | None = None
    meter_start_wh: float = 0.0
    start_ms: int = 0


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _number(sampled: Payload) -> float | None:
    try:
        return float(sampled["value"])
    except (KeyError, TypeError, ValueError):
        return None


def sampled_energy_wh(sampled_values: Sequence[Payload]) -> float | None:
    """The Energy.Active.Import.Register of one meterValue in Wh (its `unit`: Wh by default, or kWh)."""
    for sv in sampled_values:
        if sv.get("measurand", ENERGY_REGISTER) != ENERGY_REGISTER or sv.get("phase") is not None:
            continue
        scale = ENERGY_UNITS.get(sv.get("unit", "Wh"))
        value = _number(sv)
        if scale is not None and value is not None:
            return value * scale
    return None


def sampled_power_w(sampled_values: Sequence[Payload]) -> float | None:
    """Power.Active.Import in W: the total if the charger sends one, else the sum of the L1-L3 phases."""
    total: float | None = None
    phases: dict[str, float] = {}
    for sv in sampled_values:
        if sv.get("measurand") != POWER:
            continue
        scale = POWER_UNITS.get(sv.get("unit", "W"))
        value = _number(sv)
        if scale is None or value is None:
            continue
        phase = sv.get("phase")
        if phase is None:
            total = value * scale
        elif phase in TOTAL_PHASES:
            phases[phase] = value * scale
    if total is None and phases:
        total = sum(phases.values())
    return total


def _kwh(wh: float) -> float:
    return round(wh / 1000, 4)  # 0.1 Wh: below any charger meter's resolution, and no float noise


#: The calls a charger may make that this central system answers (others get a NotImplemented CallError).
ACTIONS = (
    "BootNotification",
    "Heartbeat",
    "Authorize",
    "StatusNotification",
    "StartTransaction",
    "MeterValues",
    "StopTransaction",
)


class ImplausibleValue(ValueError):
    """A schema-valid call with a value no meter gives: answered with a CallError, nothing stored."""


ACTION_NAME = re.compile(r"^[A-Za-z0-9]{1,64}$")
#: Message type ids of OCPP-J: CALL, CALLRESULT, CALLERROR.
CALL, CALL_RESULT, CALL_ERROR = 2, 3, 4


def frame_problem(raw: str | bytes) -> str | None:
    """Why an OCPP-J frame is not even shaped like one, or None. The `ocpp` package assumes the shape: a CALL
    whose action is a list makes its router raise TypeError and end the connection (found by tests/fuzz), so
    the server drops such frames, logged and counted, before the package sees them."""
    try:
        frame = json.loads(raw)
    except (ValueError, RecursionError):
        return None  # not JSON: the package answers that itself (it logs and ignores the frame)
    if not isinstance(frame, list) or not frame or frame[0] not in (CALL, CALL_RESULT, CALL_ERROR):
        return None  # the package's own FormatViolation / ProtocolError handling applies
    if not isinstance(frame[1] if len(frame) > 1 else None, str):
        return "the message id is not a string"
    if frame[0] == CALL and (len(frame) != 4 or not isinstance(frame[2], str) or not isinstance(frame[3], dict)):
        return "a CALL needs [2, id, action (a string), payload (an object)]"
    if frame[0] == CALL and not ACTION_NAME.match(frame[2]):
        # The package opens the schema file named after the action: a NUL or a surrogate in it raised, and
        # "../" would walk its folders (found by tests/fuzz). OCPP action names are plain words.
        return "the action is not an OCPP action name"
    return None


def camel_to_snake(data: Any) -> Any:
    """OCPP-J's camelCase keys as snake_case, recursively: what the `ocpp` package hands its handlers."""
    if isinstance(data, dict):
        return {re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", k).lower(): camel_to_snake(v) for k, v in data.items()}
    if isinstance(data, list):
        return [camel_to_snake(v) for v in data]
    return data


class CentralSystem:
    """Charge points, connectors and open transactions; one method per OCPP call that makes readings."""

    def __init__(
        self,
        charge_points: Mapping[str, Mapping[int, str]],
        heartbeat_interval_s: int,
        emit: Emit,
        *,
        state: str | None = None,
        save: Save | None = None,
        max_open: int = MAX_OPEN,
    ):
        """`state`: a document `save` was given before a restart, to carry on from (None: a fresh start)."""
        self.heartbeat_interval_s = heartbeat_interval_s
        self._emit = emit
        self._save = save
        self.max_open = max_open
        #: Open transactions dropped (over `max_open`, or unmapped when restored): their stop gives no reading.
        self.dropped = 0
        self._connectors: dict[tuple[str, int], _Connector] = {
            (cp, connector): _Connector(device)
            for cp, connectors in charge_points.items()
            for connector, device in connectors.items()
        }
        #: transaction id -> (charge point, connector), in the order they started (oldest first).
        self._transactions: dict[int, tuple[str, int]] = {}
        self._last_tx = 0
        if state is not None:
            self._restore(state)

    # -- the state kept across restarts ---------------------------------------------------------------------
    def state(self) -> str:
        """The open transactions, the last transaction id and the connectors' statuses, as compact JSON."""
        open_tx = []
        for tx, where in self._transactions.items():
            conn = self._connectors[where]
            open_tx.append([tx, where[0], where[1], conn.meter_start_wh, conn.start_ms])
        status = [[cp, c, conn.status] for (cp, c), conn in self._connectors.items() if conn.status is not None]
        doc = {"v": STATE_VERSION, "last_tx": self._last_tx, "open": open_tx, "status": status}
        return json.dumps(doc, separators=(",", ":"))

    def _persist(self) -> None:
        if self._save is not None:
            self._save(self.state())

    def _restore(self, state: str) -> None:
        try:
            doc = json.loads(state)
            if doc.get("v") != STATE_VERSION:
                raise ValueError(f"version {doc.get('v')!r}, not {STATE_VERSION}")
            last_tx = int(doc["last_tx"])
            open_tx = [(int(tx), str(cp), int(c), float(ws), int(ms)) for tx, cp, c, ws, ms in doc["open"]]
            status = [(str(cp), int(c), str(st)) for cp, c, st in doc["status"]]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.error("saved OCPP state unreadable (%s): starting without open transactions", str(exc)[:200])
            return
        self._last_tx = last_tx
        for cp, c, st in status:
            conn = self._connectors.get((cp, c))
            if conn is not None:
                conn.status = st
        for tx, cp, c, meter_start_wh, start_ms in open_tx:
            conn = self._connectors.get((cp, c))
            if conn is None:
                log.warning("%s: restored transaction %d on connector %d, no longer configured: dropped", cp, tx, c)
                self.dropped += 1
                continue
            self._open(conn, tx, cp, c, meter_start_wh, start_ms)
        log.info("restored %d open transaction(s), last id %d", len(self._transactions), self._last_tx)

    def _open(self, conn: _Connector, tx: int, cp: str, connector: int, meter_start_wh: float, start_ms: int) -> None:
        if conn.transaction_id is not None:
            log.warning("%s: transaction %d replaces %d, never stopped", cp, tx, conn.transaction_id)
            self._transactions.pop(conn.transaction_id, None)
        conn.transaction_id, conn.session_id = tx, str(tx)
        conn.meter_start_wh, conn.start_ms = meter_start_wh, start_ms
        self._transactions[tx] = (cp, connector)
        while len(self._transactions) > self.max_open:
            oldest, where = next(iter(self._transactions.items()))
            log.warning("%s: over %d open transactions: oldest %d dropped", where[0], self.max_open, oldest)
            self._close(oldest)
            self.dropped += 1

    def _close(self, tx: int) -> _Connector | None:
        where = self._transactions.pop(tx, None)
        if where is None:
            return None
        conn = self._connectors[where]
        conn.transaction_id, conn.session_id, conn.meter_start_wh, conn.start_ms = None, "", 0.0, 0
        return conn

    def knows(self, charge_point: str) -> bool:
        return any(cp == charge_point for cp, _ in self._connectors)

    def _put(self, conn: _Connector, values: dict[str, Any], ts_ms: int | None) -> None:
        if conn.status is not None:
            values = {"connector_status": conn.status, **values}
        self._emit(conn.device, values, ts_ms)

    def _connector(self, cp: str, connector_id: Any) -> _Connector | None:
        conn = self._connectors.get((cp, connector_id)) if isinstance(connector_id, int) else None
        if conn is None:
            log.debug("%s: connector %r is not mapped to a device: ignored", cp, connector_id)
        return conn

    def call(self, cp: str, action: str, now_ms: int, ts_ms: int | None, payload: Payload) -> dict[str, Any] | None:
        """Handle one call from charge point `cp`; its response payload, or None for an action not supported.

        `now_ms` is the gateway's time (for responses and transaction ids); `ts_ms` the readings' timestamp
        (None: the sink stamps them with the gateway clock, flagged when it is not synchronised).
        """
        try:
            return self._dispatch(cp, action, now_ms, ts_ms, payload)
        except OverflowError as exc:
            # The schemas bound no integer: a meterStart of 300 digits is schema-valid (found by tests/fuzz).
            raise ImplausibleValue(f"{action}: a number too large for a meter ({exc})") from None

    def _dispatch(
        self, cp: str, action: str, now_ms: int, ts_ms: int | None, payload: Payload
    ) -> dict[str, Any] | None:
        if action == "StatusNotification":
            return self.status_notification(cp, ts_ms, payload)
        if action == "StartTransaction":
            return self.start_transaction(cp, now_ms, ts_ms, payload)
        if action == "MeterValues":
            return self.meter_values(cp, ts_ms, payload)
        if action == "StopTransaction":
            return self.stop_transaction(cp, ts_ms, payload)
        if action == "BootNotification":
            return self.boot_notification(cp, now_ms, payload)
        if action == "Heartbeat":
            return self.heartbeat(cp, now_ms, payload)
        if action == "Authorize":
            return self.authorize(cp, now_ms, payload)
        return None

    # -- calls without readings -----------------------------------------------------------------------------
    def boot_notification(self, cp: str, now_ms: int, payload: Payload) -> dict[str, Any]:
        log.info("%s: boot (%s %s)", cp, payload.get("charge_point_vendor"), payload.get("charge_point_model"))
        return {"current_time": _iso(now_ms), "interval": self.heartbeat_interval_s, "status": "Accepted"}

    def heartbeat(self, cp: str, now_ms: int, payload: Payload) -> dict[str, Any]:
        return {"current_time": _iso(now_ms)}

    def authorize(self, cp: str, now_ms: int, payload: Payload) -> dict[str, Any]:
        return {"id_tag_info": {"status": "Accepted"}}  # authorisation is the operator's, not the gateway's

    # -- calls that make readings ---------------------------------------------------------------------------
    def status_notification(self, cp: str, ts_ms: int | None, payload: Payload) -> dict[str, Any]:
        conn = self._connector(cp, payload.get("connector_id"))
        if conn is not None:
            status, conn.status = conn.status, str(payload["status"])
            self._put(conn, {"session_id": conn.session_id}, ts_ms)
            if conn.status != status:
                self._persist()
        return {}

    def start_transaction(self, cp: str, now_ms: int, ts_ms: int | None, payload: Payload) -> dict[str, Any]:
        self._last_tx = max(self._last_tx + 1, now_ms // 1000 - TX_EPOCH_S)
        tx = self._last_tx
        conn = self._connector(cp, payload.get("connector_id"))
        if conn is not None:
            start_ms = now_ms if ts_ms is None else ts_ms
            self._open(conn, tx, cp, int(payload["connector_id"]), float(payload["meter_start"]), start_ms)
        self._persist()  # before the reading, and even without one: the id is handed out
        if conn is not None:
            self._put(conn, {"session_id": conn.session_id, "session_energy": 0.0}, ts_ms)
        return {"transaction_id": tx, "id_tag_info": {"status": "Accepted"}}

    def meter_values(self, cp: str, ts_ms: int | None, payload: Payload) -> dict[str, Any]:
        conn = self._connector(cp, payload.get("connector_id"))
        samples = payload.get("meter_value") or []
        if conn is None or not samples:
            return {}
        # Several meterValue elements (stored while the charger was offline) become one reading, the last:
        # registers lose resolution, not energy.
        sampled = samples[-1].get("sampled_value") or []
        values: dict[str, Any] = {"session_id": conn.session_id}
        energy_wh = sampled_energy_wh(sampled)
        tx = payload.get("transaction_id")
        if energy_wh is not None and conn.transaction_id is not None and tx in (None, conn.transaction_id):
            session_wh = energy_wh - conn.meter_start_wh
            if session_wh >= 0:
                values["session_energy"] = _kwh(session_wh)
            else:
                log.warning(
                    "%s: register %.1f Wh below meterStart %.1f Wh: ignored", cp, energy_wh, conn.meter_start_wh
                )
        power_w = sampled_power_w(sampled)
        if power_w is not None:
            values["power"] = power_w
        if len(values) > 1:
            self._put(conn, values, ts_ms)
        return {}

    def stop_transaction(self, cp: str, ts_ms: int | None, payload: Payload) -> dict[str, Any]:
        tx = payload.get("transaction_id")
        where = self._transactions.get(tx) if isinstance(tx, int) else None
        if where is None or not isinstance(tx, int):
            log.warning("%s: stop of unknown transaction %r (dropped or replaced?): no reading", cp, tx)
        else:
            conn = self._connectors[where]
            values: dict[str, Any] = {"session_id": ""}
            session_wh = float(payload["meter_stop"]) - conn.meter_start_wh
            if session_wh >= 0:
                values["session_energy"] = _kwh(session_wh)
            else:
                log.warning(
                    "%s: meterStop %.1f Wh below meterStart %.1f Wh",
                    cp,
                    session_wh + conn.meter_start_wh,
                    conn.meter_start_wh,
                )
            values["power"] = 0.0
            self._close(tx)
            self._put(conn, values, ts_ms)
            self._persist()  # after the reading: a crash in between keeps the transaction for the resent stop
        return {"id_tag_info": {"status": "Accepted"}}

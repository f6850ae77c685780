"""OCPP 1.6J central system: EV chargers connect to the gateway over websockets and their sessions become readings.

Chargers connect to `ws://<host>:<port>/<charge_point_id>` with the `ocpp1.6` subprotocol; an id that is not
in the config is refused at the HTTP handshake (404), before any OCPP message. Each configured charge point
connector is one registry device of kind ev_charger. What each call becomes is in `central` (no I/O there);
the websocket server is in `server`, which imports `ocpp` and `websockets` (the `ocpp` extra) only when the
adapter runs, so that the gateway's core install stays paho-mqtt.

The server runs in the adapter's thread, on an event loop of its own (`asyncio.run`), and stops when the
gateway's stop event is set: the listening socket closes and open connections get a 1001 close frame.

`replay = "messages.jsonl"` runs the same state machine over a recorded message file instead of listening
(one `{"ts", "charge_point", "call"}` per line, `call` being the OCPP-J `[2, id, action, payload]` array);
readings keep the recorded `ts`. That is how the test cases run, and how a charger's traffic captured in the
field is reproduced offline.

A call that made a reading (or changed the saved state) is answered only once the spool has committed it:
the charger deletes what was answered and will not send it again. If the commit does not come within
`commit_timeout_s` (5 s), the answer is an OCPP CallError InternalError, which the charger retries later; it
is logged and counted (`not_committed`).

The server keeps the central system's state (open transactions, last transaction id, connector statuses; see
`central`) as the adapter's spool cursor and restores it when it starts, so that sessions open across a
gateway restart (or a crash: the cursor is committed with the readings) still end with their readings.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from devices.kinds import DeviceKind
from devices.tables import Bounds
from devices.topics import check_id
from gateway.adapters.base import AdapterConfig, AdapterContext, AdapterSpec, DeviceRef, ReadingSink, Values
from gateway.adapters.ocpp.central import CentralSystem, camel_to_snake
from gateway.errors import ConfigError

log = logging.getLogger(__name__)

#: The charge point id is the last path segment of the websocket URL (OCPP 1.6J section 3.1.1).
CHARGE_POINT_ID = re.compile(r"^[A-Za-z0-9._\-]{1,48}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class OcppConfig(AdapterConfig):
    type: Literal["ocpp"] = "ocpp"
    #: The address to listen on: loopback unless told, so that the chargers' LAN address (or "0.0.0.0", all
    #: interfaces) is a decision written in the config.
    host: str = "127.0.0.1"
    #: OCPP 1.6 security profile: 0 none (loopback only, unless `allow_unauthenticated`), 1 HTTP Basic with
    #: each charge point's AuthorizationKey, 2 the same over TLS with `tls_cert_file`/`tls_key_file`.
    security_profile: Annotated[int, Bounds(ge=0, le=2)] = 0
    #: Profile 0 on an address other than loopback: any host that knows a charge point id could act as it.
    allow_unauthenticated: bool = False
    #: charge point id -> its AuthorizationKey hashed (`python -m gateway.adapters.ocpp.keys`), profiles 1-2.
    auth_keys: dict[str, str] = field(default_factory=dict)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    #: 0 picks a free port (tests); the adapter's `port` attribute then tells which.
    port: Annotated[int, Bounds(ge=0, le=65535)] = 9000
    #: The interval the BootNotification response gives chargers for their Heartbeat.
    heartbeat_interval_s: Annotated[int, Bounds(ge=1, le=86_400)] = 300
    #: A call that made a reading is answered once the reading is committed to the spool; if that takes
    #: longer than this (the spool stalled or failing), the charger gets an InternalError CallError and retries.
    #: Well under the 30 s a charger typically waits for an answer.
    commit_timeout_s: Annotated[float, Bounds(gt=0, le=60)] = 5.0
    #: charge point id -> connector id -> registry device id (of kind ev_charger).
    charge_points: dict[str, dict[Annotated[int, Bounds(ge=1)], str]]
    #: A recorded message file to run instead of listening (relative to the config file's folder).
    replay: Path | None = None

    def __post_init__(self) -> None:
        if not self.charge_points:
            raise ValueError("at least one charge point")
        self._check_security()
        seen: set[str] = set()
        for cp, connectors in self.charge_points.items():
            if not CHARGE_POINT_ID.match(cp):
                raise ValueError(f"charge point id {cp!r}: 1-48 of A-Z a-z 0-9 . _ -")
            if not connectors:
                raise ValueError(f"charge point {cp}: no connectors")
            for device in connectors.values():
                check_id(device, "device")
                if device in seen:
                    raise ValueError(f"device {device} is mapped twice")
                seen.add(device)

    def _check_security(self) -> None:
        from gateway.adapters.ocpp.keys import KeyProblem, check_hash  # a module `python -m` also runs

        loopback = self.host in ("127.0.0.1", "::1", "localhost")
        if self.security_profile == 0:
            if not loopback and not self.allow_unauthenticated:
                raise ValueError(
                    f"security_profile 0 on {self.host}: any host on that network could act as a charger; "
                    "set security_profile = 1 or 2 with auth_keys (or allow_unauthenticated = true on purpose)"
                )
            return
        missing = sorted(set(self.charge_points) - set(self.auth_keys))
        if missing:
            raise ValueError(f"security_profile {self.security_profile}: no auth_keys for {', '.join(missing)}")
        unknown = sorted(set(self.auth_keys) - set(self.charge_points))
        if unknown:
            raise ValueError(f"auth_keys for charge points not configured: {', '.join(unknown)}")
        for cp, stored in self.auth_keys.items():
            try:
                check_hash(stored)
            except KeyProblem as exc:
                raise ValueError(f"auth_keys.{cp}: {exc}") from None
        tls = (self.tls_cert_file is not None, self.tls_key_file is not None)
        if self.security_profile == 2 and tls != (True, True):
            raise ValueError("security_profile 2 needs tls_cert_file and tls_key_file (the gateway's certificate)")
        if self.security_profile == 1 and any(tls):
            raise ValueError("tls_cert_file/tls_key_file are for security_profile 2")


class OcppAdapter:
    def __init__(self, config: OcppConfig, replay: Path | None) -> None:
        self.config = config
        self.replay = replay
        self._devices = tuple(
            DeviceRef(device, DeviceKind.EV_CHARGER)
            for connectors in config.charge_points.values()
            for device in connectors.values()
        )
        #: The port the server listens on, set (with `ready`) once it does.
        self.port: int | None = None
        self.ready = threading.Event()
        #: The central system of the last run (its `dropped` counter), None before any.
        self.last_central: CentralSystem | None = None
        #: Whether the server keeps its state in the cursor (see `central`); tests may turn it off.
        self.persist = True
        #: Calls answered with an InternalError because their readings were not committed in time.
        self.not_committed = 0
        #: Connections refused at the handshake for a missing or wrong AuthorizationKey (profiles 1-2), or
        #: while their address is locked out after repeated wrong keys.
        self.auth_refused = 0
        #: Frames dropped because they were not shaped like OCPP-J (central.frame_problem).
        self.malformed = 0

    def devices(self) -> Sequence[DeviceRef]:
        return self._devices

    def central(self, sink: ReadingSink, *, stamp: bool, persist: bool = False) -> CentralSystem:
        """A central system putting into `sink`; `stamp=False` keeps the timestamps it is given.

        `persist=True` (the server) restores the state saved as the sink's cursor and saves each change to it,
        so that open transactions survive a restart. A replay neither reads nor moves the cursor: it starts
        from a clean state, so it gives the same readings each time it runs."""

        def emit(device: str, values: Values, ts_ms: int | None) -> None:
            sink.put(device, values, ts_ms if not stamp else None)

        def save(state: str) -> None:
            sink.put_many("", [], cursor=state)  # no readings: the cursor alone, committed with the next group

        central = CentralSystem(
            self.config.charge_points,
            self.config.heartbeat_interval_s,
            emit,
            state=sink.cursor() if persist else None,
            save=save if persist else None,
        )
        self.last_central = central
        return central

    def run(self, sink: ReadingSink, stop: threading.Event) -> None:
        if self.replay is not None:
            self._replay(self.replay, sink, stop)
            return
        from gateway.adapters.ocpp.server import serve  # the `ocpp` extra, only when it runs

        serve(self, sink, stop)

    def _replay(self, path: Path, sink: ReadingSink, stop: threading.Event) -> None:
        central = self.central(sink, stamp=False)
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if stop.is_set():
                    return
                if not line.strip():
                    continue
                try:
                    record: dict[str, Any] = json.loads(line)
                    ts, cp, (kind, _, action, payload) = int(record["ts"]), str(record["charge_point"]), record["call"]
                except (ValueError, KeyError, TypeError) as exc:
                    raise ConfigError(f"{path}:{number}: not a recorded call: {exc}") from exc
                if kind != 2 or not central.knows(cp):
                    continue
                if central.call(cp, str(action), ts, ts, camel_to_snake(payload)) is None:
                    log.info("%s:%d: %s not supported: skipped", path, number, action)


def create(config: OcppConfig, context: AdapterContext) -> OcppAdapter:
    known = {d.id: d.kind for d in context.registry_devices}
    for connectors in config.charge_points.values():
        for device in connectors.values():
            if known and device not in known:
                raise ConfigError(f"ocpp: device {device} is not assigned to gateway {context.gateway}")
            if known and known[device] is not DeviceKind.EV_CHARGER:
                raise ConfigError(f"ocpp: device {device} is a {known[device].value}, not an ev_charger")
    replay = None
    for name in ("tls_cert_file", "tls_key_file"):
        path = getattr(config, name)
        if path is not None and not path.is_absolute():
            config = replace(config, **{name: context.base_dir / path})
    if config.replay is not None:
        replay = config.replay if config.replay.is_absolute() else context.base_dir / config.replay
        if not replay.is_file():
            raise ConfigError(f"ocpp: no such file {replay}")
    return OcppAdapter(config, replay)


SPEC = AdapterSpec("ocpp", OcppConfig, create, "an OCPP 1.6J central system that EV chargers connect to")

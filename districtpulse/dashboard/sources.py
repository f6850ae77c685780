"""Where the live view's data comes from, each behind a small reader so the view adapts as the pipeline grows.

- `InfluxSource`: the readings in InfluxDB, through InfluxQL (works on 1.x and on 2.x's v1 API). Every
  query is bounded by a time range and grouped by device, so its answer is at most one row per device, or
  one row per device per bucket: the cost does not grow with the devices' reporting rate.
- `QuarantineReader`: rejected readings per reason, from ingest's SQLite quarantine (WAL: read while
  ingest writes). A missing file means nothing was rejected yet; the reader never creates it.
- `StatusTracker`: the gateways' retained status topic (`dp/v1/<district>/<gateway>/status`), kept current
  by an MQTT subscription on paho's network thread.

The collector (`districtpulse.dashboard.snapshot`) talks to the `Readings`, `Rejections` and `Statuses`
protocols, which the unit tests fake.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from aggregation.completeness import SeqAccount
from devices import KINDS, DeviceKind
from districtpulse.completeness import seq_accounts
from storage.influx import InfluxConfig, InfluxV1

log = logging.getLogger(__name__)

Value = float | str
MEASUREMENTS = {spec.measurement: kind for kind, spec in KINDS.items()}
_NOT_FIELDS = frozenset({"time", "district", "building", "device", "seq"})


@dataclass(frozen=True, slots=True)
class Latest:
    """A device's newest reading: when it was taken and its values."""

    ts_ms: int
    values: Mapping[str, Value]


@dataclass(frozen=True, slots=True)
class Registers:
    """A device's cumulative registers, one row per time bucket (the bucket's last reading)."""

    ts_ms: list[int]
    values: Mapping[str, list[float]]  # field -> one value (NaN if absent) per row


class Readings(Protocol):
    async def latest(self, district: str, since_ms: int) -> dict[str, Latest]: ...

    async def seq_accounts(self, district: str, since_ms: int, until_ms: int) -> dict[str, SeqAccount]: ...

    async def registers(self, district: str, since_ms: int, step_s: int) -> dict[str, Registers]: ...

    async def registers_before(self, district: str, before_ms: int, lookback_ms: int) -> dict[str, Latest]: ...

    async def power_series(self, district: str, since_ms: int, step_s: int) -> dict[str, list[tuple[int, float]]]: ...

    async def kpi(self, district: str, measurement: str, field: str) -> tuple[int, float] | None: ...


class Rejections(Protocol):
    def by_reason(self, district: str, since_ms: int) -> dict[str, int]: ...


def _from(kinds: list[DeviceKind] | None = None) -> str:
    chosen = kinds or list(KINDS)
    return ",".join(f'"{KINDS[k].measurement}"' for k in chosen)


def _district(district: str) -> str:
    return f"\"district\" = '{district}'"


def _rows(series: Mapping[str, Any]) -> list[dict[str, Any]]:
    columns = series["columns"]
    return [dict(zip(columns, row, strict=True)) for row in series["values"]]


def _float(value: Any) -> float:
    return float("nan") if value is None or isinstance(value, str) else float(value)


class InfluxSource:
    """`Readings` from an InfluxDB database, with InfluxQL."""

    def __init__(self, config: InfluxConfig) -> None:
        self.client = InfluxV1(config)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def latest(self, district: str, since_ms: int) -> dict[str, Latest]:
        """Each device's newest point since `since_ms` (ORDER BY time DESC LIMIT 1 applies per device)."""
        series = await self.client.query(
            f"SELECT * FROM {_from()} WHERE {_district(district)} AND time >= {since_ms}ms"
            ' GROUP BY "device" ORDER BY time DESC LIMIT 1'
        )
        out: dict[str, Latest] = {}
        for s in series:
            for row in _rows(s):
                values = {k: v for k, v in row.items() if k not in _NOT_FIELDS and v is not None}
                out[s["tags"]["device"]] = Latest(int(row["time"]), values)
        return out

    async def seq_accounts(self, district: str, since_ms: int, until_ms: int) -> dict[str, SeqAccount]:
        """Per device, what became of the readings issued in [since_ms, until_ms) (districtpulse.completeness)."""
        return await seq_accounts(self.client, district, since_ms, until_ms)

    async def registers(self, district: str, since_ms: int, step_s: int) -> dict[str, Registers]:
        """The last value of every cumulative register per `step_s` bucket since `since_ms`, per device."""
        out: dict[str, Registers] = {}
        for kind, spec in KINDS.items():
            fields = spec.cumulative_metrics
            if not fields:
                continue
            select = ", ".join(f'last("{f}") AS "{f}"' for f in fields)
            series = await self.client.query(
                f"SELECT {select} FROM {_from([kind])} WHERE {_district(district)} AND time >= {since_ms}ms"
                f' GROUP BY time({step_s}s), "device" fill(none)'
            )
            for s in series:
                rows = _rows(s)
                out[s["tags"]["device"]] = Registers(
                    [int(r["time"]) for r in rows], {f: [_float(r[f]) for r in rows] for f in fields}
                )
        return out

    async def registers_before(self, district: str, before_ms: int, lookback_ms: int) -> dict[str, Latest]:
        """Each device's last registers before `before_ms`: the base of its first interval after it."""
        out: dict[str, Latest] = {}
        for kind, spec in KINDS.items():
            fields = spec.cumulative_metrics
            if not fields:
                continue
            select = ", ".join(f'"{f}"' for f in fields)
            series = await self.client.query(
                f"SELECT {select} FROM {_from([kind])} WHERE {_district(district)}"
                f' AND time >= {before_ms - lookback_ms}ms AND time < {before_ms}ms GROUP BY "device"'
                " ORDER BY time DESC LIMIT 1"
            )
            for s in series:
                for row in _rows(s):
                    out[s["tags"]["device"]] = Latest(int(row["time"]), {f: _float(row[f]) for f in fields})
        return out

    async def power_series(self, district: str, since_ms: int, step_s: int) -> dict[str, list[tuple[int, float]]]:
        """Mean power (W) per `step_s` bucket since `since_ms`, per device that has a power metric."""
        kinds = [k for k, spec in KINDS.items() if "power" in spec.metrics]
        series = await self.client.query(
            f'SELECT mean("power") FROM {_from(kinds)} WHERE {_district(district)} AND time >= {since_ms}ms'
            f' GROUP BY time({step_s}s), "device" fill(none)'
        )
        return {s["tags"]["device"]: [(int(t), float(v)) for t, v in s["values"] if v is not None] for s in series}

    async def kpi(self, district: str, measurement: str, field: str) -> tuple[int, float] | None:
        """The newest value of a KPI series written by aggregation, or None while there is none."""
        series = await self.client.query(f'SELECT last("{field}") FROM "{measurement}" WHERE {_district(district)}')
        for s in series:
            for t, v in s["values"]:
                if v is not None:
                    return int(t), float(v)
        return None


class QuarantineReader:
    """`Rejections` from ingest's quarantine file, opened read-only per call (the file may appear later)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def by_reason(self, district: str, since_ms: int) -> dict[str, int]:
        """Quarantined readings per reason received since `since_ms` on the district's topics."""
        if not self.path.exists():
            return {}
        prefix = f"dp/v1/{district}/"
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=2.0)
        try:
            cursor = db.execute(
                "SELECT reason, sum(readings) FROM quarantine WHERE received_ms >= ? AND substr(topic, 1, ?) = ?"
                " GROUP BY reason",
                (since_ms, len(prefix), prefix),
            )
            return {str(reason): int(n) for reason, n in cursor}
        except sqlite3.OperationalError as exc:  # no table yet: ingest has not created it
            log.debug("quarantine %s not readable yet: %s", self.path, exc)
            return {}
        finally:
            db.close()


# -- gateway status ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """The last status message of a gateway, as received.

    `retained` tells whether the broker replayed it at subscription: its receive time then says nothing
    about when the gateway sent it, so the gateway's own `ts` is the only age there is.
    """

    gateway: str
    received_ms: int
    retained: bool
    doc: Mapping[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> str:
        return str(self.doc.get("state", "unknown"))


def parse_status(gateway: str, payload: bytes, received_ms: int, retained: bool) -> GatewayStatus:
    """A status payload: the gateway's JSON heartbeat, or a bare word (`online`/`offline`) as a Last Will."""
    text = payload.decode("utf-8", errors="replace").strip()
    word = text.strip('"').lower()
    if word in ("online", "offline"):
        return GatewayStatus(gateway, received_ms, retained, {"state": word})
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = {"state": "unknown", "error": "status is not valid JSON"}
    if not isinstance(doc, dict):
        doc = {"state": "unknown"}
    return GatewayStatus(gateway, received_ms, retained, doc)


class Statuses(Protocol):
    def gateways(self) -> dict[str, GatewayStatus]: ...


class StatusTracker:
    """Subscribes to the status topics of some districts and keeps each gateway's newest status."""

    def __init__(
        self,
        host: str,
        port: int,
        districts: list[str],
        *,
        client_id: str = "",
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._status: dict[str, GatewayStatus] = {}
        self._filters = [f"dp/v1/{d}/+/status" for d in districts]
        self.connected = threading.Event()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if username is not None:
            client.username_pw_set(username, password)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.reconnect_delay_set(1, 30)
        self._client = client
        self._host, self._port = host, port

    def start(self) -> None:
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Properties | None) -> None:
        if reason.is_failure:
            log.warning("status subscription refused: %s", reason)
            return
        client.subscribe([(f, 1) for f in self._filters])
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Properties | None) -> None:
        self.connected.clear()
        if reason.is_failure:
            log.warning("status subscription lost: %s", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        if len(parts) != 5:
            return
        if not msg.payload:  # an empty retained message clears the status: the gateway was retired
            with self._lock:
                self._status.pop(parts[3], None)
            return
        status = parse_status(parts[3], bytes(msg.payload), time.time_ns() // 1_000_000, bool(msg.retain))
        with self._lock:
            self._status[status.gateway] = status

    def gateways(self) -> dict[str, GatewayStatus]:
        with self._lock:
            return dict(self._status)

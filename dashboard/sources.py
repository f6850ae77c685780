"""Where the live view's data comes from, each behind a small reader so the view adapts as the pipeline grows.

- `InfluxSource`: the readings in InfluxDB, through InfluxQL (works on 1.x and on 2.x's v1 API). Every
  query is bounded by a time range and grouped by device, so its answer is at most one row per device, or
  one row per device per bucket: the cost does not grow with the devices' reporting rate.
- `QuarantineReader`: rejected readings per reason, from ingest's SQLite quarantine through storage's
  read-only view (`storage.quarantine.QuarantineView`). A missing file means nothing was rejected yet; the
  reader never creates it.
- `parse_status`: a gateway's retained status document (`dp/v1/<district>/<gateway>/status`), which the
  dashboard's MQTT link (`dashboard.mqtt.BrokerLink`) keeps per gateway.

The collector (`dashboard.snapshot`) talks to the `Readings`, `Rejections` and `Statuses`
protocols, which the unit tests fake.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from aggregation.completeness import SeqAccount
from aggregation.jobs.accounts import seq_accounts
from devices import KINDS
from storage import queries
from storage.influx import InfluxConfig, InfluxV1
from storage.quarantine import QuarantineView

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
        series = await queries.latest_points(self.client, district, since_ms)
        out: dict[str, Latest] = {}
        for s in series:
            for row in _rows(s):
                values = {k: v for k, v in row.items() if k not in _NOT_FIELDS and v is not None}
                out[s["tags"]["device"]] = Latest(int(row["time"]), values)
        return out

    async def seq_accounts(self, district: str, since_ms: int, until_ms: int) -> dict[str, SeqAccount]:
        """Per device, what became of the readings issued in [since_ms, until_ms) (aggregation.jobs.accounts)."""
        return await seq_accounts(self.client, district, since_ms, until_ms)

    async def registers(self, district: str, since_ms: int, step_s: int) -> dict[str, Registers]:
        """The last value of every cumulative register per `step_s` bucket since `since_ms`, per device."""
        out: dict[str, Registers] = {}
        for kind, spec in KINDS.items():
            fields = spec.cumulative_metrics
            if not fields:
                continue
            series = await queries.register_buckets(self.client, kind, fields, district, since_ms, step_s)
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
            series = await queries.latest_registers_before(self.client, kind, fields, district, before_ms, lookback_ms)
            for s in series:
                for row in _rows(s):
                    out[s["tags"]["device"]] = Latest(int(row["time"]), {f: _float(row[f]) for f in fields})
        return out

    async def power_series(self, district: str, since_ms: int, step_s: int) -> dict[str, list[tuple[int, float]]]:
        """Mean power (W) per `step_s` bucket since `since_ms`, per device that has a power metric."""
        kinds = [k for k, spec in KINDS.items() if "power" in spec.metrics]
        series = await queries.mean_per_bucket(self.client, kinds, "power", district, since_ms, step_s)
        return {s["tags"]["device"]: [(int(t), float(v)) for t, v in s["values"] if v is not None] for s in series}

    async def kpi(self, district: str, measurement: str, field: str) -> tuple[int, float] | None:
        """The newest value of a KPI series written by aggregation, or None while there is none."""
        series = await queries.last_value(self.client, measurement, field, district)
        for s in series:
            for t, v in s["values"]:
                if v is not None:
                    return int(t), float(v)
        return None


class QuarantineReader:
    """`Rejections` from ingest's quarantine file, through storage's read-only view (the file may appear later)."""

    def __init__(self, path: Path) -> None:
        self.view = QuarantineView(path)

    def by_reason(self, district: str, since_ms: int) -> dict[str, int]:
        """Quarantined readings per reason received since `since_ms` on the district's topics."""
        return self.view.count_readings(since_ms=since_ms, topic_prefix=f"dp/v1/{district}/")


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


#: A gateway's status document is a few hundred bytes; a larger one is refused unread (memory is bounded by the
#: fleet: one status per gateway).
MAX_STATUS_BYTES = 64 * 1024


def parse_status(gateway: str, payload: bytes, received_ms: int, retained: bool) -> GatewayStatus:
    """A status payload: the gateway's JSON heartbeat, or a bare word (`online`/`offline`) as a Last Will.

    The payload is hostile input (anyone who may publish on the topic wrote it, and a retained one is replayed
    to every refresh): it is parsed strictly (orjson: no NaN or Infinity, no number that overflows a double,
    valid UTF-8 only), a document that is not an object or is too large stands as state `unknown` with the
    reason in `error`, and `dashboard.snapshot.gateway_view` reads each field only if it has the right type."""
    if len(payload) > MAX_STATUS_BYTES:
        error = f"status of {len(payload)} bytes, more than {MAX_STATUS_BYTES}"
        return GatewayStatus(gateway, received_ms, retained, {"state": "unknown", "error": error})
    word = payload.strip().strip(b'"').lower()
    if word in (b"online", b"offline"):
        return GatewayStatus(gateway, received_ms, retained, {"state": word.decode()})
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        doc = {"state": "unknown", "error": "status is not valid JSON"}
    if not isinstance(doc, dict):
        doc = {"state": "unknown"}
    return GatewayStatus(gateway, received_ms, retained, doc)


class Statuses(Protocol):
    def gateways(self) -> dict[str, GatewayStatus]: ...

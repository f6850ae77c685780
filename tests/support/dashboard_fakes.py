"""In-memory readers and hand-made views for the dashboard's unit tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aggregation.completeness import SeqAccount
from dashboard.config import DashboardConfig
from dashboard.snapshot import (
    Chart,
    DeviceView,
    DistrictView,
    Figures,
    GatewayView,
    Quality,
    Snapshot,
)
from dashboard.sources import GatewayStatus, Latest, Registers
from devices import DeviceKind
from tests.support import registries

NOW = 1_790_000_000_000  # 2026-09-21T14:13:20Z

REGISTRY = registries.text("dashboard")  # tests/data/dashboard.toml


#: The dashboard's login configuration of the app tests: an operator (with an API token) and a viewer.
USERS = {
    "user": [
        {"name": "olga", "role": "operator", "password": "operator-pass", "token": "o" * 24},
        {"name": "vic", "role": "viewer", "password": "viewer-pass"},
    ],
    "secret": "test-secret",
}


@dataclass
class FakeReadings:
    latest_: dict[str, Latest] = field(default_factory=dict)
    accounts_: dict[str, SeqAccount] = field(default_factory=dict)
    registers_: dict[str, Registers] = field(default_factory=dict)
    before_: dict[str, Latest] = field(default_factory=dict)
    power_: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    kpis: dict[tuple[str, str], float] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    async def latest(self, district: str, since_ms: int) -> dict[str, Latest]:
        self.calls.append(("latest", since_ms))
        return {k: v for k, v in self.latest_.items() if v.ts_ms >= since_ms}

    async def seq_accounts(self, district: str, since_ms: int, until_ms: int) -> dict[str, SeqAccount]:
        self.calls.append(("seq_accounts", since_ms))
        return dict(self.accounts_)

    async def registers(self, district: str, since_ms: int, step_s: int) -> dict[str, Registers]:
        self.calls.append(("registers", since_ms))
        return dict(self.registers_)

    async def registers_before(self, district: str, before_ms: int, lookback_ms: int) -> dict[str, Latest]:
        self.calls.append(("registers_before", before_ms))
        return dict(self.before_)

    async def power_series(self, district: str, since_ms: int, step_s: int) -> dict[str, list[tuple[int, float]]]:
        return dict(self.power_)

    async def kpi(self, district: str, measurement: str, field: str) -> tuple[int, float] | None:
        value = self.kpis.get((measurement, field))
        return None if value is None else (NOW, value)


@dataclass
class FakeRejections:
    by_day: dict[str, int] = field(default_factory=dict)
    by_window: dict[str, int] = field(default_factory=dict)
    window_start: int | None = None

    def by_reason(self, district: str, since_ms: int) -> dict[str, int]:
        if self.window_start is not None and since_ms == self.window_start:
            return dict(self.by_window)
        return dict(self.by_day)


@dataclass
class FakeStatuses:
    statuses: dict[str, GatewayStatus] = field(default_factory=dict)

    def gateways(self) -> dict[str, GatewayStatus]:
        return dict(self.statuses)


def config(**sections: Mapping[str, Any]) -> DashboardConfig:
    raw: dict[str, Any] = {
        "influx": {"url": "http://127.0.0.1:9", "database": "x"},
        "mqtt": {"host": "127.0.0.1", "port": 9},
        "auth": {"open": True},
    }
    raw.update({k: dict(v) for k, v in sections.items()})
    return DashboardConfig.from_mapping(raw)


def device(
    device_id: str, *, age_s: float | None = 1.0, interval_s: float = 60.0, silent: bool = False, **kw: Any
) -> DeviceView:
    base = DeviceView(
        id=device_id,
        kind=DeviceKind.ELECTRICITY_METER,
        building="b1",
        gateway="gw1",
        submeter_of=None,
        interval_s=interval_s,
        last_seen_ms=None if age_s is None else NOW - int(age_s * 1000),
        age_s=age_s,
        silent=silent,
        values={},
        account=SeqAccount(60, 60),
    )
    return replace(base, **kw)


def gateway(gateway_id: str, state: str = "online", **kw: Any) -> GatewayView:
    return replace(GatewayView(gateway_id, "b1", 3, state), **kw)  # type: ignore[arg-type]


def district(
    *,
    devices: list[DeviceView] | None = None,
    gateways: list[GatewayView] | None = None,
    quality: Quality | None = None,
    problem: str | None = None,
) -> DistrictView:
    return DistrictView(
        id="d1",
        name="District One",
        timezone="Europe/Helsinki",
        day_start_ms=NOW - 3_600_000,
        figures=Figures(),
        savings_kwh=None,
        co2_avoided_kg=None,
        buildings=(),
        devices={d.id: d for d in devices or []},
        gateways=tuple(gateways or []),
        quality=quality or Quality(3600, SeqAccount(100, 100), 0, {}),
        chart=Chart(),
        problem=problem,
    )


def snapshot(*districts: DistrictView) -> Snapshot:
    return Snapshot(NOW, tuple(districts))


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

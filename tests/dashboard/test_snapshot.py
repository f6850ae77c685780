"""The collector on in-memory readers: every figure of the snapshot against values worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aggregation.completeness import SeqAccount
from dashboard.snapshot import Collector, local_midnight_ms
from dashboard.sources import GatewayStatus, Latest, Registers, parse_status
from devices import Registry
from tests.support.dashboard_fakes import NOW, REGISTRY, FakeReadings, FakeRejections, FakeStatuses, config

MIDNIGHT = 1_789_938_000_000  # 2026-09-21T00:00+03:00 (Helsinki, summer time): NOW is 17:13:20 local
MIN = 60_000


def test_local_midnight_in_summer_and_on_the_day_summer_time_ends() -> None:
    assert local_midnight_ms(NOW, "Europe/Helsinki") == MIDNIGHT
    noon = int(datetime(2026, 10, 25, 12, tzinfo=UTC).timestamp() * 1000)  # clocks went back at 04:00 local
    assert local_midnight_ms(noon, "Europe/Helsinki") == int(datetime(2026, 10, 24, 21, tzinfo=UTC).timestamp() * 1000)
    assert local_midnight_ms(noon, "UTC") == int(datetime(2026, 10, 25, tzinfo=UTC).timestamp() * 1000)


def readings() -> FakeReadings:
    t = [MIDNIGHT, MIDNIGHT + MIN, MIDNIGHT + 2 * MIN, MIDNIGHT + 3 * MIN]
    return FakeReadings(
        latest_={
            "em1": Latest(NOW - 30_000, {"power": 5000.0, "energy_import": 102.5}),
            "em1-sub": Latest(NOW - 30_000, {"power": 2000.0}),
            "pv1": Latest(NOW - 10_000, {"power": 3000.0}),
            "ev1": Latest(NOW - 400_000, {"power": 7000.0, "connector_status": "Charging"}),
            "em2": Latest(NOW - 5_000, {"power": 1500.0}),
        },
        accounts_={
            "em1": SeqAccount(60, 60),
            "em1-sub": SeqAccount(60, 60),
            "pv1": SeqAccount(31, 30, 0, 0, 1),
            "ev1": SeqAccount(60, 55, 0, 5, 0),
            "em2": SeqAccount(61, 58, 2, 0, 1),
            "bs2": SeqAccount(13, 13),
        },
        before_={"em1": Latest(MIDNIGHT - MIN, {"energy_import": 100.0, "energy_export": 10.0})},
        registers_={
            "em1": Registers(t[:3], {"energy_import": [100.5, 101.5, 102.5], "energy_export": [10.0, 10.5, 11.0]}),
            "em1-sub": Registers(t[:2], {"energy_import": [0.0, 50.0], "energy_export": [0.0, 0.0]}),
            "pv1": Registers(t[1:3], {"energy_production": [50.0, 54.0]}),
            "ev1": Registers(t, {"session_energy": [5.0, 6.0, 0.5, 1.5]}),  # a new session at t[2]
            "em2": Registers(t[:2], {"energy_import": [200.0, 201.0], "energy_export": [0.0, 0.0]}),
        },
        power_={
            "em1": [(t[0], 4000.0), (t[1], 5000.0)],
            "em1-sub": [(t[0], 999.0)],
            "em2": [(t[1], 1000.0)],
            "pv1": [(t[0], 2000.0)],
        },
        kpis={("kpi_savings", "savings_kwh"): 1234.5},
    )


def statuses() -> FakeStatuses:
    live = GatewayStatus(
        "gw1",
        received_ms=NOW - 10_000,
        retained=False,
        doc={
            "state": "online",
            "ts": NOW - 10_000 + 12_000,
            "version": "0.1.0",
            "clock": {"sync": "unsynchronised"},
            "spool": {"readings": 40, "oldest_age_s": 1000.0},
        },
    )
    replayed = GatewayStatus(
        "gw2", received_ms=NOW - 1_000, retained=True, doc={"state": "online", "ts": NOW - 400_000}
    )
    return FakeStatuses({"gw1": live, "gw2": replayed})


@pytest.fixture
def collector() -> Collector:
    rejections = FakeRejections(
        by_day={"non_finite": 5, "out_of_range": 1}, by_window={"non_finite": 2}, window_start=NOW - 3_600_000
    )
    return Collector(config(), Registry.from_toml(REGISTRY), readings(), rejections, statuses())


async def test_district_figures(collector: Collector) -> None:
    snap = await collector.collect(NOW)
    (d,) = snap.districts
    assert d.day_start_ms == MIDNIGHT and d.problem is None
    f = d.figures
    assert f.grid_power_w == 6500.0  # em1 + em2; the sub-meter is inside em1
    assert f.pv_power_w == 3000.0
    assert f.ev_power_w is None  # the only charger is silent: no live value
    assert f.consumption_w == 9500.0
    assert (f.chargers, f.chargers_charging) == (1, 0)
    assert f.import_kwh == pytest.approx(2.5 + 1.0)  # em1 from its pre-midnight base, em2 from its first reading
    assert f.export_kwh == pytest.approx(1.0)
    assert f.pv_kwh == pytest.approx(4.0)
    assert f.ev_kwh == pytest.approx(1.0 + 0.5 + 1.0)  # the new session counts from zero
    assert f.heat_kwh is None  # no heat meter in this district
    assert f.self_sufficiency == pytest.approx((4.0 - 1.0) / (3.5 - 1.0 + 4.0))
    assert d.savings_kwh == 1234.5 and d.co2_avoided_kg is None


async def test_buildings(collector: Collector) -> None:
    (d,) = (await collector.collect(NOW)).districts
    b1, b2 = d.buildings
    assert (b1.id, b1.device_ids, b1.silent) == ("b1", ("em1", "em1-sub", "pv1", "ev1"), 1)
    assert b1.figures.import_kwh == pytest.approx(2.5)
    assert b1.figures.self_sufficiency == pytest.approx(3.0 / 5.5)
    assert (b2.id, b2.silent, b2.figures.grid_power_w, b2.figures.pv_kwh) == ("b2", 1, 1500.0, None)
    assert b2.figures.self_sufficiency is None


async def test_device_health_and_quality(collector: Collector) -> None:
    (d,) = (await collector.collect(NOW)).districts
    assert sorted(v.id for v in d.silent) == ["bs2", "ev1"]
    assert d.devices["ev1"].age_s == 400.0 and d.devices["bs2"].age_s is None
    assert d.devices["em2"].completeness == pytest.approx(58 / 61)
    assert d.devices["bs2"].completeness == 1.0
    q = d.quality
    assert q.account == SeqAccount(60 + 60 + 31 + 60 + 61 + 13, 60 + 60 + 30 + 55 + 58 + 13, 2, 5, 2)
    assert q.completeness == pytest.approx(276 / 285)
    assert q.quarantine_rate == pytest.approx(2 / 278)
    assert dict(q.quarantined_today) == {"non_finite": 5, "out_of_range": 1}


async def test_gateways(collector: Collector) -> None:
    (d,) = (await collector.collect(NOW)).districts
    gw1, gw2 = d.gateways
    assert (gw1.state, gw1.heartbeat_age_s, gw1.skew_s, gw1.clock_sync) == ("online", 10.0, 12.0, "unsynchronised")
    assert (gw1.spool_readings, gw1.spool_oldest_age_s, gw1.version, gw1.devices) == (40, 1000.0, "0.1.0", 4)
    # A retained status replayed at subscription: its age is the gateway's own ts, 400 s > 3 heartbeats of 60 s.
    assert (gw2.state, gw2.heartbeat_age_s, gw2.skew_s) == ("late", 400.0, None)


async def test_chart_sums_main_meters_per_step(collector: Collector) -> None:
    (d,) = (await collector.collect(NOW)).districts
    c = d.chart
    assert c.ts_ms == [MIDNIGHT, MIDNIGHT + MIN]
    assert c.grid_w == [4000.0, 6000.0] and c.pv_w == [2000.0, None] and c.ev_w == [None, None]


async def test_energy_is_recomputed_only_every_energy_refresh(collector: Collector) -> None:
    await collector.collect(NOW)
    await collector.collect(NOW + 1000)
    fake = collector.readings
    assert isinstance(fake, FakeReadings)
    assert [c for c, _ in fake.calls].count("registers") == 1
    assert [c for c, _ in fake.calls].count("latest") == 2


async def test_an_unreachable_database_is_a_problem_not_a_crash() -> None:
    from storage.errors import SinkUnavailable

    class Down(FakeReadings):
        async def latest(self, district: str, since_ms: int) -> dict[str, Latest]:
            raise SinkUnavailable("connection refused")

    c = Collector(config(), Registry.from_toml(REGISTRY), Down(), FakeRejections(), FakeStatuses())
    (d,) = (await c.collect(NOW)).districts
    assert d.problem == "InfluxDB unavailable: connection refused"
    assert d.figures.grid_power_w is None and len(d.devices) == 6


@pytest.mark.parametrize(
    ("payload", "state", "doc_keys"),
    [
        (b'{"v":1,"state":"online","ts":5}', "online", {"v", "state", "ts"}),
        (b'{"v":1,"state":"offline","reason":"connection lost"}', "offline", {"v", "state", "reason"}),
        (b"offline", "offline", {"state"}),
        (b"{not json", "unknown", {"state", "error"}),
        (b"[1, 2]", "unknown", {"state"}),
    ],
)
def test_status_payloads(payload: bytes, state: str, doc_keys: set[str]) -> None:
    status = parse_status("gw", payload, 1, retained=True)
    assert status.state == state and set(status.doc) == doc_keys


async def test_as_of_pins_the_snapshot_to_a_recorded_moment() -> None:
    pinned = config(dashboard={"as_of": datetime.fromtimestamp(NOW / 1000, UTC)})
    c = Collector(pinned, Registry.from_toml(REGISTRY), readings(), FakeRejections(), statuses())
    snap = await c.collect()
    assert (snap.at_ms, snap.pinned) == (NOW, True)
    (d,) = snap.districts
    assert d.figures.grid_power_w == 6500.0  # the same figures as live at that moment

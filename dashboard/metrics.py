"""`/metrics`: the live view and the alerts in Prometheus' text format.

A custom collector reads the newest snapshot and the alert book at scrape time, so a resolved alert or a
retired device disappears from the output instead of lingering as a stale labelled gauge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from dashboard.alerts import AlertBook, Dispatcher
from dashboard.auth import RevokedSessions
from dashboard.snapshot import Snapshot
from dashboard.throttle import LoginCounters


@dataclass(slots=True)
class RefreshStats:
    refreshes: int = 0
    errors: int = 0
    last_duration_s: float = 0.0


class DashboardCollector(Collector):
    def __init__(
        self,
        snapshot: Callable[[], Snapshot | None],
        book: AlertBook,
        dispatcher: Dispatcher,
        stats: RefreshStats,
        logins: LoginCounters | None = None,
        revoked: RevokedSessions | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._book = book
        self._dispatcher = dispatcher
        self._stats = stats
        self._logins = logins
        self._revoked = revoked

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        snap = self._snapshot()
        now = 0 if snap is None else snap.at_ms
        alert = GaugeMetricFamily(
            "districtpulse_alert_active",
            "1 for each active alert (state: active, acknowledged or silenced)",
            labels=["rule", "kind", "severity", "district", "subject", "state"],
        )
        per_severity: dict[str, int] = {"critical": 0, "warning": 0, "info": 0}
        for a in self._book.active():
            f = a.finding
            alert.add_metric([f.rule, f.kind, f.severity, f.district, f.subject, a.state(now)], 1)
            per_severity[f.severity] += 1
        yield alert
        count = GaugeMetricFamily("districtpulse_alerts_active", "Active alerts per severity", labels=["severity"])
        for severity, n in per_severity.items():
            count.add_metric([severity], n)
        yield count
        notifications = CounterMetricFamily(
            "districtpulse_alert_notifications", "Alert notifications by outcome", labels=["outcome"]
        )
        notifications.add_metric(["sent"], self._dispatcher.sent)
        notifications.add_metric(["failed"], self._dispatcher.failed)
        notifications.add_metric(["dropped"], self._dispatcher.dropped)
        yield notifications
        refresh = CounterMetricFamily("districtpulse_dashboard_refreshes", "Snapshot refreshes", labels=["outcome"])
        refresh.add_metric(["ok"], self._stats.refreshes)
        refresh.add_metric(["error"], self._stats.errors)
        yield refresh
        yield GaugeMetricFamily(
            "districtpulse_dashboard_refresh_seconds", "Duration of the last refresh", value=self._stats.last_duration_s
        )
        if self._logins is not None:  # names as operators' brute-force alerts expect them (see throttle)
            failures = CounterMetricFamily(
                "districtpulse_dashboard_login_failures",
                "Refused logins and bearer tokens: bad_credentials (wrong user, password or token),"
                " locked_out (refused during a lockout)",
                labels=["reason"],
            )
            failures.add_metric(["bad_credentials"], self._logins.bad_credentials)
            failures.add_metric(["locked_out"], self._logins.locked_out)
            yield failures
            yield CounterMetricFamily(
                "districtpulse_dashboard_login_lockouts",
                "Failed logins or bearer tokens that locked a user or an address",
                value=self._logins.lockouts,
            )
        if self._revoked is not None:
            yield GaugeMetricFamily(
                "districtpulse_dashboard_sessions_revoked",
                "Logged-out sessions remembered until their expiry (a copied cookie of one is refused)",
                value=len(self._revoked),
            )
            yield CounterMetricFamily(
                "districtpulse_dashboard_sessions_revoked_dropped",
                "Revoked sessions forgotten before their expiry because the list was full (oldest-expiring first)",
                value=self._revoked.dropped,
            )
        if snap is None:
            return
        devices = GaugeMetricFamily(
            "districtpulse_devices", "Devices in the registry by state", labels=["district", "state"]
        )
        completeness = GaugeMetricFamily(
            "districtpulse_data_completeness_ratio", "Readings stored / issued over the window", labels=["district"]
        )
        fates = GaugeMetricFamily(
            "districtpulse_readings_window",
            "Readings issued over the window by what became of them (stored, quarantined, evicted, lost)",
            labels=["district", "fate"],
        )
        quarantine = GaugeMetricFamily(
            "districtpulse_quarantine_rate_ratio", "Quarantined / all readings over the window", labels=["district"]
        )
        quarantined = GaugeMetricFamily(
            "districtpulse_quarantined_today", "Readings quarantined today by reason", labels=["district", "reason"]
        )
        power = GaugeMetricFamily("districtpulse_power_watts", "Live power", labels=["district", "flow"])
        energy = GaugeMetricFamily(
            "districtpulse_energy_today_kwh", "Energy since local midnight", labels=["district", "flow"]
        )
        gw_up = GaugeMetricFamily(
            "districtpulse_gateway_up", "1 if the gateway's status is online", labels=["district", "gateway", "state"]
        )
        spool = GaugeMetricFamily(
            "districtpulse_gateway_spool_readings", "Readings in the gateway's spool", labels=["district", "gateway"]
        )
        spool_age = GaugeMetricFamily(
            "districtpulse_gateway_spool_oldest_seconds",
            "Age of the oldest spooled reading",
            labels=["district", "gateway"],
        )
        for d in snap.districts:
            silent = len(d.silent)
            devices.add_metric([d.id, "reporting"], len(d.devices) - silent)
            devices.add_metric([d.id, "silent"], silent)
            if d.quality.completeness is not None:
                completeness.add_metric([d.id], d.quality.completeness)
            for fate, n in d.quality.account.as_dict().items():
                if fate != "issued":
                    fates.add_metric([d.id, fate], n)
            if d.quality.quarantine_rate is not None:
                quarantine.add_metric([d.id], d.quality.quarantine_rate)
            for reason, n in d.quality.quarantined_today.items():
                quarantined.add_metric([d.id, reason], n)
            fig = d.figures
            for flow, watts in (("grid", fig.grid_power_w), ("pv", fig.pv_power_w), ("ev", fig.ev_power_w)):
                if watts is not None:
                    power.add_metric([d.id, flow], watts)
            for flow, kwh in (
                ("import", fig.import_kwh),
                ("export", fig.export_kwh),
                ("pv", fig.pv_kwh),
                ("heat", fig.heat_kwh),
                ("ev", fig.ev_kwh),
            ):
                if kwh is not None:
                    energy.add_metric([d.id, flow], kwh)
            for g in d.gateways:
                gw_up.add_metric([d.id, g.id, g.state], 1 if g.state == "online" else 0)
                if g.spool_readings is not None:
                    spool.add_metric([d.id, g.id], g.spool_readings)
                if g.spool_oldest_age_s is not None:
                    spool_age.add_metric([d.id, g.id], g.spool_oldest_age_s)
        yield from (devices, completeness, fates, quarantine, quarantined, power, energy, gw_up, spool, spool_age)


def exposition(collector: DashboardCollector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)

"""Each alert rule on hand-made snapshots (exact findings at and around its threshold), the alert book's
life cycle, and the dispatcher's delivery, drop and failure accounting."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from aggregation.completeness import SeqAccount
from dashboard.alerts import (
    AlertBook,
    Dispatcher,
    Finding,
    MqttNotifier,
    WebhookNotifier,
    alert_id,
    evaluate,
)
from dashboard.config import (
    ClockRule,
    CompletenessRule,
    DeviceSilentRule,
    GatewayOfflineRule,
    QuarantineRateRule,
    SpoolAgeRule,
)
from dashboard.snapshot import Quality
from tests.support.dashboard_fakes import NOW, device, district, gateway, snapshot


def subjects(findings: list[Finding]) -> dict[str, float | None]:
    return {f.subject: f.value for f in findings}


def test_device_silent_fires_past_n_intervals_only() -> None:
    rule = DeviceSilentRule(kind="device_silent", intervals=3, severity="critical")
    d = district(
        devices=[
            device("fresh", age_s=2.9, interval_s=1),
            device("at-limit", age_s=3.0, interval_s=1),
            device("late", age_s=3.1, interval_s=1),
            device("slow-kind", age_s=100.0, interval_s=60),  # 3 intervals of 60 s: not yet
            device("never", age_s=None),
        ]
    )
    found = evaluate([rule], snapshot(d))
    assert subjects(found) == {"late": 3.1, "never": None}
    assert {f.severity for f in found} == {"critical"}
    assert [f.message for f in found if f.subject == "never"] == ["never has sent no reading"]


def test_completeness_below_threshold() -> None:
    rule = CompletenessRule(kind="completeness_below", percent=95, window_s=3600)
    low = district(quality=Quality(3600, SeqAccount(100, 94, 1, 2, 3), 0, {}))
    at = district(quality=Quality(3600, SeqAccount(100, 95, 0, 0, 5), 0, {}))
    nothing_expected = district(quality=Quality(3600, SeqAccount(), 0, {}))
    assert subjects(evaluate([rule], snapshot(low))) == {"d1": pytest.approx(94.0)}
    assert evaluate([rule], snapshot(at)) == []
    assert evaluate([rule], snapshot(nothing_expected)) == []


def test_gateway_offline_and_late_but_not_unknown() -> None:
    rule = GatewayOfflineRule(kind="gateway_offline")
    d = district(
        gateways=[
            gateway("up"),
            gateway("down", "offline", reason="connection lost", spool_readings=1200),
            gateway("late", "late", heartbeat_age_s=400.0),
            gateway("never-said", "unknown"),
        ]
    )
    found = evaluate([rule], snapshot(d))
    assert subjects(found) == {"down": None, "late": 400.0}
    messages = {f.subject: f.message for f in found}
    assert messages["down"] == "gateway down offline: connection lost, 1200 readings spooled"
    assert messages["late"] == "gateway late: no heartbeat for 7 min"


def test_spool_older_than() -> None:
    rule = SpoolAgeRule(kind="spool_older_than", seconds=900)
    d = district(
        gateways=[
            gateway("young", spool_readings=10, spool_oldest_age_s=899.0),
            gateway("old", spool_readings=5000, spool_oldest_age_s=901.0),
            gateway("empty", spool_readings=0, spool_oldest_age_s=None),
        ]
    )
    assert subjects(evaluate([rule], snapshot(d))) == {"old": 901.0}


def test_quarantine_rate_above() -> None:
    rule = QuarantineRateRule(kind="quarantine_rate_above", percent=1.0, window_s=3600)
    above = district(quality=Quality(3600, SeqAccount(100, 98, 2), 2, {}))  # 2 of 100
    exactly = district(quality=Quality(3600, SeqAccount(100, 99, 1), 1, {}))  # 1 of 100: not above
    empty = district(quality=Quality(3600, SeqAccount(), 0, {}))
    assert subjects(evaluate([rule], snapshot(above))) == {"d1": pytest.approx(2.0)}
    assert evaluate([rule], snapshot(exactly)) == []
    assert evaluate([rule], snapshot(empty)) == []


def test_clock_unsynced_or_skewed_but_not_when_offline() -> None:
    rule = ClockRule(kind="clock_unsynced", max_skew_s=10)
    d = district(
        gateways=[
            gateway("ok", clock_sync="synchronised", skew_s=0.2),
            gateway("unsynced", clock_sync="unsynchronised"),
            gateway("unknown-sync", clock_sync="unknown"),
            gateway("skewed", clock_sync="synchronised", skew_s=-12.5),
            gateway("small-skew", clock_sync="synchronised", skew_s=9.9),
            gateway("offline", "offline", clock_sync="unsynchronised"),
        ]
    )
    assert subjects(evaluate([rule], snapshot(d))) == {"unsynced": None, "unknown-sync": None, "skewed": -12.5}


def test_a_district_without_data_raises_no_alert() -> None:
    """InfluxDB down: every device would look silent; the page shows the problem instead."""
    rule = DeviceSilentRule(kind="device_silent")
    d = district(devices=[device("x", age_s=None)], problem="InfluxDB unavailable")
    assert evaluate([rule], snapshot(d)) == []


def finding(subject: str, severity: str = "warning") -> Finding:
    return Finding("device_silent", "device_silent", severity, "d1", subject, f"{subject} silent")  # type: ignore[arg-type]


def test_alert_book_raises_once_keeps_and_resolves() -> None:
    book = AlertBook()
    first = book.update([finding("a"), finding("b", "critical")], NOW)
    assert [a.finding.subject for a in first.raised] == ["a", "b"]
    again = book.update([finding("a"), finding("b", "critical")], NOW + 1000)
    assert again.raised == [] and again.resolved == []
    assert [a.finding.subject for a in book.active()] == ["b", "a"]  # critical first
    assert book.active()[0].since_ms == NOW and book.active()[0].last_ms == NOW + 1000
    gone = book.update([finding("b", "critical")], NOW + 2000)
    assert [a.finding.subject for a in gone.resolved] == ["a"]
    assert gone.resolved[0].state(NOW + 2000) == "resolved"
    assert [a.finding.subject for a in book.resolved] == ["a"]
    back = book.update([finding("a"), finding("b", "critical")], NOW + 3000)
    assert [a.finding.subject for a in back.raised] == ["a"]  # a new alert, a new `since`
    assert book.get(alert_id("device_silent", "d1", "a")).since_ms == NOW + 3000  # type: ignore[union-attr]


def test_acknowledge_and_silence() -> None:
    book = AlertBook()
    book.update([finding("a"), finding("b")], NOW)
    a_id, b_id = alert_id("device_silent", "d1", "a"), alert_id("device_silent", "d1", "b")
    assert book.acknowledge(a_id, "olga", NOW + 1)
    assert book.get(a_id).state(NOW + 2) == "acknowledged"  # type: ignore[union-attr]
    assert book.silence(b_id, "olga", NOW + 60_000)
    assert book.get(b_id).state(NOW + 59_999) == "silenced"  # type: ignore[union-attr]
    assert book.get(b_id).state(NOW + 60_000) == "acknowledged"  # type: ignore[union-attr]
    assert not book.acknowledge("nope", "olga", NOW)
    assert not book.silence("nope", "olga", NOW)


class Recorder:
    name = "recorder"

    def __init__(self, fail: bool = False) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail = fail
        self.closed = False

    async def send(self, event: dict[str, Any]) -> None:
        if self.fail:
            raise ConnectionError("down")
        self.events.append(event)

    async def aclose(self) -> None:
        self.closed = True


async def test_dispatcher_sends_raised_and_resolved_but_not_silenced() -> None:
    good, bad = Recorder(), Recorder(fail=True)
    dispatcher = Dispatcher([good, bad])
    book = AlertBook()
    task = asyncio.create_task(dispatcher.run())
    dispatcher.submit(book.update([finding("a"), finding("quiet")], NOW), NOW)
    book.silence(alert_id("device_silent", "d1", "quiet"), "olga", NOW + 600_000)
    dispatcher.submit(book.update([], NOW + 1000), NOW + 1000)
    dispatcher.finish()
    await asyncio.wait_for(task, 5)
    await dispatcher.aclose()
    assert [(e["event"], e["subject"]) for e in good.events] == [
        ("raised", "a"),
        ("raised", "quiet"),
        ("resolved", "a"),
    ]
    assert good.events[2]["state"] == "resolved" and good.events[0]["severity"] == "warning"
    assert (dispatcher.sent, dispatcher.failed, dispatcher.dropped) == (3, 3, 0)
    assert good.closed and bad.closed


async def test_dispatcher_drops_when_its_queue_is_full() -> None:
    dispatcher = Dispatcher([Recorder()], maxsize=2)
    book = AlertBook()
    dispatcher.submit(book.update([finding(s) for s in "abcde"], NOW), NOW)
    assert dispatcher.pending() == 2 and dispatcher.dropped == 3


async def test_webhook_posts_json_and_fails_on_error_status() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200 if len(seen) == 1 else 500)

    hook = WebhookNotifier("http://hooks.invalid/alerts", transport=httpx.MockTransport(handler))
    await hook.send({"event": "raised", "id": "x"})
    with pytest.raises(httpx.HTTPStatusError):
        await hook.send({"event": "resolved", "id": "x"})
    await hook.aclose()
    assert seen == [{"event": "raised", "id": "x"}, {"event": "resolved", "id": "x"}]


async def test_mqtt_notifier_publishes_compact_json() -> None:
    class FakeLink:
        def __init__(self) -> None:
            self.sent: list[tuple[str, bytes, float]] = []

        async def publish(self, topic: str, payload: bytes, *, timeout_s: float = 5.0) -> None:
            self.sent.append((topic, payload, timeout_s))

    link = FakeLink()
    notifier = MqttNotifier(link, "dp/v1/alerts")
    await notifier.send({"event": "raised", "id": "x"})
    await notifier.aclose()
    assert link.sent == [("dp/v1/alerts", b'{"event":"raised","id":"x"}', 5.0)]

"""Alert rules over a snapshot, the book of active alerts, and where their changes are sent.

    rules (config) ──evaluate(snapshot)──► findings ──AlertBook.update──► raised / resolved ──► Dispatcher
                                                          │                                   (MQTT, webhook)
                                                          └── active alerts: page, SSE, /metrics

A rule is a pure function of the snapshot, so each is unit-tested on a hand-made snapshot. An alert is
identified by its rule and subject (a device, a gateway or a district): it is *raised* the first time a
finding appears, stays active while the finding repeats, and is *resolved* on the first evaluation without
it. An operator may acknowledge it (it stays listed, marked) or silence it for a while (no notification and
no page highlight until then); a viewer may do neither.

Notifications are at most once and never block evaluation: the dispatcher's queue is bounded, and an event
that does not fit is dropped and counted (`dropped`), as is a failed delivery (`failed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from dashboard.config import (
    ClockRule,
    CompletenessRule,
    DeviceSilentRule,
    GatewayOfflineRule,
    QuarantineRateRule,
    Rule,
    Severity,
    SpoolAgeRule,
    rule_name,
)
from dashboard.snapshot import DistrictView, Snapshot

log = logging.getLogger(__name__)

SEVERITY_ORDER: dict[str, int] = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule matched one subject at one evaluation."""

    rule: str
    kind: str
    severity: Severity
    district: str
    subject: str
    message: str
    value: float | None = None

    @property
    def key(self) -> str:
        return alert_id(self.rule, self.district, self.subject)


def alert_id(rule: str, district: str, subject: str) -> str:
    """A short stable id (URL-safe) for the alert of a rule on a subject."""
    return hashlib.sha256(f"{rule}\0{district}\0{subject}".encode()).hexdigest()[:16]


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _device_silent(rule: DeviceSilentRule, d: DistrictView) -> Iterator[Finding]:
    for dev in d.devices.values():
        limit = rule.intervals * dev.interval_s
        if dev.age_s is None:
            yield _finding(rule, d, dev.id, f"{dev.id} has sent no reading", None)
        elif dev.age_s > limit:
            yield _finding(rule, d, dev.id, f"{dev.id} silent for {_ago(dev.age_s)} (limit {_ago(limit)})", dev.age_s)


def _completeness(rule: CompletenessRule, d: DistrictView) -> Iterator[Finding]:
    ratio = d.quality.completeness
    if ratio is not None and ratio * 100 < rule.percent:
        yield _finding(
            rule,
            d,
            d.id,
            f"completeness {ratio * 100:.1f} % over {_ago(d.quality.window_s)} (< {rule.percent:g} %)",
            ratio * 100,
        )


def _gateway_offline(rule: GatewayOfflineRule, d: DistrictView) -> Iterator[Finding]:
    for gw in d.gateways:
        if gw.state == "offline":
            why = f": {gw.reason}" if gw.reason else ""
            spool = f", {gw.spool_readings} readings spooled" if gw.spool_readings else ""
            yield _finding(rule, d, gw.id, f"gateway {gw.id} offline{why}{spool}", gw.heartbeat_age_s)
        elif gw.state == "late" and gw.heartbeat_age_s is not None:
            yield _finding(
                rule, d, gw.id, f"gateway {gw.id}: no heartbeat for {_ago(gw.heartbeat_age_s)}", gw.heartbeat_age_s
            )


def _spool_age(rule: SpoolAgeRule, d: DistrictView) -> Iterator[Finding]:
    for gw in d.gateways:
        age = gw.spool_oldest_age_s
        if age is not None and age > rule.seconds:
            yield _finding(
                rule, d, gw.id, f"gateway {gw.id} holds readings {_ago(age)} old ({gw.spool_readings} spooled)", age
            )


def _quarantine_rate(rule: QuarantineRateRule, d: DistrictView) -> Iterator[Finding]:
    rate = d.quality.quarantine_rate
    if rate is not None and rate * 100 > rule.percent:
        yield _finding(
            rule,
            d,
            d.id,
            f"{rate * 100:.1f} % of readings quarantined over {_ago(d.quality.window_s)} (> {rule.percent:g} %)",
            rate * 100,
        )


def _clock(rule: ClockRule, d: DistrictView) -> Iterator[Finding]:
    for gw in d.gateways:
        if gw.state == "offline":
            continue  # the offline rule speaks for it; its last clock state is stale
        if gw.clock_sync is not None and gw.clock_sync != "synchronised":
            yield _finding(rule, d, gw.id, f"gateway {gw.id} clock {gw.clock_sync}", None)
        elif gw.skew_s is not None and abs(gw.skew_s) > rule.max_skew_s:
            yield _finding(rule, d, gw.id, f"gateway {gw.id} clock off by {gw.skew_s:+.1f} s", gw.skew_s)


def _finding(rule: Rule, d: DistrictView, subject: str, message: str, value: float | None) -> Finding:
    return Finding(rule_name(rule), rule.kind, rule.severity, d.id, subject, message, value)


_RULES: dict[type, Callable[[Any, DistrictView], Iterator[Finding]]] = {
    DeviceSilentRule: _device_silent,
    CompletenessRule: _completeness,
    GatewayOfflineRule: _gateway_offline,
    SpoolAgeRule: _spool_age,
    QuarantineRateRule: _quarantine_rate,
    ClockRule: _clock,
}


def evaluate(rules: Iterable[Rule], snapshot: Snapshot) -> list[Finding]:
    """Every finding of every rule on every district (a district whose data is unavailable yields none:
    its problem is shown instead, and its devices are not all declared silent because the database is)."""
    found: list[Finding] = []
    for district in snapshot.districts:
        if district.problem is not None:
            continue
        for rule in rules:
            found.extend(_RULES[type(rule)](rule, district))
    return found


# -- the book -----------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Alert:
    finding: Finding
    since_ms: int
    last_ms: int
    acknowledged_by: str | None = None
    acknowledged_ms: int | None = None
    silenced_until_ms: int | None = None
    resolved_ms: int | None = None

    @property
    def id(self) -> str:
        return self.finding.key

    def silenced(self, now_ms: int) -> bool:
        return self.silenced_until_ms is not None and now_ms < self.silenced_until_ms

    def state(self, now_ms: int) -> str:
        if self.resolved_ms is not None:
            return "resolved"
        if self.silenced(now_ms):
            return "silenced"
        return "acknowledged" if self.acknowledged_by else "active"

    def as_event(self, event: str, now_ms: int) -> dict[str, Any]:
        f = self.finding
        return {
            "event": event,
            "id": self.id,
            "rule": f.rule,
            "kind": f.kind,
            "severity": f.severity,
            "district": f.district,
            "subject": f.subject,
            "message": f.message,
            "value": f.value,
            "since_ms": self.since_ms,
            "at_ms": now_ms,
            "state": self.state(now_ms),
        }


@dataclass(frozen=True, slots=True)
class Changes:
    raised: list[Alert]
    resolved: list[Alert]


class AlertBook:
    """The active alerts, keyed by rule and subject, with the recently resolved ones (bounded)."""

    def __init__(self, *, history: int = 200) -> None:
        self._active: dict[str, Alert] = {}
        self.resolved: deque[Alert] = deque(maxlen=history)

    def update(self, findings: Iterable[Finding], now_ms: int) -> Changes:
        seen: dict[str, Finding] = {f.key: f for f in findings}
        raised = []
        for key, finding in seen.items():
            alert = self._active.get(key)
            if alert is None:
                alert = self._active[key] = Alert(finding, now_ms, now_ms)
                raised.append(alert)
            else:
                alert.finding, alert.last_ms = finding, now_ms
        resolved = [self._active.pop(key) for key in list(self._active) if key not in seen]
        for alert in resolved:
            alert.resolved_ms = now_ms
            self.resolved.appendleft(alert)
        return Changes(raised, resolved)

    def active(self) -> list[Alert]:
        """Most severe first, then oldest first."""
        return sorted(self._active.values(), key=lambda a: (SEVERITY_ORDER[a.finding.severity], a.since_ms, a.id))

    def get(self, alert_id: str) -> Alert | None:
        return self._active.get(alert_id)

    def acknowledge(self, alert_id: str, user: str, now_ms: int) -> bool:
        alert = self._active.get(alert_id)
        if alert is None:
            return False
        alert.acknowledged_by, alert.acknowledged_ms = user, now_ms
        return True

    def silence(self, alert_id: str, user: str, until_ms: int) -> bool:
        alert = self._active.get(alert_id)
        if alert is None:
            return False
        alert.silenced_until_ms = until_ms
        alert.acknowledged_by = alert.acknowledged_by or user
        return True


# -- notifications ------------------------------------------------------------------------------------------------
class Notifier(Protocol):
    name: str

    async def send(self, event: dict[str, Any]) -> None: ...

    async def aclose(self) -> None: ...


class WebhookNotifier:
    """POSTs each alert event as JSON; a non-2xx answer is a failed delivery."""

    name = "webhook"

    def __init__(self, url: str, *, timeout: float = 5.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = url
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)

    async def send(self, event: dict[str, Any]) -> None:
        response = await self._http.post(self.url, json=event)
        response.raise_for_status()

    async def aclose(self) -> None:
        await self._http.aclose()


class MqttPublish(Protocol):
    async def publish(self, topic: str, payload: bytes, *, timeout_s: float = 5.0) -> None: ...


class MqttNotifier:
    """Publishes each alert event at QoS 1 on `<topic>` through the dashboard's MQTT link (`dashboard.mqtt`),
    which the app owns and closes; a publish without a PUBACK within 5 s is a failed delivery."""

    name = "mqtt"

    def __init__(self, link: MqttPublish, topic: str) -> None:
        self.link = link
        self.topic = topic

    async def send(self, event: dict[str, Any]) -> None:
        payload = json.dumps(event, separators=(",", ":")).encode()
        await self.link.publish(self.topic, payload, timeout_s=5.0)

    async def aclose(self) -> None:
        return None  # the link is the app's: it outlives the notifier


@dataclass
class Dispatcher:
    """Sends alert events to the notifiers from one task; bounded queue, drops and failures counted."""

    notifiers: list[Notifier]
    maxsize: int = 1000
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    _queue: asyncio.Queue[dict[str, Any] | None] = field(init=False)

    def __post_init__(self) -> None:
        self._queue = asyncio.Queue(self.maxsize)

    def submit(self, changes: Changes, now_ms: int) -> None:
        if not self.notifiers:
            return
        events = [a.as_event("raised", now_ms) for a in changes.raised if not a.silenced(now_ms)]
        events += [a.as_event("resolved", now_ms) for a in changes.resolved if not a.silenced(now_ms)]
        for event in events:
            try:
                self._queue.put_nowait(event)
            except asyncio.QueueFull:
                self.dropped += 1

    async def run(self) -> None:
        """Deliver until `close()`; each notifier's failure is logged and counted, never raised."""
        while (event := await self._queue.get()) is not None:
            for notifier in self.notifiers:
                try:
                    await notifier.send(event)
                    self.sent += 1
                except Exception as exc:  # a notifier's failure must never stop the dashboard
                    self.failed += 1
                    log.warning("alert notification via %s failed: %r", notifier.name, exc)

    def finish(self) -> None:
        """Ask `run()` to return after the queued events (the owner cancels it if it takes too long)."""
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    async def aclose(self) -> None:
        for notifier in self.notifiers:
            await notifier.aclose()

    def pending(self) -> int:
        return self._queue.qsize()

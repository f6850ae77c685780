"""Server-side HTML: the pages and the sections that server-sent events replace in place.

Every page is a list of named sections; `sections(view, snapshot, ...)` renders them, the first response
embeds them and each SSE event carries them again (`{"sections": {id: html}, "chart": ...}`), so there is
one renderer and the browser's script only swaps `innerHTML`. Every value from the registry, the database
or a gateway goes through `esc()`.

The overview answers, top to bottom, what an operator asks first: is every device reporting, is the data
good, are the gateways up (the status strip), what is wrong (active alerts), then today's figures.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from dashboard.alerts import Alert
from dashboard.auth import Principal
from dashboard.snapshot import (
    BuildingView,
    DeviceView,
    DistrictView,
    Figures,
    Snapshot,
)
from devices import KINDS


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


@dataclass(frozen=True, slots=True)
class View:
    """Which page: `overview` of a district, a `building`, or a `device` (`key` is its id)."""

    page: str
    key: str


# -- number formatting --------------------------------------------------------------------------------------------
def _num(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}".replace(",", "\u202f")


def kw(watts: float | None) -> str:
    return "–" if watts is None else _num(watts / 1000, 1)


def pct(ratio: float | None, digits: int = 1) -> str:
    return "–" if ratio is None else f"{ratio * 100:.{digits}f}"


def pct_unit(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio * 100:.0f}\u2009%"


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def clock(ms: int | None, tz: str) -> str:
    if ms is None:
        return "–"
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(tz)).strftime("%H:%M:%S")


def _level(ok: bool, warn: bool = False) -> str:
    return "ok" if ok else ("warn" if warn else "bad")


# -- building blocks ----------------------------------------------------------------------------------------------
def tile(tid: str, label: str, value: str, unit: str = "", sub: str = "", level: str = "") -> str:
    unit_html = f'<span class="unit">{esc(unit)}</span>' if unit else ""
    cls = f"tile {level}".strip()
    return (
        f'<div class="{cls}" id="{esc(tid)}"><div class="label">{esc(label)}</div>'
        f'<div class="value"><span class="num">{value}</span>{unit_html}</div>'
        f'<div class="sub">{sub}</div></div>'
    )


def _table(head: Iterable[str], rows: Iterable[str], cls: str = "") -> str:
    ths = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join(rows)
    return f'<table class="{esc(cls)}"><thead><tr>{ths}</tr></thead><tbody>{body}</tbody></table>'


def badge(text: str, level: str) -> str:
    return f'<span class="badge {esc(level)}">{esc(text)}</span>'


# -- sections -----------------------------------------------------------------------------------------------------
def status_strip(d: DistrictView, alerts: list[Alert], now_ms: int) -> str:
    total = len(d.devices)
    silent = d.silent
    silent_names = ", ".join(esc(s.id) for s in silent[:4]) + (" …" if len(silent) > 4 else "")
    devices = tile(
        "st-devices",
        "Devices reporting",
        f"{d.reporting}\u2009/\u2009{total}",
        sub=("every device is reporting" if not silent else f"{len(silent)} silent: {silent_names}"),
        level=_level(not silent),
    )
    q = d.quality
    completeness = q.completeness
    quarantined_today = sum(q.quarantined_today.values())
    rate = q.quarantine_rate
    quality_ok = completeness is not None and completeness >= 0.99 and (rate or 0) <= 0.01
    quality_warn = completeness is not None and completeness >= 0.9
    quality = tile(
        "st-quality",
        "Data complete",
        pct(completeness),
        "%",
        sub=f"last {q.window_s // 60} min · {quarantined_today:,} quarantined today",
        level=_level(quality_ok, quality_warn),
    )
    online = sum(1 for g in d.gateways if g.state == "online")
    down = [g for g in d.gateways if g.state in ("offline", "late")]
    unknown = sum(1 for g in d.gateways if g.state == "unknown")
    gw_sub = (
        ", ".join(f"{esc(g.id)} {esc(g.state)}" for g in down)
        if down
        else ("all online" if not unknown else f"{unknown} without status")
    )
    gateways = tile(
        "st-gateways",
        "Gateways online",
        f"{online}\u2009/\u2009{len(d.gateways)}",
        sub=gw_sub,
        level=_level(not down and not unknown, not down),
    )
    live = [a for a in alerts if a.finding.district == d.id and not a.silenced(now_ms)]
    critical = sum(1 for a in live if a.finding.severity == "critical")
    alerts_tile = tile(
        "st-alerts",
        "Active alerts",
        str(len(live)),
        sub=(f"{critical} critical" if critical else ("none" if not live else "no critical")),
        level=_level(not live, not critical),
    )
    return f'<div class="strip">{devices}{quality}{gateways}{alerts_tile}</div>'


def figures_row(
    f: Figures, savings_kwh: float | None = None, co2_kg: float | None = None, district: bool = True
) -> str:
    consumption = f.consumption_w
    power = tile(
        "kpi-power",
        "Power now",
        kw(consumption),
        "kW",
        sub=f"grid {kw(f.grid_power_w)} kW · PV {kw(f.pv_power_w)} kW",
    )
    energy = tile(
        "kpi-energy",
        "Electricity today",
        _num(f.import_kwh),
        "kWh",
        sub=f"exported {_num(f.export_kwh)} kWh · heat {_num(f.heat_kwh)} kWh",
    )
    pv = tile(
        "kpi-self",
        "Self-sufficiency today",
        pct(f.self_sufficiency, 0),
        "%" if f.self_sufficiency is not None else "",
        sub=(f"PV {_num(f.pv_kwh)} kWh" if f.pv_kwh is not None else "no PV here"),
    )
    ev = tile(
        "kpi-ev",
        "EV charging",
        kw(f.ev_power_w),
        "kW",
        sub=(
            f"{f.chargers_charging} of {f.chargers} charging · {_num(f.ev_kwh)} kWh today"
            if f.chargers
            else "no chargers"
        ),
    )
    parts = [power, energy, pv, ev]
    if district:
        parts.append(
            tile(
                "kpi-savings",
                "Savings to date",
                _num(savings_kwh, 0) if savings_kwh is not None else "not yet computed",
                "kWh" if savings_kwh is not None else "",
                sub=(f"CO₂ avoided {_num(co2_kg, 0)} kg" if co2_kg is not None else "CO₂ avoided: not yet computed"),
                level="" if savings_kwh is not None else "muted",
            )
        )
    return f'<div class="figures">{"".join(parts)}</div>'


def alerts_section(
    alerts: list[Alert], now_ms: int, principal: Principal | None, csrf: str, district: str | None = None
) -> str:
    shown = [a for a in alerts if district is None or a.finding.district == district]
    if not shown:
        return '<h2>Active alerts</h2><p class="empty ok-text">No active alerts.</p>'
    rows = []
    for a in shown:
        f = a.finding
        state = a.state(now_ms)
        actions = ""
        if principal is not None and principal.can_act and state in ("active", "acknowledged"):
            token = f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
            ack = (
                f'<form method="post" action="/alerts/{esc(a.id)}/ack">{token}<button>Acknowledge</button></form>'
                if state == "active"
                else ""
            )
            silence = (
                f'<form method="post" action="/alerts/{esc(a.id)}/silence">{token}'
                '<input type="hidden" name="minutes" value="60"><button class="secondary">Silence 1 h</button></form>'
            )
            actions = f'<div class="actions">{ack}{silence}</div>'
        who = f" by {esc(a.acknowledged_by)}" if a.acknowledged_by and state != "active" else ""
        rows.append(
            f'<tr class="sev-{esc(f.severity)} state-{esc(state)}" data-alert="{esc(f.rule)}"'
            f' data-subject="{esc(f.subject)}">'
            f"<td>{badge(f.severity, f.severity)}</td><td>{esc(f.message)}</td><td>{esc(f.rule)}</td>"
            f"<td>{ago((now_ms - a.since_ms) / 1000)}</td><td>{esc(state)}{who}</td><td>{actions}</td></tr>"
        )
    table = _table(["severity", "what", "rule", "since", "state", ""], rows, "alerts")
    return f"<h2>Active alerts <small>({len(shown)})</small></h2>{table}"


def buildings_section(d: DistrictView) -> str:
    rows = []
    for b in d.buildings:
        f = b.figures
        per_m2 = None if f.import_kwh is None else f.import_kwh / b.floor_area_m2
        devices = len(b.device_ids)
        health = badge(f"{devices - b.silent}/{devices}", "ok" if not b.silent else "bad")
        rows.append(
            f'<tr data-building="{esc(b.id)}"><td><a href="/building/{esc(b.id)}">{esc(b.name)}</a></td>'
            f"<td>{esc(b.use)}</td><td class=n>{kw(f.consumption_w)}</td><td class=n>{_num(f.import_kwh)}</td>"
            f"<td class=n>{_num(per_m2, 3)}</td><td class=n>{_num(f.pv_kwh)}</td><td class=n>{_num(f.heat_kwh)}</td>"
            f"<td class=n>{_num(f.ev_kwh)}</td><td>{health}</td></tr>"
        )
    head = ["building", "use", "power kW", "electricity kWh", "kWh/m²", "PV kWh", "heat kWh", "EV kWh", "reporting"]
    return f"<h2>Buildings <small>today</small></h2>{_table(head, rows)}"


def gateways_section(d: DistrictView) -> str:
    rows = []
    for g in d.gateways:
        level = {"online": "ok", "late": "warn", "offline": "bad"}.get(g.state, "muted")
        clock_text = g.clock_sync or "–"
        if g.skew_s is not None and abs(g.skew_s) >= 0.5:
            clock_text += f" ({g.skew_s:+.1f} s)"
        clock_level = "ok" if g.clock_sync in (None, "synchronised") else "warn"
        spool = "–" if g.spool_readings is None else f"{g.spool_readings:,}"
        oldest = "–" if g.spool_oldest_age_s is None else ago(g.spool_oldest_age_s).replace(" ago", "")
        reason = f" <small>{esc(g.reason)}</small>" if g.reason else ""
        rows.append(
            f'<tr data-gateway="{esc(g.id)}" data-state="{esc(g.state)}">'
            f'<td title="version {esc(g.version or "unknown")}">{esc(g.id)}</td><td>{esc(g.building)}</td>'
            f"<td>{badge(g.state, level)}{reason}</td><td>{ago(g.heartbeat_age_s)}</td><td class=n>{spool}</td>"
            f'<td class=n>{oldest}</td><td><span class="{clock_level}-text">{esc(clock_text)}</span></td></tr>'
        )
    head = ["gateway", "building", "state", "heartbeat", "spooled", "oldest", "clock"]
    return f"<h2>Gateways</h2>{_table(head, rows)}"


def _value_summary(device: DeviceView) -> str:
    spec = KINDS[device.kind]
    parts = []
    for name, metric in spec.metrics.items():
        if name not in device.values or (
            metric.cumulative and name not in ("energy_import", "energy", "energy_production")
        ):
            continue
        value = device.values[name]
        if isinstance(value, str):
            if value:
                parts.append(esc(value))
            continue
        unit = metric.unit or ""
        if unit == "W":
            parts.append(f"{kw(float(value))} kW")
        else:
            parts.append(f"{_num(float(value))} {esc(unit)}")
        if len(parts) >= 3:
            break
    return " · ".join(parts)


def device_rows(devices: Iterable[DeviceView], tz: str) -> list[str]:
    rows = []
    for dev in devices:
        state = "silent" if dev.silent else "ok"
        level = "bad" if dev.silent else "ok"
        completeness = dev.completeness
        rows.append(
            f'<tr data-device="{esc(dev.id)}" data-state="{state}">'
            f'<td><a href="/device/{esc(dev.id)}">{esc(dev.id)}</a></td>'
            f"<td>{esc(dev.kind.value.replace('_', ' '))}</td>"
            f"<td>{badge('silent' if dev.silent else 'reporting', level)}</td>"
            f'<td class="last-seen">{ago(dev.age_s)}</td><td class=n>{pct_unit(completeness)}</td>'
            f'<td class="values">{_value_summary(dev)}</td></tr>'
        )
    return rows


def silent_section(d: DistrictView) -> str:
    silent = sorted(d.silent, key=lambda v: (v.age_s is not None, -(v.age_s or 0)))
    if not silent:
        return f'<h2>Device health</h2><p class="empty ok-text">All {len(d.devices)} devices are reporting.</p>'
    head = ["device", "kind", "state", "last seen", "complete", "last values"]
    return f"<h2>Silent devices <small>({len(silent)})</small></h2>{_table(head, device_rows(silent, d.timezone))}"


def quality_section(d: DistrictView) -> str:
    q = d.quality
    reasons = sorted(q.quarantined_today.items(), key=lambda kv: -kv[1])
    rows = [f'<tr data-reason="{esc(r)}"><td>{esc(r)}</td><td class=n>{n:,}</td></tr>' for r, n in reasons]
    table = (
        _table(["quarantine reason (today)", "readings"], rows)
        if rows
        else '<p class="empty ok-text">No reading quarantined today.</p>'
    )
    unsynced = [g for g in d.gateways if g.clock_sync not in (None, "synchronised")]
    clocks = (
        "<p>Clocks: " + ", ".join(f"{esc(g.id)} {badge(g.clock_sync or '', 'warn')}" for g in unsynced) + "</p>"
        if unsynced
        else '<p class="ok-text">Every gateway that reports its clock is synchronised.</p>'
    )
    rate = q.quarantine_rate
    a = q.account
    summary = (
        f"<p>{a.stored:,} of {a.issued:,} readings issued in the last {q.window_s // 60} min are stored "
        f"(<b>{pct(q.completeness)} %</b>): {a.quarantined:,} quarantined, {a.evicted:,} evicted at the edge, "
        f'<span class="{"bad-text" if a.lost else "ok-text"}">{a.lost:,} lost in transit</span>; '
        f"quarantine rate {pct(rate, 2)} %.</p>"
    )
    return f"<h2>Data quality</h2>{summary}{table}{clocks}"


def building_devices_section(d: DistrictView, b: BuildingView) -> str:
    devices = [d.devices[i] for i in b.device_ids]
    head = ["device", "kind", "state", "last seen", "complete", "last values"]
    return f"<h2>Devices <small>({len(devices)})</small></h2>{_table(head, device_rows(devices, d.timezone))}"


def device_detail_section(d: DistrictView, dev: DeviceView) -> str:
    spec = KINDS[dev.kind]
    rows = []
    for name, metric in spec.metrics.items():
        value = dev.values.get(name)
        shown = "–" if value is None else esc(value) if isinstance(value, str) else _num(float(value), 3)
        rows.append(
            f'<tr data-metric="{esc(name)}"><td>{esc(name)}</td><td class=n>{shown}</td>'
            f"<td>{esc(metric.unit or '')}</td>"
            f"<td>{esc(metric.description)}</td></tr>"
        )
    state = badge("silent" if dev.silent else "reporting", "bad" if dev.silent else "ok")
    facts = (
        f'<dl class="facts" data-device="{esc(dev.id)}" data-state="{"silent" if dev.silent else "ok"}">'
        f"<dt>state</dt><dd>{state}</dd><dt>kind</dt><dd>{esc(dev.kind.value)}</dd>"
        f'<dt>building</dt><dd><a href="/building/{esc(dev.building)}">{esc(dev.building)}</a></dd>'
        f"<dt>gateway</dt><dd>{esc(dev.gateway)}</dd>"
        f"<dt>last reading</dt><dd>{clock(dev.last_seen_ms, d.timezone)} ({ago(dev.age_s)})</dd>"
        f"<dt>expected every</dt><dd>{dev.interval_s:g} s</dd>"
        f"<dt>completeness</dt><dd>{pct(dev.completeness)} % ({dev.account.stored:,} of {dev.account.issued:,} "
        f"issued; {dev.account.quarantined:,} quarantined, {dev.account.evicted:,} evicted at the edge, "
        f"{dev.account.lost:,} lost)</dd>"
        + (f"<dt>sub-meter of</dt><dd>{esc(dev.submeter_of)}</dd>" if dev.submeter_of else "")
        + "</dl>"
    )
    return f"{facts}<h2>Latest reading</h2>{_table(['metric', 'value', 'unit', ''], rows)}"


def problem_banner(d: DistrictView) -> str:
    return f'<div class="problem">{esc(d.problem)}</div>' if d.problem else ""


def header_info(snapshot: Snapshot, d: DistrictView | None) -> str:
    tz = d.timezone if d else "UTC"
    if snapshot.pinned:
        day = datetime.fromtimestamp(snapshot.at_ms / 1000, UTC).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")
        return f'<span class="pinned">as of <b id="updated-at">{day}</b></span> <small>{esc(tz)}, recorded</small>'
    return f'updated <b id="updated-at">{clock(snapshot.at_ms, tz)}</b> <small>{esc(tz)}</small>'


# -- pages --------------------------------------------------------------------------------------------------------
def sections(
    view: View, snapshot: Snapshot, alerts: list[Alert], principal: Principal | None, csrf: str
) -> dict[str, str] | None:
    """The sections of a page, by element id; None when the page's subject does not exist."""
    now = snapshot.at_ms
    if view.page == "overview":
        d = snapshot.district(view.key)
        if d is None:
            return None
        return {
            "updated": header_info(snapshot, d),
            "problem": problem_banner(d),
            "strip": status_strip(d, alerts, now),
            "alerts": alerts_section(alerts, now, principal, csrf, d.id),
            "figures": figures_row(d.figures, d.savings_kwh, d.co2_avoided_kg),
            "buildings": buildings_section(d),
            "health": silent_section(d),
            "gateways": gateways_section(d),
            "quality": quality_section(d),
        }
    if view.page == "building":
        found = snapshot.find_building(view.key)
        if found is None:
            return None
        d, b = found
        return {
            "updated": header_info(snapshot, d),
            "problem": problem_banner(d),
            "figures": figures_row(b.figures, district=False),
            "alerts": alerts_section(
                [a for a in alerts if a.finding.subject in b.device_ids or a.finding.subject == b.id],
                now,
                principal,
                csrf,
            ),
            "devices": building_devices_section(d, b),
        }
    if view.page == "device":
        found_dev = snapshot.find_device(view.key)
        if found_dev is None:
            return None
        d, dev = found_dev
        return {
            "updated": header_info(snapshot, d),
            "problem": problem_banner(d),
            "alerts": alerts_section([a for a in alerts if a.finding.subject == dev.id], now, principal, csrf),
            "device": device_detail_section(d, dev),
        }
    return None


def chart_data(snapshot: Snapshot, view: View) -> dict[str, Any] | None:
    """uPlot's columns (seconds, then kW per series) for a district's overview."""
    if view.page != "overview":
        return None
    d = snapshot.district(view.key)
    if d is None:
        return None
    c = d.chart

    def kws(values: list[float | None]) -> list[float | None]:
        return [None if v is None else round(v / 1000, 3) for v in values]

    return {"t": [t / 1000 for t in c.ts_ms], "grid": kws(c.grid_w), "pv": kws(c.pv_w), "ev": kws(c.ev_w)}


def page(
    *,
    title: str,
    view: View,
    heading: str,
    crumbs: list[tuple[str, str]],
    body: Mapping[str, str],
    principal: Principal | None,
    layout: list[list[str]],
    tz: str = "UTC",
) -> str:
    """A full page: header, breadcrumbs and the sections in `layout` (rows of section ids)."""
    crumb_html = " › ".join(f'<a href="{esc(href)}">{esc(text)}</a>' if href else esc(text) for text, href in crumbs)
    user = (
        f'<span class="who">{esc(principal.user)} · {esc(principal.role)}</span>'
        '<form method="post" action="/logout"><button class="link">Log out</button></form>'
        if principal
        else ""
    )
    rows = []
    for row in layout:
        cells = "".join(
            f'<section id="{esc(sid)}" class="card {esc(sid)}" data-live>{body.get(sid, "")}</section>'
            if sid != "chart"
            else '<section id="chart" class="card chart"><h2>Power <small>kW, mean per step</small></h2>'
            '<div id="chart-plot"></div></section>'
            for sid in row
        )
        rows.append(f'<div class="row cols-{len(row)}">{cells}</div>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(heading)} · {esc(title)}</title>
<link rel="stylesheet" href="/static/vendor/uplot/uPlot.min.css"><link rel="stylesheet" href="/static/app.css">
<link rel="icon" href="/static/favicon.svg">
</head><body data-page="{esc(view.page)}" data-key="{esc(view.key)}" data-tz="{esc(tz)}">
<header><div class="brand">{esc(title)}</div><div class="crumbs">{crumb_html}</div>
<div class="live"><span id="live-dot" class="dot"></span><span id="live-text">connecting…</span>
<span id="updated" data-live>{body.get("updated", "")}</span></div><div class="user">{user}</div></header>
<main><h1>{esc(heading)}</h1><div id="problem" data-live>{body.get("problem", "")}</div>
{"".join(rows)}</main>
<script src="/static/vendor/uplot/uPlot.iife.min.js"></script><script src="/static/app.js"></script>
</body></html>"""


def login_page(title: str, error: str | None, next_url: str) -> str:
    message = f'<p class="error">{esc(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in · {esc(title)}</title><link rel="stylesheet" href="/static/app.css">
<link rel="icon" href="/static/favicon.svg"></head>
<body class="login"><form method="post" action="/login" class="login-box">
<div class="brand">{esc(title)}</div><h1>Operator login</h1>{message}
<input type="hidden" name="next" value="{esc(next_url)}">
<label>User <input name="user" id="user" autocomplete="username" required></label>
<label>Password or token
<input name="password" id="password" type="password" autocomplete="current-password" required></label>
<button id="login" type="submit">Log in</button></form></body></html>"""

"""Server-side HTML: the pages and the sections that server-sent events replace in place.

Every page is a list of named sections; `sections(view, snapshot, ...)` renders them, the first response
embeds them and each SSE event carries them again (`{"sections": {id: html}, "chart": ...}`), so there is
one renderer and the browser's script only swaps `innerHTML`.

The markup is in Jinja2 templates, `dashboard/templates/`: `base.html` (the skeleton), `page.html`,
`login.html`, one `sections/<id>.html` per section id and the repeated pieces (tile, table, badge, device
rows) in `macros.html`. This module decides what is shown (the numbers, which alerts, in which order) and
hands the templates plain values; the number formatters below are the templates' filters. Autoescape is on
for every template, so every value from the registry, the database or a gateway is escaped where a template
writes it. The only HTML passed in as trusted (`Markup`) is the sections' own output when `page()` embeds it.

The overview answers, top to bottom, what an operator asks first: is every device reporting, is the data
good, are the gateways up (the status strip), what is wrong (active alerts), then today's figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from dashboard.alerts import Alert
from dashboard.auth import Principal
from dashboard.snapshot import (
    BuildingView,
    DeviceView,
    DistrictView,
    Figures,
    GatewayView,
    Snapshot,
)
from devices import KINDS


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


def _local(ms: int, tz: str, fmt: str) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(tz)).strftime(fmt)


def clock(ms: int | None, tz: str) -> str:
    if ms is None:
        return "–"
    return _local(ms, tz, "%H:%M:%S")


def thousands(count: int | None) -> str:
    """A count with its thousands grouped by commas (`12,345`)."""
    return "–" if count is None else f"{count:,}"


def duration(seconds: float | None) -> str:
    """An age without "ago" (`4 min`): how old the oldest spooled reading is."""
    return "–" if seconds is None else ago(seconds).removesuffix(" ago")


def out_of(part: int, whole: int) -> str:
    return f"{part}\u2009/\u2009{whole}"


def value_summary(device: DeviceView) -> list[str]:
    """Up to three of a device's latest values as text (`12.3 kW`, `Charging`): the device rows' last values."""
    spec = KINDS[device.kind]
    parts: list[str] = []
    for name, metric in spec.metrics.items():
        if name not in device.values or (
            metric.cumulative and name not in ("energy_import", "energy", "energy_production")
        ):
            continue
        value = device.values[name]
        if isinstance(value, str):
            if value:
                parts.append(value)
            continue
        unit = metric.unit or ""
        if unit == "W":
            parts.append(f"{kw(float(value))} kW")
        else:
            parts.append(f"{_num(float(value))} {unit}")
        if len(parts) >= 3:
            break
    return parts


def _level(ok: bool, warn: bool = False) -> str:
    return "ok" if ok else ("warn" if warn else "bad")


# -- templates ----------------------------------------------------------------------------------------------------
#: The templates' environment, made once: autoescape on for every template (whatever its name), an undefined
#: name is an error rather than an empty string, and block tags leave no blank lines behind.
ENV = Environment(
    loader=PackageLoader("dashboard", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(
    num=_num,
    kw=kw,
    pct=pct,
    pct_unit=pct_unit,
    ago=ago,
    clock=clock,
    thousands=thousands,
    duration=duration,
    out_of=out_of,
)
ENV.globals["value_summary"] = value_summary


def _render(template: str, **context: Any) -> str:
    return ENV.get_template(template).render(**context)


@dataclass(frozen=True, slots=True)
class _AlertRow:
    id: str
    severity: str
    message: str
    rule: str
    subject: str
    since_s: float
    state: str
    by: str | None  # who acknowledged it, once it is no longer active
    can_act: bool  # the operator's forms: silence, and acknowledge while active
    can_ack: bool


@dataclass(frozen=True, slots=True)
class _BuildingRow:
    building: BuildingView
    per_m2: float | None
    reporting: int
    devices: int
    level: str


@dataclass(frozen=True, slots=True)
class _GatewayRow:
    gateway: GatewayView
    level: str
    clock_text: str
    clock_level: str


@dataclass(frozen=True, slots=True)
class _MetricRow:
    name: str
    value: str
    unit: str
    description: str


# -- sections -----------------------------------------------------------------------------------------------------
def status_strip(d: DistrictView, alerts: list[Alert], now_ms: int) -> str:
    silent = d.silent
    q = d.quality
    completeness = q.completeness
    rate = q.quarantine_rate
    quality_ok = completeness is not None and completeness >= 0.99 and (rate or 0) <= 0.01
    quality_warn = completeness is not None and completeness >= 0.9
    down = [(g.id, g.state) for g in d.gateways if g.state in ("offline", "late")]
    unknown = sum(1 for g in d.gateways if g.state == "unknown")
    live = [a for a in alerts if a.finding.district == d.id and not a.silenced(now_ms)]
    critical = sum(1 for a in live if a.finding.severity == "critical")
    return _render(
        "sections/strip.html",
        reporting=d.reporting,
        devices=len(d.devices),
        silent=len(silent),
        silent_ids=[s.id for s in silent[:4]],
        more_silent=len(silent) > 4,
        devices_level=_level(not silent),
        completeness=completeness,
        window_min=q.window_s // 60,
        quarantined_today=sum(q.quarantined_today.values()),
        quality_level=_level(quality_ok, quality_warn),
        online=sum(1 for g in d.gateways if g.state == "online"),
        gateways=len(d.gateways),
        down=down,
        unknown=unknown,
        gateways_level=_level(not down and not unknown, not down),
        alerts=len(live),
        critical=critical,
        alerts_level=_level(not live, not critical),
    )


def figures_row(
    f: Figures, savings_kwh: float | None = None, co2_kg: float | None = None, district: bool = True
) -> str:
    return _render("sections/figures.html", f=f, savings_kwh=savings_kwh, co2_kg=co2_kg, district=district)


def alerts_section(
    alerts: list[Alert], now_ms: int, principal: Principal | None, csrf: str, district: str | None = None
) -> str:
    rows = []
    for a in alerts:
        f = a.finding
        if district is not None and f.district != district:
            continue
        state = a.state(now_ms)
        can_act = principal is not None and principal.can_act and state in ("active", "acknowledged")
        rows.append(
            _AlertRow(
                id=a.id,
                severity=f.severity,
                message=f.message,
                rule=f.rule,
                subject=f.subject,
                since_s=(now_ms - a.since_ms) / 1000,
                state=state,
                by=a.acknowledged_by if a.acknowledged_by and state != "active" else None,
                can_act=can_act,
                can_ack=can_act and state == "active",
            )
        )
    return _render("sections/alerts.html", rows=rows, csrf=csrf)


def buildings_section(d: DistrictView) -> str:
    rows = [
        _BuildingRow(
            building=b,
            per_m2=None if b.figures.import_kwh is None else b.figures.import_kwh / b.floor_area_m2,
            reporting=len(b.device_ids) - b.silent,
            devices=len(b.device_ids),
            level="ok" if not b.silent else "bad",
        )
        for b in d.buildings
    ]
    return _render("sections/buildings.html", rows=rows)


def gateways_section(d: DistrictView) -> str:
    rows = []
    for g in d.gateways:
        clock_text = g.clock_sync or "–"
        if g.skew_s is not None and abs(g.skew_s) >= 0.5:
            clock_text += f" ({g.skew_s:+.1f} s)"
        rows.append(
            _GatewayRow(
                gateway=g,
                level={"online": "ok", "late": "warn", "offline": "bad"}.get(g.state, "muted"),
                clock_text=clock_text,
                clock_level="ok" if g.clock_sync in (None, "synchronised") else "warn",
            )
        )
    return _render("sections/gateways.html", rows=rows)


def silent_section(d: DistrictView) -> str:
    silent = sorted(d.silent, key=lambda v: (v.age_s is not None, -(v.age_s or 0)))
    return _render("sections/health.html", silent=silent, devices=len(d.devices))


def quality_section(d: DistrictView) -> str:
    q = d.quality
    return _render(
        "sections/quality.html",
        account=q.account,
        window_min=q.window_s // 60,
        completeness=q.completeness,
        rate=q.quarantine_rate,
        reasons=sorted(q.quarantined_today.items(), key=lambda kv: -kv[1]),
        unsynced=[g for g in d.gateways if g.clock_sync not in (None, "synchronised")],
    )


def building_devices_section(d: DistrictView, b: BuildingView) -> str:
    return _render("sections/devices.html", devices=[d.devices[i] for i in b.device_ids])


def device_detail_section(d: DistrictView, dev: DeviceView) -> str:
    metrics = []
    for name, metric in KINDS[dev.kind].metrics.items():
        value = dev.values.get(name)
        shown = "–" if value is None else value if isinstance(value, str) else _num(float(value), 3)
        metrics.append(_MetricRow(name, shown, metric.unit or "", metric.description))
    return _render("sections/device.html", dev=dev, tz=d.timezone, metrics=metrics)


def problem_banner(d: DistrictView) -> str:
    return _render("sections/problem.html", problem=d.problem)


def header_info(snapshot: Snapshot, d: DistrictView | None) -> str:
    tz = d.timezone if d else "UTC"
    day = _local(snapshot.at_ms, tz, "%Y-%m-%d %H:%M") if snapshot.pinned else None
    return _render("sections/updated.html", day=day, at_ms=snapshot.at_ms, tz=tz)


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
    """A full page: header, breadcrumbs and the sections in `layout` (rows of section ids).

    `body` is what `sections()` rendered: HTML already escaped by its templates, so it is embedded as is.
    """
    return _render(
        "page.html",
        title=title,
        view=view,
        heading=heading,
        crumbs=crumbs,
        sections={sid: Markup(html) for sid, html in body.items()},  # noqa: S704 (sections()' own output)
        principal=principal,
        layout=layout,
        tz=tz,
    )


def login_page(title: str, error: str | None, next_url: str) -> str:
    return _render("login.html", title=title, error=error, next_url=next_url)

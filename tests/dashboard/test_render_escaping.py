"""The templates escape what the registry, the database and the gateways say, in every section and page.

Every outside string of a hand-made snapshot (device, building and gateway names and ids, a gateway's status,
a quarantine reason, an alert's text, a user name, the page's title and breadcrumbs) carries a script tag and
an attribute breakout. The registry's id pattern would refuse most of them: the views are made by hand so the
templates are tested on their own. The last tests render the same views with autoescape off and check that
these assertions then fail, so they cannot pass by accident.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from aggregation.completeness import SeqAccount
from dashboard import render
from dashboard.alerts import Alert, Finding
from dashboard.auth import Principal
from dashboard.snapshot import BuildingView, Figures, Quality, Snapshot
from devices import DeviceKind
from tests.support.dashboard_fakes import NOW, device, district, gateway, snapshot

SCRIPT = "<script>alert(1)</script>"
BREAKOUT = '"><img src=x onerror=1>'
EVIL = SCRIPT + BREAKOUT
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img src=x onerror=1&gt;"

#: The sections that show no outside text: the header clock (a time zone that ZoneInfo accepts) and the figures.
NO_OUTSIDE_TEXT = {"updated", "figures"}


def evil(tag: str) -> str:
    return f"{tag} {EVIL}"


def hostile_snapshot() -> Snapshot:
    devices = [
        device(evil("em"), building=evil("b"), gateway=evil("gw"), submeter_of=evil("main"), silent=True),
        device(
            evil("ev"),
            kind=DeviceKind.EV_CHARGER,
            building=evil("b"),
            values={"connector_status": evil("status"), "power": 7000.0},
        ),
    ]
    gateways = [
        gateway(evil("gw"), "offline", building=evil("b"), reason=evil("reason"), version=evil("v")),
        gateway(evil("gw-clock"), "online", clock_sync=evil("clock"), skew_s=2.0),
    ]
    quality = Quality(3600, SeqAccount(100, 90, 5, 3, 2), 5, {evil("reason"): 5})
    d = district(devices=devices, gateways=gateways, quality=quality, problem=evil("problem"))
    building = BuildingView(evil("b"), evil("name"), evil("use"), 100.0, Figures(), tuple(d.devices), 1)
    return snapshot(replace(d, name=evil("district"), buildings=(building,)))


def hostile_alerts(snap: Snapshot) -> list[Alert]:
    d = snap.districts[0]
    subjects = [*d.devices, d.buildings[0].id]
    return [
        Alert(
            Finding(evil("rule"), "device_silent", "critical", d.id, subject, evil("message")),
            NOW - 60_000,
            NOW,
            acknowledged_by=evil("user") if i else None,  # one active (both forms), one acknowledged (by whom)
        )
        for i, subject in enumerate(subjects)
    ]


OPERATOR = Principal(evil("user"), "operator")


def views(snap: Snapshot) -> list[render.View]:
    d = snap.districts[0]
    return [
        render.View("overview", d.id),
        render.View("building", d.buildings[0].id),
        *(render.View("device", i) for i in d.devices),
    ]


def assert_escaped(html: str, *, carries: bool = True, where: object = "") -> None:
    """No hostile markup in `html`; with `carries`, the hostile text is there, escaped once."""
    for raw in (SCRIPT, BREAKOUT, "<script>", "<img", "onerror=1>"):
        assert raw not in html, (where, raw)
    assert "&amp;lt;" not in html, where  # escaped once, not twice
    if carries:
        assert ESCAPED in html, where


def rendered_sections() -> Iterator[tuple[render.View, str, str]]:
    snap = hostile_snapshot()
    alerts = hostile_alerts(snap)
    for view in views(snap):
        body = render.sections(view, snap, alerts, OPERATOR, "c0ffee")
        assert body is not None, view
        for sid, html in body.items():
            yield view, sid, html


def rendered_pages() -> Iterator[tuple[str, str]]:
    snap = hostile_snapshot()
    alerts = hostile_alerts(snap)
    for view in views(snap):
        body = render.sections(view, snap, alerts, OPERATOR, "c0ffee")
        assert body is not None, view
        html = render.page(
            title=evil("title"),
            view=render.View(view.page, view.key),
            heading=evil("heading"),
            crumbs=[(evil("crumb"), "/district/" + EVIL), (evil("here"), "")],
            body=body,
            principal=OPERATOR,
            layout=[["strip"], ["chart"], ["alerts", "figures"], ["buildings", "devices", "device"], ["health"]],
            tz=EVIL,
        )
        yield view.page, html
    yield "login", render.login_page(evil("title"), evil("error"), "/device/" + EVIL)


def test_every_template_escapes() -> None:
    autoescape = render.ENV.autoescape
    names = render.ENV.list_templates()
    assert {"base.html", "page.html", "login.html", "macros.html"} <= set(names)
    for name in names:
        assert (autoescape(name) if callable(autoescape) else autoescape) is True, name


def test_every_section_escapes_outside_text() -> None:
    seen = set()
    for view, sid, html in rendered_sections():
        assert_escaped(html, carries=sid not in NO_OUTSIDE_TEXT, where=(view, sid))
        seen.add(sid)
        assert f"sections/{sid}.html" in render.ENV.list_templates()  # one template per section
    assert seen == {
        "updated", "problem", "strip", "alerts", "figures", "buildings", "health", "gateways", "quality",
        "devices", "device",
    }  # fmt: skip


def test_every_page_escapes_outside_text() -> None:
    pages = dict(rendered_pages())
    assert set(pages) == {"overview", "building", "device", "login"}
    for name, html in pages.items():
        assert_escaped(html, where=name)
        assert html.count(ESCAPED) >= 3, name  # title, heading or error, and more
    assert '<div class="strip">' in pages["overview"]  # the sections are embedded as HTML, not escaped again
    assert 'data-alert="rule ' + ESCAPED + '"' in pages["device"]


@pytest.fixture
def autoescape_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same templates with autoescape off (and no cache: compiled templates keep their escaping)."""
    monkeypatch.setattr(render, "ENV", render.ENV.overlay(autoescape=False, cache_size=0))


@pytest.mark.usefixtures("autoescape_off")
def test_the_checks_fail_without_autoescape() -> None:
    assert render.ENV.autoescape is False
    for view, sid, html in rendered_sections():
        if sid in NO_OUTSIDE_TEXT:
            continue
        with pytest.raises(AssertionError):
            assert_escaped(html)
        assert SCRIPT in html, (view, sid)
    for name, html in rendered_pages():
        with pytest.raises(AssertionError):
            assert_escaped(html)
        assert SCRIPT in html, name

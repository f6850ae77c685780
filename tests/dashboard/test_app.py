"""The app over in-memory readers: login, roles, CSRF, alert actions, /metrics, escaping, redirects."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from dashboard import create_app
from dashboard.alerts import alert_id
from devices import Registry
from tests.support.dashboard_fakes import REGISTRY, USERS, FakeReadings, FakeRejections, FakeStatuses, config


@asynccontextmanager
async def make_client(
    auth: dict[str, object] | None = None, registry_text: str = REGISTRY
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, behind an in-process transport (no socket)."""
    cfg = config(auth=auth or USERS, dashboard={"refresh_s": 3600})
    app = create_app(
        cfg,
        registry=Registry.from_toml(registry_text),
        readings=FakeReadings(),
        rejections=FakeRejections(by_day={"non_finite": 3}),
        statuses=FakeStatuses(),
        notifiers=[],
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client,
    ):
        yield client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as c:
        yield c


async def login(client: httpx.AsyncClient, user: str, password: str, next_url: str = "/district/d1") -> None:
    response = await client.post("/login", data={"user": user, "password": password, "next": next_url})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == next_url
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


SILENT_BS2 = alert_id("device_silent", "d1", "bs2")


async def test_pages_need_a_login(client: httpx.AsyncClient) -> None:
    response = await client.get("/district/d1")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/district/d1"
    assert (await client.get("/api/snapshot?page=overview&key=d1")).status_code == 401
    assert (await client.get("/events?page=overview&key=d1")).status_code == 401
    assert (await client.post(f"/alerts/{SILENT_BS2}/ack")).status_code == 401
    assert (await client.get("/healthz")).text == "ok"
    form = await client.get("/login?next=/building/b1")
    assert 'name="next" value="/building/b1"' in form.text


async def test_wrong_password(client: httpx.AsyncClient) -> None:
    response = await client.post("/login", data={"user": "olga", "password": "viewer-pass"})
    assert response.status_code == 401 and "Wrong user or password." in response.text
    assert "set-cookie" not in response.headers


async def test_login_never_redirects_off_site(client: httpx.AsyncClient) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        response = await client.post("/login", data={"user": "vic", "password": "viewer-pass", "next": target})
        assert response.headers["location"] == "/", target


async def test_viewer_sees_but_cannot_act(client: httpx.AsyncClient) -> None:
    await login(client, "vic", "viewer-pass")
    page = await client.get("/district/d1")
    assert page.status_code == 200
    assert "vic · viewer" in page.text
    assert 'data-alert="device_silent" data-subject="bs2"' in page.text  # the fakes' readings are old: silent
    assert "Acknowledge" not in page.text and 'name="csrf"' not in page.text
    response = await client.post(f"/alerts/{SILENT_BS2}/ack", data={"csrf": "x"})
    assert response.status_code == 403 and "read-only" in response.text
    assert (await client.post(f"/alerts/{SILENT_BS2}/silence", data={"minutes": "60"})).status_code == 403


async def test_operator_acknowledges_and_silences_with_csrf(client: httpx.AsyncClient) -> None:
    await login(client, "olga", "operator-pass")
    page = await client.get("/district/d1")
    assert "olga · operator" in page.text
    token = csrf_of(page.text)
    assert (await client.post(f"/alerts/{SILENT_BS2}/ack", data={})).status_code == 403  # no CSRF token
    assert (await client.post(f"/alerts/{SILENT_BS2}/ack", data={"csrf": "0" * 32})).status_code == 403
    done = await client.post(
        f"/alerts/{SILENT_BS2}/ack", data={"csrf": token}, headers={"referer": "http://testserver/x"}
    )
    assert done.status_code == 303 and done.headers["location"] == "/x"
    assert (await client.post("/alerts/0000000000000000/ack", data={"csrf": token})).status_code == 404
    sections = (await client.get("/api/snapshot?page=overview&key=d1")).json()["sections"]
    row = re.search(
        r'<tr class="sev-critical state-acknowledged" data-alert="device_silent" data-subject="bs2">',
        sections["alerts"],
    )
    assert row and "acknowledged by olga" in sections["alerts"]
    bad = await client.post(f"/alerts/{SILENT_BS2}/silence", data={"csrf": token, "minutes": "-5"})
    assert bad.status_code == 400
    assert (
        await client.post(f"/alerts/{SILENT_BS2}/silence", data={"csrf": token, "minutes": "30"})
    ).status_code == 303
    metrics = (await client.get("/metrics")).text
    assert 'state="silenced",subject="bs2"} 1.0' in metrics  # labels come sorted


async def test_bearer_token_for_api_clients(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/snapshot?page=device&key=em1", headers={"authorization": "Bearer " + "o" * 24})
    assert response.status_code == 200
    assert 'data-device="em1"' in response.json()["sections"]["device"]
    assert (
        await client.get("/api/snapshot?page=device&key=em1", headers={"authorization": "Bearer nope"})
    ).status_code == 401


async def test_metrics(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    assert 'districtpulse_devices{district="d1",state="silent"} 6.0' in text
    assert 'districtpulse_quarantined_today{district="d1",reason="non_finite"} 3.0' in text
    assert 'districtpulse_alerts_active{severity="critical"} 6.0' in text  # every device silent (default rules)
    assert 'districtpulse_gateway_up{district="d1",gateway="gw1",state="unknown"} 0.0' in text
    async with make_client(auth=USERS | {"metrics_token": "m" * 20}) as locked:
        assert (await locked.get("/metrics")).status_code == 401
        assert (await locked.get("/metrics", headers={"authorization": "Bearer " + "m" * 20})).status_code == 200


async def test_drill_down_pages_and_404(client: httpx.AsyncClient) -> None:
    await login(client, "vic", "viewer-pass")
    building = await client.get("/building/b1")
    assert building.status_code == 200
    assert all(f'data-device="{d}"' in building.text for d in ("em1", "em1-sub", "pv1", "ev1"))
    assert '<a href="/district/d1">District One</a>' in building.text
    device = await client.get("/device/em1-sub")
    assert device.status_code == 200 and "sub-meter of" in device.text
    assert (await client.get("/building/nope")).status_code == 404
    assert (await client.get("/device/nope")).status_code == 404
    assert (await client.get("/")).headers["location"] == "/district/d1"


async def test_registry_text_is_escaped() -> None:
    async with make_client(
        registry_text=REGISTRY.replace('name = "Block A"', 'name = "<script>alert(1)</script>"')
    ) as c:
        await login(c, "vic", "viewer-pass")
        text = (await c.get("/district/d1")).text
        assert "<script>alert(1)</script>" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text

"""The dashboard's authentication holes of issue 12, each closed (every test here failed on the code before).

1. CSRF: required whenever the session cookie authenticated the request, whatever other `Authorization`
   header is sent; only a valid bearer token is exempt.
2. Bearer tokens are throttled per client address, like the login form (429 + Retry-After, same metrics).
3. `secure_cookie = "auto"` by default: Secure unless the dashboard binds a loopback address.
4. `/metrics` without `metrics_token` answers loopback clients only.
5. Logout revokes the session: a copied cookie is refused afterwards; the revocation list is bounded.
6. The session cookie is an itsdangerous token (URLSafeTimedSerializer), no hand-written signing.

Seen failing on d5fc832 (the code before; this file run against it, 16 failures): every test here except
`test_a_valid_bearer_token_is_exempt_from_csrf` and the `test_secure_cookie_auto` cases that expect no Secure
flag, which keep behaviour that was already right.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from dashboard import auth as auth_module
from dashboard import create_app
from dashboard.alerts import alert_id
from dashboard.auth import COOKIE, Authenticator, Principal
from dashboard.config import AuthSection, UserEntry
from dashboard.throttle import LoginThrottle
from devices import Registry
from tests.support.dashboard_fakes import (
    REGISTRY,
    USERS,
    Clock,
    FakeReadings,
    FakeRejections,
    FakeStatuses,
    config,
)

SILENT_BS2 = alert_id("device_silent", "d1", "bs2")
TOKEN = "o" * 24  # olga's API token in USERS


@asynccontextmanager
async def app_client(
    *,
    auth: dict[str, Any] | None = None,
    dashboard: dict[str, Any] | None = None,
    clock: Clock | None = None,
    peer: str = "127.0.0.1",
    base_url: str = "http://testserver",
) -> AsyncIterator[httpx.AsyncClient]:
    cfg = config(auth=auth or USERS, dashboard={"refresh_s": 3600} | (dashboard or {}))
    app = create_app(
        cfg,
        registry=Registry.from_toml(REGISTRY),
        readings=FakeReadings(),
        rejections=FakeRejections(),
        statuses=FakeStatuses(),
        notifiers=[],
        throttle=LoginThrottle(cfg.auth.throttle, clock=clock or Clock()),
    )
    transport = httpx.ASGITransport(app=app, client=(peer, 123))
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        yield client


async def login(client: httpx.AsyncClient, user: str = "olga", password: str = "operator-pass") -> httpx.Response:
    response = await client.post("/login", data={"user": user, "password": password, "next": "/district/d1"})
    assert response.status_code == 303, response.text
    return response


def metric(text: str, line_start: str) -> float:
    found = [line for line in text.splitlines() if line.startswith(line_start + " ")]
    assert len(found) == 1, (line_start, text)
    return float(found[0].rsplit(" ", 1)[1])


# -- 1. CSRF whenever the cookie authenticated ------------------------------------------------------------------
async def test_an_authorization_header_does_not_skip_csrf_for_a_cookie_session() -> None:
    async with app_client() as client:
        await login(client)
        for header in ("Basic x", "Bearer", "Token abc", "Digest y"):  # none of them is a valid bearer token
            refused = await client.post(f"/alerts/{SILENT_BS2}/ack", data={}, headers={"authorization": header})
            assert refused.status_code == 403 and "CSRF" in refused.text, header
        page = await client.get("/district/d1")
        assert page.status_code == 200 and "Acknowledge" in page.text  # still active: not acknowledged
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token
        done = await client.post(
            f"/alerts/{SILENT_BS2}/ack", data={"csrf": token.group(1)}, headers={"authorization": "Basic x"}
        )
        assert done.status_code == 303  # with the token it works, whatever the header


async def test_a_valid_bearer_token_is_exempt_from_csrf() -> None:
    async with app_client() as client:
        done = await client.post(f"/alerts/{SILENT_BS2}/ack", headers={"authorization": f"Bearer {TOKEN}"})
        assert done.status_code == 303
        assert (
            await client.post(
                f"/alerts/{SILENT_BS2}/silence", data={"minutes": "5"}, headers={"authorization": "Bearer nope"}
            )
        ).status_code == 401


def test_the_principal_says_how_it_authenticated() -> None:
    a = Authenticator(AuthSection(user=[UserEntry(name="olga", role="operator", password="p" * 8, token="t" * 16)]))
    assert a.check_token("t" * 16) == Principal("olga", "operator")
    assert a.check_token("t" * 16).via == "bearer"  # type: ignore[union-attr]
    session = a.verify(a.issue(Principal("olga", "operator")))
    assert session is not None and session.via == "cookie"


# -- 2. bearer tokens are throttled -----------------------------------------------------------------------------
async def test_wrong_bearer_tokens_lock_the_address_out() -> None:
    clock = Clock()
    async with app_client(clock=clock) as client:
        for i in range(5):
            wrong = await client.get(
                "/api/snapshot?page=overview&key=d1", headers={"authorization": f"Bearer guess{i}"}
            )
            assert wrong.status_code == 401
        refused = await client.get("/api/snapshot?page=overview&key=d1", headers={"authorization": f"Bearer {TOKEN}"})
        assert refused.status_code == 429 and refused.headers["retry-after"] == "60"  # the right token is refused too
        assert (await client.get("/events", headers={"authorization": "Bearer x"})).status_code == 429
        ack = await client.post(f"/alerts/{SILENT_BS2}/ack", headers={"authorization": f"Bearer {TOKEN}"})
        assert ack.status_code == 429 and ack.headers["retry-after"] == "60"
        text = (await client.get("/metrics")).text
        assert metric(text, 'districtpulse_dashboard_login_failures_total{reason="bad_credentials"}') == 5
        assert metric(text, 'districtpulse_dashboard_login_failures_total{reason="locked_out"}') == 3
        assert metric(text, "districtpulse_dashboard_login_lockouts_total") == 1
        login_refused = await client.post("/login", data={"user": "vic", "password": "viewer-pass"})
        assert login_refused.status_code == 429  # the same address table as the login form
        clock.now += 60
        ok = await client.get("/api/snapshot?page=overview&key=d1", headers={"authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200


async def test_bearer_lockout_is_per_address() -> None:
    clock = Clock()
    async with app_client(auth=USERS | {"throttle": {"client_ip_header": "X-Real-IP"}}, clock=clock) as client:
        for i in range(5):
            headers = {"authorization": f"Bearer guess{i}", "x-real-ip": "10.0.0.1"}
            assert (await client.get("/api/snapshot?page=overview&key=d1", headers=headers)).status_code == 401
        other = {"authorization": f"Bearer {TOKEN}", "x-real-ip": "10.0.0.2"}
        assert (await client.get("/api/snapshot?page=overview&key=d1", headers=other)).status_code == 200
        same = {"authorization": f"Bearer {TOKEN}", "x-real-ip": "10.0.0.1"}
        assert (await client.get("/api/snapshot?page=overview&key=d1", headers=same)).status_code == 429


async def test_wrong_metrics_tokens_are_throttled_too() -> None:
    async with app_client(auth=USERS | {"metrics_token": "m" * 20}) as client:
        for i in range(5):
            assert (await client.get("/metrics", headers={"authorization": f"Bearer m{i}"})).status_code == 401
        refused = await client.get("/metrics", headers={"authorization": "Bearer " + "m" * 20})
        assert refused.status_code == 429 and refused.headers["retry-after"] == "60"


# -- 3. secure_cookie = "auto" ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "setting", "base_url", "secure"),
    [
        ("0.0.0.0", None, "http://testserver", True),  # the default on a public address: Secure
        ("192.0.2.7", None, "http://testserver", True),
        ("127.0.0.1", None, "http://testserver", False),  # the demo: plain http on loopback
        ("::1", None, "http://testserver", False),
        ("localhost", None, "http://testserver", False),
        ("127.0.0.1", None, "https://testserver", True),  # behind a TLS proxy that says so: Secure
        ("0.0.0.0", False, "http://testserver", False),  # said on purpose
        ("127.0.0.1", True, "http://testserver", True),
    ],
)
async def test_secure_cookie_auto(host: str, setting: bool | None, base_url: str, secure: bool) -> None:
    auth = USERS if setting is None else USERS | {"secure_cookie": setting}
    async with app_client(auth=auth, dashboard={"host": host}, base_url=base_url) as client:
        cookie = (await login(client)).headers["set-cookie"]
        assert ("; secure" in cookie.lower()) is secure, cookie


def test_secure_cookie_default_is_auto() -> None:
    assert AuthSection().secure_cookie == "auto"
    assert AuthSection(secure_cookie=True).secure_cookie is True
    assert Authenticator(AuthSection(open=True)).secure_cookie is True  # no bind address known: safe side


# -- 4. /metrics open to loopback only --------------------------------------------------------------------------
async def test_metrics_without_a_token_answer_loopback_only() -> None:
    async with app_client(peer="10.0.0.5") as remote:
        refused = await remote.get("/metrics")
        assert refused.status_code == 403 and "metrics_token" in refused.text
    async with app_client(peer="::1") as local6:
        assert (await local6.get("/metrics")).status_code == 200
    async with app_client(peer="10.0.0.5", auth=USERS | {"metrics_token": "m" * 20}) as remote:
        assert (await remote.get("/metrics")).status_code == 401
        assert (await remote.get("/metrics", headers={"authorization": "Bearer " + "m" * 20})).status_code == 200


async def test_metrics_behind_a_local_proxy_use_the_forwarded_address() -> None:
    auth = USERS | {"throttle": {"client_ip_header": "X-Real-IP"}}
    async with app_client(auth=auth) as proxied:  # the peer is the proxy on 127.0.0.1
        assert (await proxied.get("/metrics", headers={"x-real-ip": "203.0.113.9"})).status_code == 403
        assert (await proxied.get("/metrics", headers={"x-real-ip": "127.0.0.1"})).status_code == 200
        assert (await proxied.get("/metrics")).status_code == 200  # a local scraper not going through the proxy
    async with app_client(auth=auth, peer="10.0.0.5") as direct:  # a forged header from elsewhere
        assert (await direct.get("/metrics", headers={"x-real-ip": "127.0.0.1"})).status_code == 403


# -- 5. logout revokes the session ------------------------------------------------------------------------------
async def test_logout_revokes_the_session_and_a_copied_cookie_is_refused() -> None:
    async with app_client() as client:
        await login(client)
        copied = client.cookies[COOKIE]
        assert (await client.get("/district/d1")).status_code == 200
        out = await client.post("/logout")
        assert out.status_code == 303
        client.cookies.set(COOKIE, copied)
        assert (await client.get("/district/d1")).status_code == 303  # back to the login form
        assert (await client.get("/api/snapshot?page=overview&key=d1")).status_code == 401
        assert (await client.get("/events?page=overview&key=d1")).status_code == 401
        client.cookies.clear()
        await login(client)  # a new login is a new session
        assert (await client.get("/district/d1")).status_code == 200
        text = (await client.get("/metrics")).text
        assert metric(text, "districtpulse_dashboard_sessions_revoked") == 1


def test_the_revocation_list_is_bounded_oldest_expiring_dropped_first() -> None:
    revoked = auth_module.RevokedSessions(limit=3)  # type: ignore[attr-defined]
    for sid, expires in (("a", 50.0), ("b", 10.0), ("c", 30.0), ("d", 40.0)):
        revoked.add(sid, expires, now=0.0)
    assert [s in revoked for s in "abcd"] == [True, False, True, True]  # b expired first: dropped
    assert len(revoked) == 3 and revoked.dropped == 1
    revoked.add("e", 60.0, now=35.0)  # c has expired by now: purged, not counted as a drop
    assert [s in revoked for s in "acde"] == [True, False, True, True] and revoked.dropped == 1
    revoked.add("a", 50.0, now=35.0)  # twice: once
    assert len(revoked) == 3
    revoked.add("f", 20.0, now=35.0)  # already expired: nothing to keep
    assert "f" not in revoked
    assert auth_module.RevokedSessions().limit  # type: ignore[attr-defined] == 100_000


def test_revoke_outlives_nothing_but_its_session() -> None:
    clock = Clock(1000.0)
    a = Authenticator(AuthSection(open=True, secret="s3cret", session_hours=1), clock=clock)
    cookie = a.issue(Principal("vic", "viewer"))
    assert a.verify(cookie) is not None
    a.revoke(cookie)
    assert a.verify(cookie) is None and len(a.revoked) == 1
    clock.now += 3600
    a.revoke(a.issue(Principal("vic", "viewer")))  # the first one has expired: forgotten
    assert len(a.revoked) == 1


# -- 6. itsdangerous --------------------------------------------------------------------------------------------
def test_the_session_cookie_is_an_itsdangerous_token() -> None:
    from itsdangerous import URLSafeTimedSerializer

    a = Authenticator(AuthSection(open=True, secret="s3cret"))
    cookie = a.issue(Principal("olga", "operator"))
    serializer = URLSafeTimedSerializer(
        "s3cret", salt="districtpulse.dashboard.session", signer_kwargs={"digest_method": hashlib.sha256}
    )
    payload = serializer.loads(cookie, max_age=a.session_s)
    assert payload["u"] == "olga" and payload["r"] == "operator" and len(payload["sid"]) >= 22
    assert re.fullmatch(r"[0-9a-f]{32}", a.csrf(cookie))  # the CSRF token rides in the signed session


def test_a_cookie_of_the_old_format_is_refused() -> None:
    a = Authenticator(AuthSection(open=True, secret="s3cret"))
    body = b"olga|operator|99999999999"
    sig = hmac.new(hashlib.sha256(b"s3cret").digest(), body, hashlib.sha256).hexdigest()
    old = base64.urlsafe_b64encode(body).decode().rstrip("=") + "." + sig
    assert a.verify(old) is None  # sessions issued before the change end: log in again

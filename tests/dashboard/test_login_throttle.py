"""Login throttling through the app (in-process client) and the throttle alone, on an injected clock."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from dashboard import create_app
from dashboard.config import ConfigError, DashboardConfig, ThrottleSection
from dashboard.throttle import LoginThrottle, address_key, user_key
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

WRONG = "hunter2-guess"  # never to appear in a log line


@asynccontextmanager
async def throttled(clock: Clock, **throttle: object) -> AsyncIterator[httpx.AsyncClient]:
    """The app with `auth.throttle` set as given and the login throttle on `clock`."""
    cfg = config(auth=USERS | {"throttle": throttle}, dashboard={"refresh_s": 3600})
    app = create_app(
        cfg,
        registry=Registry.from_toml(REGISTRY),
        readings=FakeReadings(),
        rejections=FakeRejections(),
        statuses=FakeStatuses(),
        notifiers=[],
        throttle=LoginThrottle(cfg.auth.throttle, clock=clock),
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client,
    ):
        yield client


async def attempt(client: httpx.AsyncClient, user: str, password: str, ip: str | None = None) -> httpx.Response:
    headers = {"x-real-ip": ip} if ip else {}
    return await client.post("/login", data={"user": user, "password": password, "next": "/x"}, headers=headers)


def metric(text: str, line_start: str) -> float:
    found = [line for line in text.splitlines() if line.startswith(line_start + " ")]
    assert len(found) == 1, (line_start, text)
    return float(found[0].rsplit(" ", 1)[1])


async def test_five_failures_then_429_with_retry_after() -> None:
    clock = Clock()
    async with throttled(clock) as client:
        for _ in range(5):
            assert (await attempt(client, "olga", WRONG)).status_code == 401
        refused = await attempt(client, "olga", WRONG)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "60"  # default lockout_s
        assert "Try again in 60 seconds" in refused.text and "set-cookie" not in refused.headers
        clock.now += 10.5
        assert (await attempt(client, "olga", WRONG)).headers["retry-after"] == "50"  # 49.5 rounded up
        text = (await client.get("/metrics")).text
        assert metric(text, 'districtpulse_dashboard_login_failures_total{reason="bad_credentials"}') == 5
        assert metric(text, 'districtpulse_dashboard_login_failures_total{reason="locked_out"}') == 2
        assert metric(text, "districtpulse_dashboard_login_lockouts_total") == 1


async def test_failures_outside_the_window_do_not_add_up() -> None:
    clock = Clock()
    async with throttled(clock, window_s=300) as client:
        for _ in range(4):
            assert (await attempt(client, "olga", WRONG)).status_code == 401
        clock.now += 300  # the first four now fall out of the window, one at a time
        for _ in range(4):
            assert (await attempt(client, "olga", WRONG)).status_code == 401
        assert (await attempt(client, "olga", "operator-pass")).status_code == 303


async def test_correct_password_refused_during_lockout_and_accepted_after() -> None:
    clock = Clock()
    async with throttled(clock) as client:
        for _ in range(5):
            await attempt(client, "olga", WRONG)
        during = await attempt(client, "olga", "operator-pass")
        assert during.status_code == 429 and "set-cookie" not in during.headers
        clock.now += 59.5
        assert (await attempt(client, "olga", "operator-pass")).headers["retry-after"] == "1"
        clock.now += 0.5
        after = await attempt(client, "olga", "operator-pass")
        assert after.status_code == 303 and after.headers["location"] == "/x" and "set-cookie" in after.headers


async def test_repeated_lockouts_double_up_to_the_cap() -> None:
    clock = Clock()
    async with throttled(clock, lockout_s=60, max_lockout_s=300) as client:
        seen = []
        for _ in range(5):
            for _ in range(5):
                assert (await attempt(client, "olga", WRONG)).status_code == 401
            wait = int((await attempt(client, "olga", "operator-pass")).headers["retry-after"])
            seen.append(wait)
            clock.now += wait
        assert seen == [60, 120, 240, 300, 300]
        text = (await client.get("/metrics")).text
        assert metric(text, "districtpulse_dashboard_login_lockouts_total") == 5
        assert metric(text, 'districtpulse_dashboard_login_failures_total{reason="bad_credentials"}') == 25


async def test_a_different_user_from_the_same_address_is_throttled() -> None:
    clock = Clock()
    async with throttled(clock, client_ip_header="X-Real-IP") as client:
        for i in range(5):  # five made-up names: no single user reaches the limit, the address does
            assert (await attempt(client, f"guess{i}", WRONG, ip="10.0.0.1")).status_code == 401
        assert (await attempt(client, "vic", "viewer-pass", ip="10.0.0.1")).status_code == 429
        assert (await attempt(client, "vic", "viewer-pass", ip="10.0.0.2")).status_code == 303
        for i in range(5):  # one user from five addresses: the user rule
            assert (await attempt(client, "olga", WRONG, ip=f"10.1.0.{i}")).status_code == 401
        assert (await attempt(client, "olga", "operator-pass", ip="10.9.9.9")).status_code == 429
        assert (await attempt(client, "vic", "viewer-pass", ip="10.9.9.9")).status_code == 303


async def test_the_proxy_header_is_ignored_unless_configured() -> None:
    async with throttled(Clock()) as client:
        for i in range(5):  # a forged header does not spread the failures over many addresses
            assert (await attempt(client, f"guess{i}", WRONG, ip=f"10.2.0.{i}")).status_code == 401
        assert (await attempt(client, "vic", "viewer-pass", ip="10.2.0.99")).status_code == 429


async def test_success_resets_the_users_counter_not_the_addresss() -> None:
    clock = Clock()
    async with throttled(clock, client_ip_header="X-Real-IP") as client:
        for _ in range(4):
            assert (await attempt(client, "olga", WRONG, ip="10.0.0.1")).status_code == 401
        assert (await attempt(client, "olga", "operator-pass", ip="10.0.0.1")).status_code == 303
        for _ in range(4):  # eight failures for olga in the window, but the success in between reset them
            assert (await attempt(client, "olga", WRONG, ip="10.0.0.2")).status_code == 401
        assert (await attempt(client, "olga", "operator-pass", ip="10.0.0.2")).status_code == 303
        assert (await attempt(client, "vic", WRONG, ip="10.0.0.1")).status_code == 401  # the address's 5th
        assert (await attempt(client, "olga", "operator-pass", ip="10.0.0.1")).status_code == 429


async def test_log_lines_name_user_and_address_never_the_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dashboard.app")
    async with throttled(Clock()) as client:
        for _ in range(4):
            await attempt(client, "olga", WRONG)
        await attempt(client, 'ev"il\nname', WRONG)
        await attempt(client, "olga", WRONG)
    records = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "dashboard_login"]
    assert len(records) == sum(r.getMessage().startswith("dashboard login") for r in caplog.records)
    lines = [r.getMessage() for r in records]
    assert lines == [
        'dashboard login failed from 127.0.0.1 for user "olga"',
    ] * 4 + [
        'dashboard login failed from 127.0.0.1 for user "ev\\"il\\nname"',
        'dashboard login lockout from 127.0.0.1 for user "ev\\"il\\nname": address locked for 60 s',
        'dashboard login refused from 127.0.0.1 for user "olga": locked out, retry after 60 s',
    ]
    fields = [r.__dict__["fields"] for r in records]
    assert fields[0] == {
        "event": "dashboard_login",
        "user": "olga",
        "client": "127.0.0.1",
        "outcome": "bad_credentials",
    }
    assert fields[5]["outcome"] == "lockout" and fields[5]["scopes"] == ["address"] and fields[5]["lockout_s"] == 60
    assert fields[6]["outcome"] == "locked_out" and fields[6]["retry_after_s"] == 60
    dumped = json.dumps([lines, fields])
    assert WRONG not in dumped and "password" not in dumped


def test_memory_stays_bounded_under_20000_made_up_names() -> None:
    throttle = LoginThrottle(ThrottleSection(), clock=Clock())
    for i in range(20_000):
        throttle.failed(f"made-up-{i}", f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}")
    assert len(throttle.users) == 10_000 and len(throttle.addresses) == 10_000
    assert "made-up-9999" not in throttle.users and "made-up-10000" in throttle.users  # oldest evicted first
    assert throttle.counters.bad_credentials == 20_000 and throttle.counters.lockouts == 0


def test_recently_used_keys_survive_eviction_and_long_names_have_a_fixed_size_key() -> None:
    clock = Clock()
    throttle = LoginThrottle(ThrottleSection(max_tracked=3), clock=clock)
    for name in ("a", "b", "c"):
        throttle.failed(name, "10.0.0.1")
    assert throttle.retry_after("a", "10.0.0.9") is None  # a lookup marks "a" recently used
    throttle.failed("d", "10.0.0.2")
    assert [k in throttle.users for k in "abcd"] == [True, False, True, True]
    long_name = "x" * 16_000
    assert user_key(long_name) == user_key("x" * 16_000) != user_key("x" * 15_999)
    assert len(user_key(long_name)) == 71 and user_key("x" * 64) == "x" * 64


def test_quiet_keys_start_over_and_addresses_are_normalised() -> None:
    clock = Clock()
    throttle = LoginThrottle(ThrottleSection(lockout_s=60, max_lockout_s=900, reset_after_s=3600), clock=clock)
    lockouts = []
    for _ in range(2):
        for _ in range(5):
            lockout = throttle.failed("olga", "10.0.0.1")
        assert lockout is not None
        lockouts.append((lockout.scopes, lockout.seconds))
        clock.now += lockout.seconds + 3600  # locked, then quiet for reset_after_s
    assert lockouts == [(("user", "address"), 60.0)] * 2  # not doubled: the history was forgotten
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff") == "2001:db8::/64"
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1" and address_key("10.0.0.1") == "10.0.0.1"


def test_throttle_config(tmp_path: Path) -> None:
    assert ThrottleSection() == ThrottleSection(
        max_failures=5, window_s=300, lockout_s=60, max_lockout_s=900, reset_after_s=3600, max_tracked=10_000
    )
    path = tmp_path / "dashboard.toml"
    path.write_text(
        "[[auth.user]]\nname = 'olga'\npassword = 'long enough'\n"
        "[auth.throttle]\nmax_failures = 3\nmax_lockout_s = 600\nclient_ip_header = 'X-Real-IP'\n"
    )
    loaded = DashboardConfig.load(path).auth.throttle
    assert (loaded.max_failures, loaded.max_lockout_s, loaded.client_ip_header) == (3, 600, "X-Real-IP")
    path.write_text("[auth]\nopen = true\n[auth.throttle]\nlockout_s = 120\nmax_lockout_s = 60\n")
    with pytest.raises(ConfigError, match="max_lockout_s must be at least lockout_s"):
        DashboardConfig.load(path)


async def test_a_proxy_header_that_is_not_an_address_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dashboard.app")
    async with throttled(Clock(), client_ip_header="X-Real-IP") as client:
        await attempt(client, "olga", WRONG, ip="10.3.0.1 for user x")  # not an address: the TCP peer
        await attempt(client, "olga", WRONG, ip="10.3.0.2, 10.3.0.9")  # a list: its first hop
    clients = [r.__dict__["fields"]["client"] for r in caplog.records if hasattr(r, "fields")]
    assert clients == ["127.0.0.1", "10.3.0.2"]

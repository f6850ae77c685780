"""The dashboard as an ASGI app (Starlette): pages, server-sent events, alert actions, /metrics.

One refresh loop per process computes a snapshot every `refresh_s`, evaluates the alert rules on it,
updates the alert book, hands the changes to the dispatcher and wakes every open event stream. A stream
renders its page's sections from the newest snapshot, so a hundred open browsers cost a hundred renders,
never a hundred database queries.

    GET  /                         -> the first district's overview
    GET  /district/{id}            overview: status strip, alerts, today's figures, chart, buildings, health
    GET  /building/{id}            a building's figures and devices
    GET  /device/{id}              a device's latest reading and health
    GET  /events?page=&key=        text/event-stream of {"sections": {...}, "chart": {...}}
    GET  /api/snapshot?page=&key=  the same, once, as JSON
    POST /alerts/{id}/ack          operator only (CSRF token, unless authenticated by a bearer token)
    POST /alerts/{id}/silence      operator only (CSRF token, the same), `minutes`
    GET  /metrics                  Prometheus: bearer token if `auth.metrics_token`, else loopback clients only
    GET  /healthz                  200 once the first snapshot exists
    GET|POST /login, POST /logout  (POST /login: 429 + Retry-After while throttled, see `throttle`; logout
                                   revokes the session, see `auth`)

Every route that takes `Authorization: Bearer` counts a wrong token against the client's address in the
login throttle, and answers 429 + Retry-After while that address is locked out.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dashboard import render
from dashboard.alerts import AlertBook, Dispatcher, MqttNotifier, Notifier, WebhookNotifier, evaluate
from dashboard.auth import COOKIE, Authenticator, Principal, is_loopback
from dashboard.config import DashboardConfig
from dashboard.metrics import DashboardCollector, RefreshStats, exposition
from dashboard.mqtt import BrokerLink
from dashboard.snapshot import Collector, Snapshot
from dashboard.sources import (
    InfluxSource,
    QuarantineReader,
    Readings,
    Rejections,
    Statuses,
)
from dashboard.throttle import Lockout, LoginThrottle
from devices import Registry
from devices.tls import client_context
from storage.influx import InfluxConfig

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
KEEPALIVE_S = 15.0
LAYOUTS = {
    "overview": [["strip"], ["alerts"], ["figures"], ["chart"], ["buildings"], ["health", "gateways"], ["quality"]],
    "building": [["figures"], ["alerts"], ["devices"]],
    "device": [["alerts"], ["device"]],
}


@dataclass
class Live:
    """The process's live state: the newest snapshot, the alert book, and the wake-up of the streams."""

    config: DashboardConfig
    registry: Registry
    collector: Collector
    auth: Authenticator
    dispatcher: Dispatcher
    throttle: LoginThrottle
    book: AlertBook = field(default_factory=AlertBook)
    snapshot: Snapshot | None = None
    stats: RefreshStats = field(default_factory=RefreshStats)
    closing: bool = False
    _tick: asyncio.Event = field(default_factory=asyncio.Event)

    async def refresh(self) -> None:
        started = time.monotonic()
        snapshot = await self.collector.collect()
        changes = self.book.update(evaluate(self.config.alerts.rule, snapshot), snapshot.at_ms)
        self.dispatcher.submit(changes, snapshot.at_ms)
        for alert in changes.raised:
            log.warning("alert raised: %s", alert.finding.message)
        for alert in changes.resolved:
            log.info("alert resolved: %s", alert.finding.message)
        self.snapshot = snapshot
        self.stats.refreshes += 1
        self.stats.last_duration_s = time.monotonic() - started
        self.wake()

    def wake(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def changed(self, wait_s: float) -> None:
        """Return at the next refresh, or after `wait_s` (a keep-alive is due)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tick.wait(), wait_s)

    async def loop(self) -> None:
        """Refresh every `refresh_s` until cancelled; a failed refresh is logged and counted, and retried."""
        while True:
            await asyncio.sleep(self.config.dashboard.refresh_s)
            try:
                await self.refresh()
            except Exception:  # the view must outlive one bad refresh (a bug shows in the log and /metrics)
                self.stats.errors += 1
                log.exception("dashboard refresh failed")


FORM_LIMIT = 16_384


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (all the dashboard posts), bounded; no multipart parser needed."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            return {}
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


@dataclass(frozen=True, slots=True)
class Throttled:
    """A bearer token from a locked-out address: refused without looking at it."""

    retry_after: int

    def response(self) -> Response:
        return PlainTextResponse(
            f"too many wrong tokens: try again in {self.retry_after} seconds",
            status_code=429,
            headers={"Retry-After": str(self.retry_after)},
        )


def _bearer(request: Request) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None for any other (or no) header."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _log_lockout(what: str, user: str, for_user: str, address: str, lockout: Lockout) -> None:
    """One log line per lockout, for the login form and for bearer tokens alike (fail2ban reads them)."""
    seconds = math.ceil(lockout.seconds)
    log.warning(
        "dashboard %s lockout from %s%s: %s locked for %d s",
        what,
        address,
        for_user,
        "+".join(lockout.scopes),
        seconds,
        extra=_login_fields(user, address, outcome="lockout", scopes=list(lockout.scopes), lockout_s=seconds),
    )


def _token_failed(live: Live, request: Request, address: str, what: str) -> None:
    """Count a wrong bearer token against the address (no user: a token names none) and log it."""
    lockout = live.throttle.failed(None, address)
    log.warning(
        "dashboard token failed from %s for %s",
        address,
        what,
        extra=_login_fields("", address, outcome="bad_token", path=request.url.path[:128]),
    )
    if lockout is not None:
        _log_lockout("token", "", "", address, lockout)


def _principal(live: Live, request: Request) -> Principal | Throttled | None:
    """Who is asking, and how they authenticated (`Principal.via`): a bearer token if one is sent (a wrong
    one is not made up for by a cookie), else the session cookie. None: not authenticated."""
    if live.auth.open:
        return Principal("anonymous", "viewer", "open")
    token = _bearer(request)
    if token is not None:
        address = _client_address(live, request)
        wait = live.throttle.retry_after(None, address)
        if wait is not None:
            return Throttled(wait)
        found = live.auth.check_token(token)
        if found is None:
            _token_failed(live, request, address, "the API")
        return found
    return live.auth.verify(request.cookies.get(COOKIE))


def _live(request: Request) -> Live:
    live: Live = request.app.state.live
    return live


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


def _safe_next(target: str | None) -> str:
    """Only a local path: never redirect a login to another site."""
    if not target or not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
        return "/"
    return target


def _view(request: Request) -> render.View:
    return render.View(request.query_params.get("page", "overview"), request.query_params.get("key", ""))


def _payload(live: Live, view: render.View, principal: Principal | None, csrf: str) -> dict[str, Any] | None:
    snap = live.snapshot
    if snap is None:
        return None
    body = render.sections(view, snap, live.book.active(), principal, csrf)
    if body is None:
        return None
    return {"at_ms": snap.at_ms, "pinned": snap.pinned, "sections": body, "chart": render.chart_data(snap, view)}


async def _page(request: Request, view: render.View) -> Response:
    live = _live(request)
    principal = _principal(live, request)
    if isinstance(principal, Throttled):
        return principal.response()
    if principal is None:
        return _login_redirect(request)
    snap = live.snapshot
    if snap is None:
        return PlainTextResponse("starting: no data yet, retry in a moment", status_code=503)
    cookie = request.cookies.get(COOKIE, "")
    body = render.sections(view, snap, live.book.active(), principal, live.auth.csrf(cookie))
    if body is None:
        return PlainTextResponse(f"no such {view.page}: {view.key}", status_code=404)
    crumbs: list[tuple[str, str]] = []
    heading = view.key
    tz = "UTC"
    if view.page == "overview":
        d = snap.district(view.key)
        heading = d.name if d else view.key
        tz = d.timezone if d else tz
        crumbs = [(heading, "")]
    elif view.page == "building":
        found = snap.find_building(view.key)
        if found:
            d, b = found
            heading = b.name
            crumbs = [(d.name, f"/district/{d.id}"), (b.name, "")]
    else:
        found_dev = snap.find_device(view.key)
        if found_dev:
            d, dev = found_dev
            b_found = snap.find_building(dev.building)
            b_name = b_found[1].name if b_found else dev.building
            crumbs = [(d.name, f"/district/{d.id}"), (b_name, f"/building/{dev.building}"), (dev.id, "")]
    html = render.page(
        title=live.config.dashboard.title,
        view=view,
        heading=heading,
        crumbs=crumbs,
        body=body,
        principal=principal,
        layout=LAYOUTS[view.page],
        tz=tz,
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


async def home(request: Request) -> Response:
    live = _live(request)
    first = next(iter(live.registry.districts))
    return RedirectResponse(f"/district/{first}", status_code=303)


async def district_page(request: Request) -> Response:
    return await _page(request, render.View("overview", request.path_params["district"]))


async def building_page(request: Request) -> Response:
    return await _page(request, render.View("building", request.path_params["building"]))


async def device_page(request: Request) -> Response:
    return await _page(request, render.View("device", request.path_params["device"]))


async def snapshot_api(request: Request) -> Response:
    live = _live(request)
    principal = _principal(live, request)
    if isinstance(principal, Throttled):
        return principal.response()
    if principal is None:
        return JSONResponse({"error": "login required"}, status_code=401)
    payload = _payload(live, _view(request), principal, live.auth.csrf(request.cookies.get(COOKIE, "")))
    if payload is None:
        return JSONResponse({"error": "no such view or no data yet"}, status_code=404)
    return JSONResponse(payload)


async def events(request: Request) -> Response:
    live = _live(request)
    principal = _principal(live, request)
    if isinstance(principal, Throttled):
        return principal.response()
    if principal is None:
        return PlainTextResponse("login required", status_code=401)
    view = _view(request)
    cookie = request.cookies.get(COOKIE)
    csrf = live.auth.csrf(cookie)

    def still_valid() -> bool:  # a session that expires or is logged out ends its open streams too
        return principal.via != "cookie" or live.auth.verify(cookie) is not None

    async def stream() -> AsyncIterator[str]:
        yield f"retry: {int(max(live.config.dashboard.refresh_s, 1) * 1000)}\n\n"
        last_at: int | None = None
        while not live.closing and still_valid():
            snap = live.snapshot
            if snap is not None and snap.at_ms != last_at:
                last_at = snap.at_ms
                payload = _payload(live, view, principal, csrf)
                if payload is None:
                    yield "event: gone\ndata: {}\n\n"
                    return
                yield f"event: snapshot\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"
            else:
                yield ": keepalive\n\n"
            await live.changed(KEEPALIVE_S)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def login_form(request: Request) -> Response:
    live = _live(request)
    return HTMLResponse(
        render.login_page(live.config.dashboard.title, None, _safe_next(request.query_params.get("next")))
    )


def _client_address(live: Live, request: Request) -> str:
    """The client's IP: the configured proxy header's first address if it is one, else the TCP peer.

    A header value that is not an IP address is ignored rather than trusted: it is written into the log
    lines that fail2ban reads, and used as a throttling key.
    """
    header = live.config.auth.throttle.client_ip_header
    if header:
        value = request.headers.get(header, "").split(",")[0].strip()
        with contextlib.suppress(ValueError):
            return str(ipaddress.ip_address(value))
    return request.client.host if request.client else "?"


def _login_fields(user: str, address: str, **more: object) -> dict[str, object]:
    """The structured part of a login log line: never the password."""
    return {"fields": {"event": "dashboard_login", "user": user[:64], "client": address, **more}}


async def login(request: Request) -> Response:
    """Throttle check first (no password check while locked), then the credentials.

    Log lines put the address right after a fixed prefix and before the (quoted) user name, so a fail2ban
    filter such as `dashboard login failed from <HOST> ` cannot be steered by a crafted name.
    """
    live = _live(request)
    form = await _form(request)
    user, password = str(form.get("user", "")), str(form.get("password", ""))
    next_url = _safe_next(str(form.get("next", "/")))
    address = _client_address(live, request)
    shown = json.dumps(user[:64])  # quoted and escaped: a name cannot forge a second log line
    wait = live.throttle.retry_after(user, address)
    if wait is not None:  # refused before the password is looked at
        log.warning(
            "dashboard login refused from %s for user %s: locked out, retry after %d s",
            address,
            shown,
            wait,
            extra=_login_fields(user, address, outcome="locked_out", retry_after_s=wait),
        )
        message = f"Too many failed logins. Try again in {wait} seconds."
        page = render.login_page(live.config.dashboard.title, message, next_url)
        return HTMLResponse(page, status_code=429, headers={"Retry-After": str(wait)})
    principal = live.auth.check_password(user, password)
    if principal is None:
        lockout = live.throttle.failed(user, address)
        log.warning(
            "dashboard login failed from %s for user %s",
            address,
            shown,
            extra=_login_fields(user, address, outcome="bad_credentials"),
        )
        if lockout is not None:
            _log_lockout("login", user, f" for user {shown}", address, lockout)
        page = render.login_page(live.config.dashboard.title, "Wrong user or password.", next_url)
        return HTMLResponse(page, status_code=401)
    live.throttle.succeeded(user)
    response = RedirectResponse(next_url, status_code=303)
    response.set_cookie(
        COOKIE,
        live.auth.issue(principal),
        max_age=live.auth.session_s,
        httponly=True,
        samesite="strict",
        secure=live.auth.secure_cookie or request.url.scheme == "https",
    )
    log.info("dashboard login: %s (%s)", principal.user, principal.role)
    return response


async def logout(request: Request) -> Response:
    """Revoke the session (a copy of the cookie is refused from now on) and delete the cookie."""
    live = _live(request)
    if live.auth.revoke(request.cookies.get(COOKIE)):
        log.info("dashboard logout")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, httponly=True, samesite="strict")
    return response


async def _alert_action(request: Request, action: str) -> Response:
    live = _live(request)
    principal = _principal(live, request)
    if isinstance(principal, Throttled):
        return principal.response()
    if principal is None:
        return PlainTextResponse("login required", status_code=401)
    if not principal.can_act:
        return PlainTextResponse("read-only: viewers cannot change alerts", status_code=403)
    form = await _form(request)
    # Only a bearer token is exempt: a cookie is sent by the browser on its own, whatever other header the
    # request carries, so a request it authenticated must prove it came from our page.
    if principal.via != "bearer" and not live.auth.check_csrf(request.cookies.get(COOKIE), str(form.get("csrf", ""))):
        return PlainTextResponse("missing or wrong CSRF token", status_code=403)
    alert_id = request.path_params["alert"]
    now_ms = time.time_ns() // 1_000_000
    if action == "ack":
        done = live.book.acknowledge(alert_id, principal.user, now_ms)
    else:
        try:
            minutes = float(str(form.get("minutes", "60")))
        except ValueError:
            return PlainTextResponse("minutes must be a number", status_code=400)
        if not 0 < minutes <= 7 * 24 * 60:
            return PlainTextResponse("minutes must be in (0, 10080]", status_code=400)
        done = live.book.silence(alert_id, principal.user, now_ms + int(minutes * 60_000))
    if not done:
        return PlainTextResponse("no such active alert", status_code=404)
    log.info("alert %s %s by %s", alert_id, action, principal.user)
    live.wake()
    referer = request.headers.get("referer")
    back = _safe_next(urlsplit(referer).path if referer else "/")
    return RedirectResponse(back, status_code=303)


async def ack(request: Request) -> Response:
    return await _alert_action(request, "ack")


async def silence(request: Request) -> Response:
    return await _alert_action(request, "silence")


def _from_loopback(live: Live, request: Request) -> bool:
    """The TCP peer is loopback, and so is the proxy header's address if one is configured and sent: a local
    reverse proxy (whose peer is 127.0.0.1) does not make every client it forwards local."""
    if not is_loopback(request.client.host if request.client else None):
        return False
    header = live.config.auth.throttle.client_ip_header
    value = request.headers.get(header, "").split(",")[0].strip() if header else ""
    return not value or is_loopback(value)


async def metrics(request: Request) -> Response:
    live = _live(request)
    if live.auth.metrics_token_set:
        address = _client_address(live, request)
        wait = live.throttle.retry_after(None, address)
        if wait is not None:
            return Throttled(wait).response()
        if not live.auth.metrics_allowed(request.headers.get("authorization"), False):
            if _bearer(request) is not None:
                _token_failed(live, request, address, "/metrics")
            return PlainTextResponse("bearer token required", status_code=401)
    elif not live.auth.metrics_allowed(None, _from_loopback(live, request)):
        return PlainTextResponse(
            "/metrics answers loopback clients only: set auth.metrics_token to scrape from elsewhere", status_code=403
        )
    collector = DashboardCollector(
        lambda: live.snapshot, live.book, live.dispatcher, live.stats, live.throttle.counters, live.auth.revoked
    )
    return Response(exposition(collector), media_type="text/plain; version=0.0.4; charset=utf-8")


async def healthz(request: Request) -> Response:
    live = _live(request)
    if live.snapshot is None:
        return PlainTextResponse("starting", status_code=503)
    return PlainTextResponse("ok")


def _notifiers(config: DashboardConfig, link: BrokerLink | None) -> list[Notifier]:
    notifiers: list[Notifier] = []
    alerts = config.alerts
    if alerts.webhook_url:
        notifiers.append(WebhookNotifier(alerts.webhook_url, timeout=alerts.webhook_timeout_s))
    if alerts.mqtt_topic and link is not None:
        notifiers.append(MqttNotifier(link, alerts.mqtt_topic))
    return notifiers


def create_app(
    config: DashboardConfig,
    *,
    registry: Registry | None = None,
    readings: Readings | None = None,
    rejections: Rejections | None = None,
    statuses: Statuses | None = None,
    notifiers: list[Notifier] | None = None,
    throttle: LoginThrottle | None = None,
) -> Starlette:
    """The app; the readers default to the real InfluxDB, quarantine file and MQTT status topics.

    `throttle` defaults to one from `auth.throttle` on the monotonic clock (tests inject a clock).
    """
    reg = registry or Registry.load(config.dashboard.registry)
    auth = Authenticator(config.auth, bind_host=config.dashboard.host)
    login_throttle = throttle if throttle is not None else LoginThrottle(config.auth.throttle)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        influx: InfluxSource | None = None
        link: BrokerLink | None = None
        source = readings
        if source is None:
            cfg = config.influx
            influx = InfluxSource(
                InfluxConfig(
                    url=cfg.url, database=cfg.database, username=cfg.username, password=cfg.secret(), timeout=10
                )
            )
            source = influx
        status_source = statuses
        if status_source is None or (notifiers is None and config.alerts.mqtt_topic):
            link = BrokerLink(
                config.mqtt.host,
                config.mqtt.port,
                list(reg.districts) if status_source is None else [],
                client_id=config.mqtt.client_id,
                username=config.mqtt.username,
                password=config.mqtt.secret(),
                tls=(
                    client_context(config.mqtt.ca_file, config.mqtt.cert_file, config.mqtt.key_file)
                    if config.mqtt.ca_file is not None
                    else None
                ),
            )
            await link.start()  # up to 3 s for the connection and the retained statuses behind it
            status_source = status_source or link
        collector = Collector(
            config, reg, source, rejections or QuarantineReader(config.quarantine_path), status_source
        )
        dispatcher = Dispatcher(notifiers if notifiers is not None else _notifiers(config, link))
        live = Live(config, reg, collector, auth, dispatcher, login_throttle)
        app.state.live = live
        try:
            await live.refresh()
        except Exception:  # start anyway: the loop retries, /healthz says 503 until a snapshot exists
            live.stats.errors += 1
            log.exception("first dashboard refresh failed")
        loop_task = asyncio.create_task(live.loop(), name="dashboard-refresh")
        send_task = asyncio.create_task(dispatcher.run(), name="alert-dispatch")
        try:
            yield
        finally:
            live.closing = True
            live.wake()
            loop_task.cancel()
            dispatcher.finish()
            try:
                await asyncio.wait_for(send_task, 5)
            except TimeoutError:
                send_task.cancel()
            await dispatcher.aclose()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
            if influx is not None:
                await influx.aclose()
            if link is not None:
                await link.aclose()

    routes = [
        Route("/", home),
        Route("/district/{district}", district_page),
        Route("/building/{building}", building_page),
        Route("/device/{device}", device_page),
        Route("/events", events),
        Route("/api/snapshot", snapshot_api),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/alerts/{alert}/ack", ack, methods=["POST"]),
        Route("/alerts/{alert}/silence", silence, methods=["POST"]),
        Route("/metrics", metrics),
        Route("/healthz", healthz),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)

"""Operator login: configured users with a password and/or a token, two roles, a signed session cookie.

- Credentials are compared in constant time (`hmac.compare_digest` on SHA-256 digests, so the length of
  a guess tells nothing either), and every configured user is checked on every attempt.
- The session cookie is an itsdangerous `URLSafeTimedSerializer` token (HMAC-SHA256, salt
  `districtpulse.dashboard.session`, the same machinery as Starlette's SessionMiddleware) over
  `{"u": user, "r": role, "sid": session id, "c": CSRF token}` and its signing time; it is valid for
  `session_hours` after that. HttpOnly, SameSite=Strict (a cross-site form cannot post with it), Secure
  unless the dashboard binds a loopback address (`auth.secure_cookie = "auto"`, see `config`). A restart
  with the same `secret` keeps sessions valid, a new secret (the default: random at start) ends them all.
  Cookies of the hand-signed format used before itsdangerous are refused: their holders log in again.
- Logout revokes the session: its id is kept in `RevokedSessions` until the session would have expired
  (in memory, bounded; a restart forgets it, as it forgets everything else not in the cookie).
- Each state-changing form carries the session's CSRF token (random per session, inside the signed
  cookie), checked on POST whenever the cookie authenticated the request; only a request authenticated
  by a bearer token is exempt (it carries no ambient credential a cross-site page could borrow).
- Roles: `operator` may acknowledge and silence alerts; `viewer` may only look. API clients send
  `Authorization: Bearer <token>` instead of a cookie.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import ipaddress
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

from dashboard.config import AuthSection, Role, SecureCookie

COOKIE = "dp_session"
SESSION_SALT = "districtpulse.dashboard.session"
MAX_REVOKED = 100_000

#: How a request was authenticated: a session cookie, a bearer token, a password (the login form), or not
#: at all (`auth.open`). Only "bearer" skips the CSRF check.
Via = Literal["cookie", "bearer", "password", "open"]


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    role: Role
    via: Via = field(default="cookie", compare=False)

    @property
    def can_act(self) -> bool:
        return self.role == "operator"


@dataclass(frozen=True, slots=True)
class _Credential:
    user: str
    role: Role
    password: bytes | None = field(repr=False)
    token: bytes | None = field(repr=False)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 (also IPv4-mapped) and `localhost`; anything else, wildcards included, is not."""
    if not host:
        return False
    if host.strip().lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def secure_cookie_for(setting: SecureCookie, bind_host: str | None) -> bool:
    """`auth.secure_cookie` resolved: "auto" is Secure unless the dashboard binds a loopback address."""
    if setting == "auto":
        return not is_loopback(bind_host)
    return setting


class RevokedSessions:
    """Session ids ended by logout, each kept until its session would have expired anyway.

    Bounded: at most `limit` ids; beyond that the one expiring first is dropped (and counted in `dropped`:
    that cookie is valid again until its expiry, which is the nearest of all). Expired ids are purged on
    every `add`, so a steady rate of logouts stays well below the limit.
    """

    def __init__(self, limit: int = MAX_REVOKED) -> None:
        self.limit = limit
        self.dropped = 0
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, sid: object) -> bool:
        return sid in self._expiry

    def _purge(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, sid = heapq.heappop(self._heap)
            del self._expiry[sid]

    def add(self, sid: str, expires: float, now: float) -> None:
        self._purge(now)
        if expires <= now or sid in self._expiry:
            return
        self._expiry[sid] = expires
        heapq.heappush(self._heap, (expires, sid))
        while len(self._expiry) > self.limit:
            _, oldest = heapq.heappop(self._heap)
            del self._expiry[oldest]
            self.dropped += 1


class _ClockSigner(TimestampSigner):
    """itsdangerous' TimestampSigner on an injected clock (tests issue and verify at chosen moments)."""

    def __init__(self, *args: Any, clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


class Authenticator:
    def __init__(
        self, section: AuthSection, *, bind_host: str | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.open = section.open
        self.session_s = int(section.session_hours * 3600)
        self.secure_cookie = secure_cookie_for(section.secure_cookie, bind_host)
        self._clock = clock
        secret: str | bytes | None = section.secret
        if section.secret_env is not None:
            secret = os.environ.get(section.secret_env) or secret
        self._secret: str | bytes = secret or secrets.token_bytes(32)
        self._sessions = self._serializer(clock)
        self.revoked = RevokedSessions()
        self._users = []
        for u in section.user:
            password, token = u.resolved_password(), u.resolved_token()
            self._users.append(
                _Credential(
                    u.name,
                    u.role,
                    None if password is None else _digest(password),
                    None if token is None else _digest(token),
                )
            )
        metrics = section.metrics_token
        if section.metrics_token_env is not None:
            metrics = os.environ.get(section.metrics_token_env) or metrics
        self._metrics_token = None if metrics is None else _digest(metrics)

    # -- credentials ----------------------------------------------------------------------------------------------
    def check_password(self, user: str, password: str) -> Principal | None:
        """The user if the password (or the user's token typed as a password) matches; constant time."""
        given_user, given = _digest(user), _digest(password)
        found: Principal | None = None
        for cred in self._users:
            name_ok = hmac.compare_digest(_digest(cred.user), given_user)
            pw_ok = cred.password is not None and hmac.compare_digest(cred.password, given)
            token_ok = cred.token is not None and hmac.compare_digest(cred.token, given)
            if name_ok and (pw_ok or token_ok) and found is None:
                found = Principal(cred.user, cred.role, "password")
        return found

    def check_token(self, token: str) -> Principal | None:
        given = _digest(token)
        found: Principal | None = None
        for cred in self._users:
            if cred.token is not None and hmac.compare_digest(cred.token, given) and found is None:
                found = Principal(cred.user, cred.role, "bearer")
        return found

    @property
    def metrics_token_set(self) -> bool:
        return self._metrics_token is not None

    def metrics_allowed(self, authorization: str | None, loopback: bool) -> bool:
        """With `metrics_token`: that bearer token. Without: loopback clients only (a local Prometheus)."""
        if self._metrics_token is None:
            return loopback
        scheme, _, value = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(self._metrics_token, _digest(value.strip()))

    # -- sessions -------------------------------------------------------------------------------------------------
    def _serializer(self, clock: Callable[[], float]) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(
            self._secret,
            salt=SESSION_SALT,
            signer=_ClockSigner,
            signer_kwargs={"digest_method": hashlib.sha256, "clock": clock},
        )

    def _at(self, now: float | None) -> tuple[URLSafeTimedSerializer, float]:
        if now is None:
            return self._sessions, self._clock()
        return self._serializer(lambda: now), now

    def issue(self, principal: Principal, now: float | None = None) -> str:
        serializer, _ = self._at(now)
        body = {"u": principal.user, "r": principal.role, "sid": secrets.token_urlsafe(16), "c": secrets.token_hex(16)}
        return serializer.dumps(body)

    def _session(self, cookie: str | None, now: float | None) -> tuple[dict[str, str], float] | None:
        """The signed payload and its expiry (not checked here), or None if missing, forged or malformed."""
        if not cookie:
            return None
        serializer, _ = self._at(now)
        try:
            body, signed_at = serializer.loads(cookie, return_timestamp=True)
        except (BadData, ValueError, TypeError):
            return None
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("u", "r", "sid", "c")):
            return None
        return body, signed_at.timestamp() + self.session_s

    def verify(self, cookie: str | None, now: float | None = None) -> Principal | None:
        """The session's principal, or None if the cookie is missing, forged, malformed, expired or revoked."""
        found = self._session(cookie, now)
        if found is None:
            return None
        body, expires = found
        at = self._at(now)[1]
        if at >= expires or expires - self.session_s > at + 60 or body["sid"] in self.revoked:
            return None  # expired, signed in the future (beyond a minute of clock step), or logged out
        role = body["r"]
        if role not in ("operator", "viewer"):
            return None
        return Principal(body["u"], "operator" if role == "operator" else "viewer", "cookie")

    def revoke(self, cookie: str | None, now: float | None = None) -> bool:
        """End the cookie's session for good (logout); False if it was not a session of ours."""
        found = self._session(cookie, now)
        if found is None:
            return False
        body, expires = found
        self.revoked.add(body["sid"], expires, self._at(now)[1])
        return True

    def csrf(self, cookie: str | None) -> str:
        """The session's CSRF token ("" without a session of ours); expiry and revocation are `verify`'s job."""
        found = self._session(cookie, None)
        return "" if found is None else found[0]["c"]

    def check_csrf(self, cookie: str | None, token: str | None) -> bool:
        expected = self.csrf(cookie)
        return bool(expected and token) and hmac.compare_digest(expected.encode(), (token or "").encode())

"""Operator login: configured users with a password and/or a token, two roles, a signed session cookie.

- Credentials are compared in constant time (`hmac.compare_digest` on SHA-256 digests, so the length of
  a guess tells nothing either), and every configured user is checked on every attempt.
- The session cookie is `base64(user|role|expiry).hmac-sha256`, HttpOnly, SameSite=Strict (a cross-site
  form cannot post with it), Secure when configured. Nothing else is kept on the server: a restart with
  the same `secret` keeps sessions valid, a new secret (the default: random at start) ends them all.
- Each state-changing form carries a CSRF token derived from the session, checked on POST.
- Roles: `operator` may acknowledge and silence alerts; `viewer` may only look. API clients send
  `Authorization: Bearer <token>` instead of a cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass

from dashboard.config import AuthSection, Role

COOKIE = "dp_session"


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    role: Role

    @property
    def can_act(self) -> bool:
        return self.role == "operator"


@dataclass(frozen=True, slots=True)
class _Credential:
    user: str
    role: Role
    password: bytes | None
    token: bytes | None


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


class Authenticator:
    def __init__(self, section: AuthSection) -> None:
        self.open = section.open
        self.session_s = int(section.session_hours * 3600)
        self.secure_cookie = section.secure_cookie
        secret = section.secret
        if section.secret_env is not None:
            secret = os.environ.get(section.secret_env) or secret
        self._key = _digest(secret) if secret else secrets.token_bytes(32)
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
                found = Principal(cred.user, cred.role)
        return found

    def check_token(self, token: str) -> Principal | None:
        given = _digest(token)
        found: Principal | None = None
        for cred in self._users:
            if cred.token is not None and hmac.compare_digest(cred.token, given) and found is None:
                found = Principal(cred.user, cred.role)
        return found

    def metrics_allowed(self, authorization: str | None) -> bool:
        if self._metrics_token is None:
            return True
        scheme, _, value = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(self._metrics_token, _digest(value.strip()))

    # -- sessions -------------------------------------------------------------------------------------------------
    def _sign(self, body: bytes) -> str:
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()

    def issue(self, principal: Principal, now: float | None = None) -> str:
        expiry = int((time.time() if now is None else now) + self.session_s)
        body = f"{principal.user}|{principal.role}|{expiry}".encode()
        return base64.urlsafe_b64encode(body).decode().rstrip("=") + "." + self._sign(body)

    def verify(self, cookie: str | None, now: float | None = None) -> Principal | None:
        """The session's principal, or None if the cookie is missing, forged, malformed or expired."""
        if not cookie or "." not in cookie:
            return None
        encoded, _, signature = cookie.rpartition(".")
        try:
            body = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:
            return None
        if not hmac.compare_digest(self._sign(body), signature):
            return None
        try:
            user, role, expiry = body.decode().split("|")
            expires = int(expiry)
        except ValueError:
            return None
        if (time.time() if now is None else now) >= expires or role not in ("operator", "viewer"):
            return None
        return Principal(user, "operator" if role == "operator" else "viewer")

    def csrf(self, cookie: str) -> str:
        return self._sign(b"csrf|" + cookie.encode())[:32]

    def check_csrf(self, cookie: str | None, token: str | None) -> bool:
        return bool(cookie and token) and hmac.compare_digest(self.csrf(cookie or ""), token or "")

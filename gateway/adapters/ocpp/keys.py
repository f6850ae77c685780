"""Charge point authorization keys (OCPP 1.6 Security Whitepaper, profiles 1 and 2: HTTP Basic with the charge
point id as the username and its AuthorizationKey as the password), kept hashed at rest.

The gateway's config holds `pbkdf2-sha256$<iterations>$<salt>$<hash>` (salt and hash base64) per charge point,
never the key: a copied config gives no charger's key. Checking costs one PBKDF2 (about 50 ms here with the
default iterations, run off the event loop), which also slows a guesser; `Lockout` stops one address after
a few wrong keys for a charge point, without locking the real charger out from its own address.

Make a hash from a key read on stdin (never a command-line argument, which /proc shows to every user):

    python -m gateway.adapters.ocpp.keys < cp-b1-01.key
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import sys
import time
from dataclasses import dataclass, field

SCHEME = "pbkdf2-sha256"
ITERATIONS = 100_000
SALT_BYTES = 16
#: OCPP 1.6 security: AuthorizationKey is 16 to 40 bytes (the whitepaper suggests 40 hex characters).
MIN_KEY, MAX_KEY = 16, 40
MAX_FAILURES = 5
LOCKOUT_S = 60.0
MAX_LOCKOUT_S = 900.0
MAX_TRACKED = 10_000  # (charge point, address) pairs remembered at most: the oldest are forgotten first


class KeyProblem(ValueError):
    """A key or a stored hash that cannot be used; the message never holds the key."""


def hash_key(key: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    if not MIN_KEY <= len(key.encode("utf-8")) <= MAX_KEY:
        raise KeyProblem(f"an AuthorizationKey has {MIN_KEY} to {MAX_KEY} bytes (OCPP 1.6 security whitepaper)")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", key.encode("utf-8"), salt, iterations)
    return f"{SCHEME}${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_hash(stored: str) -> None:
    """Raise KeyProblem unless `stored` is a hash this module made (configs are checked when loaded)."""
    _parts(stored)


def _parts(stored: str) -> tuple[int, bytes, bytes]:
    parts = stored.split("$")
    if len(parts) != 4 or parts[0] != SCHEME or not parts[1].isdigit() or not 1_000 <= int(parts[1]) <= 10_000_000:
        raise KeyProblem(f"not a {SCHEME}$<iterations>$<salt>$<hash> string (make one with `python -m {__name__}`)")
    try:
        salt, digest = base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyProblem("the salt or the hash is not base64") from exc
    if len(digest) != 32 or not salt:
        raise KeyProblem("a pbkdf2-sha256 hash has 32 bytes and a salt")
    return int(parts[1]), salt, digest


def verify_key(key: str, stored: str) -> bool:
    """True if `key` is the key of `stored` (constant-time comparison)."""
    iterations, salt, digest = _parts(stored)
    candidate = hashlib.pbkdf2_hmac("sha256", key.encode("utf-8", "surrogatepass"), salt, iterations)
    return hmac.compare_digest(candidate, digest)


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(username, password) of an `Authorization: Basic ...` header, None if absent or malformed."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value or len(value) > 1024:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


@dataclass
class Lockout:
    """Wrong keys per (charge point, client address): after `MAX_FAILURES` in a row that address is refused
    for `LOCKOUT_S`, doubling up to `MAX_LOCKOUT_S`; a right key clears it. Bounded to `MAX_TRACKED` entries."""

    clock: object = time.monotonic
    _failures: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)

    def _now(self) -> float:
        return float(self.clock())  # type: ignore[operator]

    def locked(self, cp: str, address: str) -> bool:
        count, until = self._failures.get((cp, address), (0, 0.0))
        return count >= MAX_FAILURES and self._now() < until

    def failed(self, cp: str, address: str) -> None:
        count, _ = self._failures.pop((cp, address), (0, 0.0))
        count += 1
        wait = min(MAX_LOCKOUT_S, LOCKOUT_S * 2 ** max(0, count - MAX_FAILURES))
        self._failures[(cp, address)] = (count, self._now() + wait)
        while len(self._failures) > MAX_TRACKED:
            self._failures.pop(next(iter(self._failures)))

    def succeeded(self, cp: str, address: str) -> None:
        self._failures.pop((cp, address), None)


def main() -> int:
    key = sys.stdin.readline().rstrip("\r\n")
    try:
        print(hash_key(key))
    except KeyProblem as exc:
        print(f"keys: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

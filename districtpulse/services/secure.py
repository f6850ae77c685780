"""Credentials for secure mode: the broker's local CA, TLS certificates, passwords and topic ACLs, and the
database's users.

`districtpulse services up --secure` starts Mosquitto with TLS only, no anonymous clients, a password per
client and an ACL that lets each gateway publish only under its own prefix `dp/v1/<district>/<gateway>/#`.
Everything here derives from the registry (which gateway belongs to which district) and is generated for
*local use*: demonstrations, CI and the tests. A production district brings its own PKI; the file layout and
the ACL rules stay the same.

Layout, under `<state dir>/mosquitto/secure/` (mode 0700, every secret file 0600):

    ca.crt  ca.key                   the local CA (EC P-256); ca.crt is what clients verify the broker with
    server.crt  server.key           the broker's certificate: DNS:localhost and IP:127.0.0.1
    clients/<user>.crt  .key         one client certificate per user, signed by the CA
    secrets/<user>.password          the clear-text password, for the client's `password_file`
    passwd                           Mosquitto's password file: PBKDF2-SHA512 hashes (`$7$`), no clear text
    acl                              Mosquitto's ACL file, regenerated from the registry on every `up`

Users: one per gateway (the username is the gateway id) and service users whose names start with `_`, which
no registry id can (ids start with a letter or a digit), so they never collide with a gateway:
`_ingest`, `_ingest-2`, ... (one per ingest consumer, `SecureBroker.ingest_consumers`) read every DistrictPulse
topic (also through `$share/<group>/...` subscriptions) and write confirmations; `_dashboard` reads the
gateways' statuses and writes alerts under `dp/alerts/#`; `_probe` has no topic rights at all (it only proves
that the broker authenticates clients, for `up` and `status`).

Identities are bound to client ids: the broker runs with `use_username_as_clientid`, so a client's session is
its username's, whatever client id it sends. Without it, any authenticated gateway could connect with
ingest's client id and take over its persistent session (its queued readings, which the ACL then refuses
to deliver to the impostor: lost). The price is one connection per identity, hence one ingest user per
consumer process of a share group.

InfluxDB (secure mode runs it with `auth-enabled`) has three users, their passwords under
`<state dir>/influxdb/secure/` (0700, files `<user>.password` 0600): `admin` (all privileges: `up` creates the
database and the users with it, nothing else uses it), `writer` (ALL on the project's database: ingest and the
aggregation jobs, which read readings and write KPIs) and `reader` (READ: the dashboard, Grafana).

Secrets never go on a command line (visible in /proc to every user) nor in a log line: passwords are hashed
here with the standard library, and only file paths are ever printed. Only the standard library is used;
certificates are made with the `openssl` command-line tool, which only the machine running the broker needs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from devices.topics import CONFIRM_FILTER

INGEST_USER = "_ingest"
DASHBOARD_USER = "_dashboard"
PROBE_USER = "_probe"
TOPIC_ROOT = "dp/v1"
#: Where the dashboard's alert notifier may publish in secure mode (`alerts.mqtt_topic` must be below it).
ALERT_ROOT = "dp/alerts"
#: Ingest identities generated when not told otherwise: a consumer and a second one (a share group of two,
#: or a consumer and its replacement during a rolling restart).
DEFAULT_INGEST_CONSUMERS = 2
MAX_INGEST_CONSUMERS = 64

#: Mosquitto 2.0's own defaults for `$7$` hashes (mosquitto_passwd): 101 iterations, 12 bytes of salt.
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12
PASSWORD_BYTES = 24  # 192 bits, 32 URL-safe characters
CA_DAYS = 3650
LEAF_DAYS = 825

_SECRET_MODE = 0o600
_DIR_MODE = 0o700


class SecurityError(RuntimeError):
    """Credentials could not be generated or read; the message says what to do."""


def ingest_users(consumers: int = DEFAULT_INGEST_CONSUMERS) -> tuple[str, ...]:
    """The ingest identities: `_ingest` for the first consumer, `_ingest-2` ... for the others."""
    if not 1 <= consumers <= MAX_INGEST_CONSUMERS:
        raise SecurityError(f"ingest consumers: 1 to {MAX_INGEST_CONSUMERS}, not {consumers}")
    return (INGEST_USER, *(f"{INGEST_USER}-{n}" for n in range(2, consumers + 1)))


def service_users(ingest_consumers: int = DEFAULT_INGEST_CONSUMERS) -> tuple[str, ...]:
    return (*ingest_users(ingest_consumers), DASHBOARD_USER, PROBE_USER)


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """What one client needs to connect to the secure broker (paths only: the secrets stay in the files)."""

    username: str
    password_file: Path
    ca_file: Path
    cert_file: Path
    key_file: Path

    def password(self) -> str:
        return self.password_file.read_text(encoding="utf-8").strip()


@dataclass(frozen=True, slots=True)
class SecureFiles:
    """The paths of one secure state directory (pure: creating it writes nothing)."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    @property
    def passwd(self) -> Path:
        return self.root / "passwd"

    @property
    def acl(self) -> Path:
        return self.root / "acl"

    def password_file(self, user: str) -> Path:
        return self.root / "secrets" / f"{user}.password"

    def client_cert(self, user: str) -> Path:
        return self.root / "clients" / f"{user}.crt"

    def client_key(self, user: str) -> Path:
        return self.root / "clients" / f"{user}.key"

    def credentials(self, user: str) -> ClientCredentials:
        """A client's credentials; raises SecurityError if `ensure` has not generated them."""
        creds = ClientCredentials(
            user, self.password_file(user), self.ca_cert, self.client_cert(user), self.client_key(user)
        )
        missing = [
            str(p) for p in (creds.password_file, creds.ca_file, creds.cert_file, creds.key_file) if not p.exists()
        ]
        if missing:
            raise SecurityError(
                f"no credentials for {user!r} (missing {', '.join(missing)}); "
                "is it in the registry? run `districtpulse services up --secure`"
            )
        return creds


# --- passwords -----------------------------------------------------------------------------------------


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """A Mosquitto 2.0 `$7$` hash: PBKDF2-HMAC-SHA512 over the raw salt, both base64 (as mosquitto_passwd)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """True if `hashed` (a `$7$` entry) is the hash of `password`; False for any other format."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[:2] != ["", "7"] or not parts[2].isdigit():
        return False
    try:
        salt, digest = base64.b64decode(parts[3], validate=True), base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    computed = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, int(parts[2]))
    return hmac.compare_digest(computed, digest)


def read_passwd(path: Path) -> dict[str, str]:
    """user -> hash of a Mosquitto password file (empty if the file does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    parts = (line.partition(":") for line in text.splitlines())
    return {user: hashed for user, sep, hashed in parts if sep and not user.startswith("#")}


# --- ACL -----------------------------------------------------------------------------------------------


def gateway_grants(district: str, gateway: str) -> list[str]:
    """What a gateway may do: publish its readings (`.../<gateway>/<device>/<kind>`) and its retained status
    (with its Will), and subscribe to its own confirmations, which only ingest may publish: a gateway that
    could write a confirmation could make another gateway (or itself) delete readings nobody stored."""
    root = f"{TOPIC_ROOT}/{district}/{gateway}"
    return [f"topic write {root}/+/+", f"topic write {root}/status", f"topic read {root}/confirm"]


def render_acl(gateways: Iterable[tuple[str, str]], ingest_consumers: int = DEFAULT_INGEST_CONSUMERS) -> str:
    """Mosquitto's ACL file for (district, gateway) pairs; deterministic (sorted), so `up` can compare it.

    With an `acl_file`, Mosquitto denies everything not granted here. The ingest users read everything
    under the root, and `$share/+/...` is granted too because Mosquitto 2.0 checks a shared subscription's
    filter as written; they write confirmations, and nothing else. The dashboard reads statuses and writes
    alerts. Gateways get their own readings and status topics to write and their own confirmations to read
    (no `pattern ... %u` line: a gateway id alone would allow it under any district).
    """
    lines = [
        "# DistrictPulse topic ACL, generated from the registry by `districtpulse services up --secure`.",
        "# Do not edit: it is rewritten on every `up`.",
        "",
    ]
    for user in ingest_users(ingest_consumers):
        lines += [
            f"user {user}",
            f"topic read {TOPIC_ROOT}/#",
            f"topic read $share/+/{TOPIC_ROOT}/#",
            f"topic write {CONFIRM_FILTER}",
            "",
        ]
    lines += [
        f"user {DASHBOARD_USER}",
        f"topic read {TOPIC_ROOT}/+/+/status",
        f"topic write {ALERT_ROOT}/#",
        "",
        f"user {PROBE_USER}",
        "",
    ]
    for district, gateway in sorted(set(gateways), key=lambda pair: (pair[1], pair[0])):
        lines += [f"user {gateway}", *gateway_grants(district, gateway), ""]
    return "\n".join(lines)


def _check_users(gateways: list[tuple[str, str]]) -> None:
    owners: dict[str, str] = {}
    for district, gateway in gateways:
        if gateway.startswith("_") or any(c in gateway for c in ":/+# \n"):
            raise SecurityError(f"gateway id {gateway!r} cannot be a broker username")
        if owners.setdefault(gateway, district) != district:
            raise SecurityError(f"gateway {gateway!r} is in two districts ({owners[gateway]!r}, {district!r})")


# --- files ---------------------------------------------------------------------------------------------


def _write_secret(path: Path, text: str) -> None:
    """Create with 0600 from the first byte (no window where the umask leaves it readable), atomically."""
    path.parent.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _openssl(*args: str) -> None:
    executable = shutil.which("openssl")
    if executable is None:
        raise SecurityError("the `openssl` command is needed to create certificates: apt-get install openssl")
    try:
        result = subprocess.run([executable, *args], capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SecurityError(f"cannot run openssl: {exc}") from exc
    if result.returncode != 0:
        raise SecurityError(f"openssl {args[0]} failed ({result.returncode}): {result.stderr.strip()[-500:]}")


_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _make_ca(files: SecureFiles) -> None:
    ext = files.root / ".ca.ext"
    ext.write_text(
        "[req]\ndistinguished_name = dn\n[dn]\n[ca]\nbasicConstraints = critical, CA:TRUE, pathlen:0\n"
        "keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n",
        encoding="utf-8",
    )
    try:
        _openssl(
            "req", "-x509", *_EC, "-keyout", str(files.ca_key), "-out", str(files.ca_cert),
            "-days", str(CA_DAYS), "-subj", "/O=DistrictPulse/CN=DistrictPulse local CA",
            "-config", str(ext), "-extensions", "ca",
        )  # fmt: skip
    finally:
        ext.unlink(missing_ok=True)


def _make_leaf(files: SecureFiles, cert: Path, key: Path, common_name: str, *, server: bool) -> None:
    """A key and a certificate signed by the CA; the broker's has the loopback names, a client's clientAuth."""
    csr = cert.with_suffix(".csr")
    ext = cert.with_suffix(".ext")
    usage = "serverAuth" if server else "clientAuth"
    names = "subjectAltName = DNS:localhost, IP:127.0.0.1\n" if server else ""
    ext.write_text(
        "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature, keyAgreement\n"
        f"extendedKeyUsage = {usage}\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n{names}",
        encoding="utf-8",
    )
    try:
        _openssl(
            "req", "-new", *_EC, "-keyout", str(key), "-out", str(csr), "-subj", f"/O=DistrictPulse/CN={common_name}"
        )
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(files.ca_cert), "-CAkey", str(files.ca_key),
            "-set_serial", str(secrets.randbits(63)), "-days", str(LEAF_DAYS), "-sha256",
            "-extfile", str(ext), "-out", str(cert),
        )  # fmt: skip
    finally:
        csr.unlink(missing_ok=True)
        ext.unlink(missing_ok=True)


def ensure(
    root: Path, gateways: Iterable[tuple[str, str]], *, ingest_consumers: int = DEFAULT_INGEST_CONSUMERS
) -> bool:
    """Create what is missing under `root` for these (district, gateway) pairs; True if passwd/acl changed.

    Idempotent: the CA, certificates and passwords of existing users are kept (a gateway's credentials do not
    change on every `up`); the ACL is rewritten from the registry, and the password file only when its users
    or passwords changed. The caller reloads a running broker (SIGHUP) when this returns True.
    """
    pairs = list(gateways)
    _check_users(pairs)
    files = SecureFiles(root)
    users = [*service_users(ingest_consumers), *sorted({gateway for _, gateway in pairs})]
    # The folders are 0700 before anything is written in them, so a file that openssl creates with the
    # process umask is never readable by others, even before the chmod below makes every file 0600 too
    # (no os.umask: it is process-wide, and `up` runs inside long-lived, threaded processes).
    for folder in (root, root / "clients", root / "secrets"):
        folder.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        folder.chmod(_DIR_MODE)
    if not (files.ca_cert.exists() and files.ca_key.exists()):
        _make_ca(files)
    if not (files.server_cert.exists() and files.server_key.exists()):
        _make_leaf(files, files.server_cert, files.server_key, "localhost", server=True)
    passwords: dict[str, str] = {}
    for user in users:
        if not files.password_file(user).exists():
            _write_secret(files.password_file(user), secrets.token_urlsafe(PASSWORD_BYTES) + "\n")
        passwords[user] = files.password_file(user).read_text(encoding="utf-8").strip()
        if not (files.client_cert(user).exists() and files.client_key(user).exists()):
            _make_leaf(files, files.client_cert(user), files.client_key(user), user, server=False)
    changed = False
    current = read_passwd(files.passwd)
    if set(current) != set(users) or not all(verify_password(passwords[u], current[u]) for u in users):
        _write_secret(files.passwd, "".join(f"{u}:{hash_password(passwords[u])}\n" for u in users))
        changed = True
    acl = render_acl(pairs, ingest_consumers)
    if not files.acl.exists() or files.acl.read_text(encoding="utf-8") != acl:
        _write_secret(files.acl, acl)
        changed = True
    for path in root.rglob("*"):
        if path.is_file():
            path.chmod(_SECRET_MODE)
    return changed


# --- the database's users ------------------------------------------------------------------------------

INFLUX_ADMIN = "admin"
INFLUX_WRITER = "writer"
INFLUX_READER = "reader"
INFLUX_USERS = (INFLUX_ADMIN, INFLUX_WRITER, INFLUX_READER)
#: The privilege of each non-admin user on the project's database.
INFLUX_GRANTS = {INFLUX_WRITER: "ALL", INFLUX_READER: "READ"}


@dataclass(frozen=True, slots=True)
class InfluxSecrets:
    """Where the InfluxDB users' passwords are (pure: creating it writes nothing)."""

    root: Path

    def password_file(self, user: str) -> Path:
        return self.root / f"{user}.password"

    def password(self, user: str) -> str:
        try:
            return self.password_file(user).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecurityError(
                f"no InfluxDB password for {user!r} ({self.password_file(user)}: {exc.strerror}); "
                "run `districtpulse services up --secure`"
            ) from exc


def ensure_influx_secrets(root: Path) -> InfluxSecrets:
    """Create the missing passwords of the InfluxDB users (existing ones are kept: the database has them)."""
    root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    root.chmod(_DIR_MODE)
    found = InfluxSecrets(root)
    for user in INFLUX_USERS:
        path = found.password_file(user)
        if not path.exists():
            _write_secret(path, secrets.token_urlsafe(PASSWORD_BYTES) + "\n")
        path.chmod(_SECRET_MODE)
    return found


def registry_gateways(registry_path: Path) -> list[tuple[str, str]]:
    """(district, gateway) of every gateway in a registry file (imported here: services stays stdlib-only)."""
    from devices.registry import Registry, RegistryError

    try:
        registry = Registry.load(registry_path)
    except (RegistryError, OSError) as exc:
        raise SecurityError(f"cannot load the registry {registry_path}: {exc}") from exc
    return [(district.id, gateway_id) for gateway_id, (district, _, _) in registry.gateways.items()]

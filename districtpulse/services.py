"""The project's own Mosquitto and InfluxDB 1.6: `districtpulse services up|down|status`.

Why the project starts its own services instead of using the system ones:

* reproducibility: the same broker and database settings (queue sizes, no `_internal` database, ...) on
  every developer machine, in CI and in the demo, from the templates in `service_templates/`;
* isolation: the data lives in the state directory (`Endpoints.state_dir`, default `<cwd>/.services`),
  never in /var/lib, and the ports (11883, 18086 by default) never collide with system services that
  `apt-get install` may have started on 1883 and 8086;
* no root daemons: both run as the current user, bound to 127.0.0.1 only.

Secure mode (`up --secure`, `SecureBroker`) runs the same Mosquitto with a TLS-only listener on its own port
(DP_MQTT_TLS_PORT), client certificates, passwords and per-gateway topic ACLs generated from the registry by
`districtpulse.security`; the probes then authenticate as the broker's `_probe` user, which may touch no topic.

Nothing here needs more than the standard library, so it works on a machine where the server extras
(numba, ...) are not installed yet. It relies on Linux /proc to recognise its own processes: a pid file
alone is not proof (pids are reused), so a process counts as ours only if /proc/<pid>/cmdline is the
expected binary with our config file. Processes are never looked up or killed by name.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import http.client
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import string
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from devices.wire import MAX_PACKET_BYTES
from districtpulse import security
from districtpulse.config import Endpoints

Log = Callable[[str], None]

LOOPBACK = "127.0.0.1"
APT_PACKAGES = ("mosquitto", "influxdb")
# Where Debian puts the binaries; /usr/sbin is often not on a normal user's PATH.
BINARY_DIRS = ("/usr/sbin", "/usr/bin")
STOP_TIMEOUT = 15.0
KILL_TIMEOUT = 5.0
LOG_TAIL_LINES = 25
STATUS_EXIT_NOT_RUNNING = 3
DEFAULT_MQTT_TLS_PORT = 18883

# Starts the service in the background and prints its pid. The shell is the only child of this process and
# exits at once, so the service is re-parented away from us: a long-lived caller (pytest, the demo) never
# holds a Popen for it (no zombie, no "subprocess still running" ResourceWarning), and `$!` is the exact pid
# of the service (a simple command is exec'd in the forked child), written to the pid file before the
# service even opened its config.
_LAUNCHER = 'log=$1; shift; "$@" >>"$log" 2>&1 </dev/null & echo $!'


# Written to the service's log before each start, so an error shows only the lines of this start.
_START_MARKER = "--- districtpulse services up"


class ServiceError(RuntimeError):
    """A local service could not be installed, started, stopped or reached; the message says what to do."""


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """One row of `districtpulse services status`."""

    name: str
    pid: int | None
    running: bool
    address: str
    version: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class SecureBroker:
    """`up --secure`: Mosquitto with TLS only on `tls_port`, passwords and ACLs for the registry's gateways.

    Its own port, so that a secure instance (another state dir) runs beside the plain one on the same machine.
    `registry` None means the demo registry.
    """

    tls_port: int = DEFAULT_MQTT_TLS_PORT
    registry: Path | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, *, registry: Path | None = None) -> SecureBroker:
        env = os.environ if environ is None else environ
        return cls(int(env.get("DP_MQTT_TLS_PORT", DEFAULT_MQTT_TLS_PORT)), registry)

    def registry_path(self) -> Path:
        if self.registry is not None:
            return self.registry
        from devices.registry import demo_registry_path  # pydantic: only when secure mode is asked for

        return demo_registry_path()


@dataclass(frozen=True, slots=True)
class _Service:
    """Everything about one managed service that derives from the endpoints: files, ports, command line."""

    name: str
    binary: str
    home: Path
    config: Path
    pid_file: Path
    log_file: Path
    data_dirs: tuple[Path, ...]
    port: int
    # Every port the service binds: (port, what it is, the environment variable that moves it).
    ports: tuple[tuple[int, str, str], ...]
    args: tuple[str, ...]

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"


# --- configuration -------------------------------------------------------------------------------------


def _state_dir(endpoints: Endpoints) -> Path:
    return endpoints.state_dir.expanduser().resolve()


def secure_files(endpoints: Endpoints) -> security.SecureFiles:
    """Where `up --secure` keeps the CA, certificates, passwords and ACL of this state dir."""
    return security.SecureFiles(_state_dir(endpoints) / "mosquitto" / "secure")


def _mosquitto(endpoints: Endpoints, secure: SecureBroker | None = None) -> _Service:
    home = _state_dir(endpoints) / "mosquitto"
    config = home / "mosquitto.conf"
    if secure is not None:
        port, ports = secure.tls_port, ((secure.tls_port, "MQTT TLS port", "DP_MQTT_TLS_PORT"),)
    else:
        port, ports = endpoints.mqtt_port, ((endpoints.mqtt_port, "MQTT port", "DP_MQTT_PORT"),)
    return _Service(
        name="mosquitto",
        binary="mosquitto",
        home=home,
        config=config,
        pid_file=home / "mosquitto.pid",
        log_file=home / "mosquitto.log",
        data_dirs=(home / "data",),
        port=port,
        ports=ports,
        args=("-c", str(config)),
    )


def _influxdb(endpoints: Endpoints) -> _Service:
    home = _state_dir(endpoints) / "influxdb"
    config = home / "influxdb.conf"
    return _Service(
        name="influxdb",
        binary="influxd",
        home=home,
        config=config,
        pid_file=home / "influxd.pid",
        log_file=home / "influxd.log",
        data_dirs=(home / "meta", home / "data", home / "wal"),
        port=endpoints.influx_port,
        ports=(
            (endpoints.influx_port, "HTTP port", "DP_INFLUX_PORT"),
            (_influx_rpc_port(endpoints), "RPC port, always the HTTP port + 1", "DP_INFLUX_PORT"),
        ),
        args=("run", "-config", str(config)),
    )


def _services(endpoints: Endpoints, secure: SecureBroker | None = None) -> tuple[_Service, _Service]:
    return _mosquitto(endpoints, secure), _influxdb(endpoints)


def _influx_rpc_port(endpoints: Endpoints) -> int:
    """influxd's backup/restore RPC listener; without a config it would take :8088 on all interfaces."""
    return endpoints.influx_port + 1


def _template(name: str) -> string.Template:
    source = resources.files("districtpulse") / "service_templates" / name
    return string.Template(source.read_text(encoding="utf-8"))


def _config_path(path: Path) -> str:
    """A path for a line-oriented config file: a newline in it would inject configuration."""
    text = str(path)
    if "\n" in text or "\r" in text:
        raise ServiceError(f"the state directory path must not contain a line break: {text!r}")
    return text


def _toml_string(path: Path) -> str:
    """A TOML basic string (JSON string syntax is a subset of it for paths)."""
    return json.dumps(_config_path(path))


def _current_user() -> str:
    """Mosquitto started as root switches to this user; as any other user the setting is ignored."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a passwd entry (containers): it is not root, so the value is unused
        return "nobody"


def _listener_block(endpoints: Endpoints, secure: SecureBroker | None) -> str:
    if secure is None:
        return _template("mosquitto_listener_plain.conf.in").substitute(mqtt_port=endpoints.mqtt_port)
    files = secure_files(endpoints)
    return _template("mosquitto_listener_tls.conf.in").substitute(
        tls_port=secure.tls_port,
        ca_file=_config_path(files.ca_cert),
        cert_file=_config_path(files.server_cert),
        key_file=_config_path(files.server_key),
        password_file=_config_path(files.passwd),
        acl_file=_config_path(files.acl),
    )


def render_mosquitto_conf(endpoints: Endpoints, secure: SecureBroker | None = None) -> str:
    """The broker's config for these endpoints, plain or secure (pure: writes nothing)."""
    service = _mosquitto(endpoints, secure)
    return _template("mosquitto.conf.in").substitute(
        user=_current_user(),
        listener_block=_listener_block(endpoints, secure),
        # Trailing slash as in the Debian config; 2.0 adds its own "/" (harmless: data//mosquitto.db).
        persistence_location=_config_path(service.data_dirs[0]) + "/",
        log_file=_config_path(service.log_file),
        max_packet_size=MAX_PACKET_BYTES,
    )


def render_influxdb_conf(endpoints: Endpoints) -> str:
    """The database's config for these endpoints (pure: writes nothing)."""
    meta, data, wal = _influxdb(endpoints).data_dirs
    return _template("influxdb.conf.in").substitute(
        http_port=endpoints.influx_port,
        rpc_port=_influx_rpc_port(endpoints),
        meta_dir=_toml_string(meta),
        data_dir=_toml_string(data),
        wal_dir=_toml_string(wal),
    )


def _render(service: _Service, endpoints: Endpoints, secure: SecureBroker | None = None) -> str:
    if service.name == "mosquitto":
        # The one-argument call for the plain config: a test replaces render_mosquitto_conf with its own.
        return render_mosquitto_conf(endpoints) if secure is None else render_mosquitto_conf(endpoints, secure)
    return render_influxdb_conf(endpoints)


def _require_loopback(endpoints: Endpoints) -> None:
    """The managed services only ever bind 127.0.0.1: a DP_*_HOST elsewhere means services we don't own."""
    for var, host in (("DP_MQTT_HOST", endpoints.mqtt_host), ("DP_INFLUX_HOST", endpoints.influx_host)):
        if host not in (LOOPBACK, "localhost"):
            raise ServiceError(
                f"{var}={host}: the local services listen on {LOOPBACK} only; "
                f"unset {var} (or set it to {LOOPBACK}) to use them, or manage the remote service yourself"
            )


# --- installation --------------------------------------------------------------------------------------


def _find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in BINARY_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _apt_install(log: Log) -> None:
    """Install the Debian packages: the project must come up on a fresh machine with one command."""
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if sudo and shutil.which("sudo") is None:
        raise ServiceError(
            "mosquitto/influxdb are not installed and this user is not root and sudo is missing; "
            f"install them as root: apt-get install -y --no-install-recommends {' '.join(APT_PACKAGES)}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    commands = (
        [*sudo, "apt-get", "update"],
        [*sudo, "apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES],
    )
    for command in commands:
        log(f"services: running {' '.join(command)}")
        try:
            result = subprocess.run(command, env=env, check=False)
        except OSError as exc:
            raise ServiceError(f"cannot run {' '.join(command)}: {exc}") from exc
        if result.returncode != 0:
            raise ServiceError(
                f"{' '.join(command)} failed with exit code {result.returncode}; "
                f"install the packages {', '.join(APT_PACKAGES)} by hand and run `up` again"
            )


def _ensure_binaries(install: bool, log: Log) -> dict[str, str]:
    """Paths of `mosquitto` and `influxd`, installing the packages if one is missing (and allowed to)."""
    names = ("mosquitto", "influxd")
    found = {name: _find_binary(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing and not install:
        raise ServiceError(
            f"not installed: {', '.join(missing)}; run `up` without --no-install, or "
            f"apt-get install -y --no-install-recommends {' '.join(APT_PACKAGES)}"
        )
    if missing:
        log(f"services: {', '.join(missing)} not found, installing {' '.join(APT_PACKAGES)}")
        _apt_install(log)
        found = {name: _find_binary(name) for name in names}
    paths = {name: path for name, path in found.items() if path is not None}
    still_missing = sorted(set(names) - set(paths))
    if still_missing:
        raise ServiceError(f"{', '.join(still_missing)} still not found after installing {APT_PACKAGES}")
    return paths


# --- processes -----------------------------------------------------------------------------------------


def _read_pid(pid_file: Path) -> int | None:
    try:
        text = pid_file.read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _write_pid(pid_file: Path, pid: int) -> None:
    tmp = pid_file.with_name(pid_file.name + ".tmp")
    tmp.write_text(f"{pid}\n", encoding="ascii")
    tmp.replace(pid_file)


def _is_alive(pid: int) -> bool:
    """Alive and not a zombie: an orphan whose init does not reap it stays in /proc as state Z."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    fields = stat.rpartition(")")[2].split()
    return bool(fields) and fields[0] not in ("Z", "X")


def _is_ours(service: _Service, pid: int) -> bool:
    """The pid runs our service binary with our config file (pids are reused; names prove nothing)."""
    if not _is_alive(pid):
        return False
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    argv = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    return bool(argv) and Path(argv[0]).name == service.binary and str(service.config) in argv[1:]


def _running_pid(service: _Service, log: Log | None = None) -> int | None:
    """The pid of our running instance, removing a stale pid file on the way."""
    pid = _read_pid(service.pid_file)
    if pid is not None and _is_ours(service, pid):
        return pid
    if service.pid_file.exists():
        if log is not None:
            log(f"{service.name}: removing stale pid file {service.pid_file} (pid {pid} is not running)")
        service.pid_file.unlink(missing_ok=True)
    return None


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: a port with only TIME_WAIT connections left (a service just stopped) is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise ServiceError(f"cannot check port {port} on {LOOPBACK}: {exc}") from exc
    return False


def _require_ports_free(service: _Service) -> None:
    for port, role, variable in service.ports:
        if _port_in_use(port):
            raise ServiceError(
                f"port {port} on {LOOPBACK} ({service.name} {role}) is already in use by another process, "
                f"not by the {service.name} of {service.home.parent}; stop that process or choose another "
                f"port with {variable}, e.g. `{variable}=<free port> districtpulse services up` "
                "(and the same variable for every component)"
            )


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines written since the latest start (earlier runs would only confuse the diagnosis)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"    (no log: {exc})"
    all_lines = text.splitlines()
    starts = [index for index, line in enumerate(all_lines) if line.startswith(_START_MARKER)]
    tail = all_lines[starts[-1] if starts else 0 :][-lines:]
    return "\n".join(f"    {line}" for line in tail) if tail else "    (log is empty)"


def _prepare_files(service: _Service, config_text: str) -> None:
    for directory in (service.home, *service.data_dirs):
        directory.mkdir(parents=True, exist_ok=True)
    service.config.write_text(config_text, encoding="utf-8")
    with service.log_file.open("a", encoding="utf-8") as log_file:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        log_file.write(f"{_START_MARKER} {stamp}: starting {service.name}\n")


def _launch(service: _Service, executable: str) -> int:
    """Start the service detached (own session, re-parented away from us), return its pid."""
    command = ["/bin/sh", "-c", _LAUNCHER, "sh", str(service.log_file), executable, *service.args]
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            start_new_session=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServiceError(f"cannot start {service.name} ({executable}): {exc}") from exc
    output = result.stdout.strip()
    if result.returncode != 0 or not output.isdigit():
        raise ServiceError(
            f"cannot start {service.name} ({executable}): launcher exited {result.returncode}, "
            f"output {output!r}, errors {result.stderr.strip()!r}"
        )
    return int(output)


def _start(
    service: _Service, endpoints: Endpoints, executable: str, log: Log, secure: SecureBroker | None = None
) -> int:
    try:
        _prepare_files(service, _render(service, endpoints, secure))
    except OSError as exc:
        raise ServiceError(f"cannot prepare {service.home} for {service.name}: {exc}") from exc
    pid = _launch(service, executable)
    _write_pid(service.pid_file, pid)
    log(f"{service.name}: started pid {pid} on {service.address} (log {service.log_file})")
    return pid


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited in between: that is what we want
        os.kill(pid, signum)


def _stop(service: _Service, log: Log) -> None:
    """SIGTERM (both flush to disk on it), SIGKILL only after STOP_TIMEOUT; then drop the pid file."""
    pid = _running_pid(service, log)
    if pid is None:
        log(f"{service.name}: not running")
        return
    _signal(pid, signal.SIGTERM)
    if not _wait_gone(pid, STOP_TIMEOUT):
        log(f"{service.name}: pid {pid} still running {STOP_TIMEOUT:.0f} s after SIGTERM, sending SIGKILL")
        _signal(pid, signal.SIGKILL)
        if not _wait_gone(pid, KILL_TIMEOUT):
            raise ServiceError(f"{service.name}: pid {pid} survived SIGKILL")
    service.pid_file.unlink(missing_ok=True)
    log(f"{service.name}: stopped pid {pid}")


@contextlib.contextmanager
def _state_lock(endpoints: Endpoints) -> Iterator[None]:
    """Serialise up/down on one state dir (parallel test workers, two terminals)."""
    state = _state_dir(endpoints)
    state.mkdir(parents=True, exist_ok=True)
    with (state / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- probes --------------------------------------------------------------------------------------------


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        data += chunk
    return data


def _mqtt_string(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def _remaining_length(size: int) -> bytes:
    """MQTT's variable-length integer: 7 bits per byte, the high bit says another byte follows."""
    out = bytearray()
    while True:
        size, digit = size >> 7, size & 0x7F
        out.append(digit | (0x80 if size else 0))
        if not size:
            return bytes(out)


def tls_context(ca_file: Path, cert_file: Path | None = None, key_file: Path | None = None) -> ssl.SSLContext:
    """Verify the broker against `ca_file` (host name included); present a client certificate if given."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file is not None else None)
    return context


def mqtt_handshake(
    host: str,
    port: int,
    timeout: float = 2.0,
    *,
    tls: ssl.SSLContext | None = None,
    username: str | None = None,
    password: str | None = None,
) -> None:
    """A real MQTT 3.1.1 CONNECT/CONNACK: an open port alone does not prove the broker accepts clients.

    With `tls` the handshake runs over TLS (the broker's certificate is verified against the context's CA);
    the password is only ever sent inside that connection, and never appears in an error message.
    """
    client_id = f"dp-probe-{secrets.token_hex(4)}".encode("ascii")
    # Flags: 0x02 clean session, 0x80 username, 0x40 password.
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    # Protocol name "MQTT", level 4 (3.1.1), the flags, keep-alive 10 s.
    body = b"\x00\x04MQTT\x04" + bytes((flags,)) + b"\x00\x0a" + _mqtt_string(client_id)
    if username is not None:
        body += _mqtt_string(username.encode("utf-8"))
    if password is not None:
        body += _mqtt_string(password.encode("utf-8"))
    connect = b"\x10" + _remaining_length(len(body)) + body
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection((host, port), timeout=timeout))
        if tls is not None:
            sock = stack.enter_context(tls.wrap_socket(sock, server_hostname=host))
        sock.sendall(connect)
        connack = _recv_exact(sock, 4)
        if connack[:2] != b"\x20\x02":
            raise ServiceError(f"{host}:{port} answered {connack.hex()} instead of an MQTT CONNACK")
        if connack[3] != 0:
            raise ServiceError(f"the broker on {host}:{port} refused the connection (return code {connack[3]})")
        sock.sendall(b"\xe0\x00")  # DISCONNECT


def _http(
    host: str, port: int, method: str, path: str, body: str | None = None, timeout: float = 5.0
) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def influx_ping(host: str, port: int, timeout: float = 2.0) -> str:
    """GET /ping must answer 204; returns the X-Influxdb-Version header (e.g. "1.6.7~rc0")."""
    status_code, headers, _ = _http(host, port, "GET", "/ping", timeout=timeout)
    if status_code != 204:
        raise ServiceError(f"GET http://{host}:{port}/ping answered {status_code}, expected 204")
    return headers.get("X-Influxdb-Version", "unknown")


def _quote_identifier(name: str) -> str:
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def influx_query(endpoints: Endpoints, query: str, *, database: str | None = None) -> dict[str, Any]:
    """POST an InfluxQL statement to /query; returns the first result, raises on any error."""
    params = {"q": query, **({"db": database} if database else {})}
    host, port = endpoints.influx_host, endpoints.influx_port
    status_code, _, payload = _http(host, port, "POST", "/query", urlencode(params))
    try:
        result = json.loads(payload)["results"][0]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ServiceError(f"InfluxDB /query answered {status_code}: {payload[:300]!r}") from exc
    if status_code != 200 or not isinstance(result, dict) or "error" in result:
        raise ServiceError(f"InfluxDB query {query!r} failed ({status_code}): {payload[:300]!r}")
    return result


def _create_database(endpoints: Endpoints) -> None:
    """CREATE DATABASE is idempotent in InfluxDB 1.x: safe on every `up`."""
    influx_query(endpoints, f"CREATE DATABASE {_quote_identifier(endpoints.influx_db)}")


def _probe(service: _Service, endpoints: Endpoints, timeout: float, secure: SecureBroker | None = None) -> str | None:
    """Raises if the service does not answer; returns the version when the protocol tells it."""
    if service.name == "mosquitto" and secure is not None:
        creds = secure_files(endpoints).credentials(security.PROBE_USER)
        context = tls_context(creds.ca_file, creds.cert_file, creds.key_file)
        mqtt_handshake(
            endpoints.mqtt_host,
            secure.tls_port,
            timeout,
            tls=context,
            username=creds.username,
            password=creds.password(),
        )
        return None
    if service.name == "mosquitto":
        mqtt_handshake(endpoints.mqtt_host, endpoints.mqtt_port, timeout)
        return None
    return influx_ping(endpoints.influx_host, endpoints.influx_port, timeout)


_PROBE_ERRORS = (OSError, ServiceError, http.client.HTTPException, security.SecurityError)


def _raise_if_died(service: _Service) -> None:
    pid = _read_pid(service.pid_file)
    if pid is not None and not _is_ours(service, pid):
        service.pid_file.unlink(missing_ok=True)
        raise ServiceError(
            f"{service.name} (pid {pid}) exited during startup; last lines of {service.log_file}:\n"
            f"{_log_tail(service.log_file)}"
        )


def _not_ready_detail(service: _Service, error: str | None) -> str:
    detail = f"{service.name} on {service.address}: {error}"
    if service.log_file.exists():
        detail += f"; last lines of {service.log_file}:\n{_log_tail(service.log_file)}"
    return detail


def wait_ready(
    endpoints: Endpoints,
    timeout: float = 30.0,
    *,
    secure: SecureBroker | None = None,
    only: Collection[str] | None = None,
) -> None:
    """Block until the broker completes an MQTT handshake and InfluxDB answers /ping with 204 (or only the
    services named in `only`).

    Fails fast (with the log tail) if one of our processes dies meanwhile, and with the last probe error
    and the log tail when `timeout` seconds pass.
    """
    deadline = time.monotonic() + timeout
    pending = [s for s in _services(endpoints, secure) if only is None or s.name in only]
    errors: dict[str, str] = {}
    while True:
        for service in list(pending):
            _raise_if_died(service)
            try:
                _probe(service, endpoints, min(2.0, max(0.1, deadline - time.monotonic())), secure)
            except _PROBE_ERRORS as exc:
                errors[service.name] = str(exc) or type(exc).__name__
            else:
                pending.remove(service)
        if not pending:
            return
        if time.monotonic() >= deadline:
            details = "\n".join(_not_ready_detail(service, errors.get(service.name)) for service in pending)
            raise ServiceError(f"services not ready after {timeout:g} s:\n{details}")
        time.sleep(0.1)


# --- public API ----------------------------------------------------------------------------------------


def _require_current_config(service: _Service, endpoints: Endpoints, secure: SecureBroker | None = None) -> None:
    """A running instance started from another config (other port, newer template) is not what we want."""
    try:
        on_disk = service.config.read_text(encoding="utf-8")
    except OSError:
        on_disk = None
    if on_disk != _render(service, endpoints, secure):
        raise ServiceError(
            f"{service.name} is running from a config that differs from the current one ({service.config}: "
            "other ports, an updated template, or secure mode switched on or off); restart it: "
            "districtpulse services down && districtpulse services up [--secure]"
        )


def _ensure_credentials(endpoints: Endpoints, secure: SecureBroker, log: Log) -> bool:
    """Generate what the secure broker needs from the registry; True if its passwords or ACL changed."""
    files = secure_files(endpoints)
    try:
        changed = security.ensure(files.root, security.registry_gateways(secure.registry_path()))
    except (security.SecurityError, OSError) as exc:
        raise ServiceError(f"cannot prepare the secure broker's credentials in {files.root}: {exc}") from exc
    log(f"mosquitto: secure mode, CA and client credentials in {files.root} (ACL from {secure.registry_path()})")
    return changed


def up(
    endpoints: Endpoints,
    *,
    install: bool = True,
    log: Log = print,
    secure: SecureBroker | None = None,
    only: Collection[str] | None = None,
) -> None:
    """Start whatever of the two services is not running yet, wait until both answer, create the database.

    Idempotent: a running instance of ours (same state dir, same config) is reported and left alone, so
    test fixtures and the Makefile can call it unconditionally. With `secure`, the broker's credentials are
    (re)generated from the registry first, and a running secure broker reloads them (SIGHUP) if they changed.
    `only` ("mosquitto", "influxdb") starts and awaits just those, leaving the other as it is (a restart of
    one service, the other being down on purpose); the database is then created only if InfluxDB is named.
    """
    _require_loopback(endpoints)
    if only is not None and (unknown := set(only) - {"mosquitto", "influxdb"}):
        raise ValueError(f"unknown services: {sorted(unknown)}")
    with _state_lock(endpoints):
        changed = _ensure_credentials(endpoints, secure, log) if secure is not None else False
        to_start: list[_Service] = []
        for service in _services(endpoints, secure):
            if only is not None and service.name not in only:
                continue
            pid = _running_pid(service, log)
            if pid is None:
                to_start.append(service)
                continue
            _require_current_config(service, endpoints, secure)
            log(f"{service.name}: already running (pid {pid}) on {service.address}")
            if service.name == "mosquitto" and changed:
                _signal(pid, signal.SIGHUP)  # Mosquitto re-reads its password and ACL files on SIGHUP
                log(f"{service.name}: reloaded the password and ACL files (SIGHUP to pid {pid})")
        for service in to_start:  # check every port before starting anything: no half-started state
            _require_ports_free(service)
        if to_start:
            binaries = _ensure_binaries(install, log)
            for service in to_start:
                _start(service, endpoints, binaries[service.binary], log, secure)
        wait_ready(endpoints, secure=secure, only=only)
        if only is None or "influxdb" in only:
            _create_database(endpoints)
    if only is not None:
        log(f"services: ready ({', '.join(sorted(only))})")
        return
    mqtt = (
        f"mqtts {endpoints.mqtt_host}:{secure.tls_port}"
        if secure
        else f"mqtt {endpoints.mqtt_host}:{endpoints.mqtt_port}"
    )
    log(f"services: ready ({mqtt}, {endpoints.influx_url}, database {endpoints.influx_db!r})")


def down(endpoints: Endpoints, *, log: Log = print) -> None:
    """Stop what `up` started (by the pids in its pid files); data directories are kept."""
    with _state_lock(endpoints):
        for service in _services(endpoints):
            _stop(service, log)


def _binary_version(executable: str) -> str | None:
    """`mosquitto -h` prints "mosquitto version 2.0.11" (and exits 3)."""
    try:
        result = subprocess.run([executable, "-h"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    for word_before, word in zip(result.stdout.split(), result.stdout.split()[1:], strict=False):
        if word_before == "version":
            return word
    return None


def _running_executable(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except (OSError, UnicodeDecodeError):
        return None


def _secure_on_disk(service: _Service) -> bool:
    try:
        return "\nrequire_certificate true\n" in service.config.read_text(encoding="utf-8")
    except OSError:
        return False


def _status_of(service: _Service, endpoints: Endpoints, secure: SecureBroker | None = None) -> ServiceStatus:
    pid = _read_pid(service.pid_file)  # read only: `status` leaves a stale pid file for `up` to clean
    if pid is None or not _is_ours(service, pid):
        notes = [f"stale pid file (pid {pid})"] if pid is not None else []
        if any(_port_in_use(port) for port, _, _ in service.ports):
            notes.append("its port is used by another process")
        detail = "; ".join(["stopped", *notes])
        return ServiceStatus(service.name, None, False, service.address, None, detail)
    if service.name == "mosquitto" and secure is None and _secure_on_disk(service):
        detail = "running in secure mode (TLS only): ask `districtpulse services status --secure`"
        return ServiceStatus(service.name, pid, False, service.address, None, detail)
    try:
        version = _probe(service, endpoints, 2.0, secure)
    except _PROBE_ERRORS as exc:
        return ServiceStatus(service.name, pid, False, service.address, None, f"not answering: {exc}")
    if version is None:
        executable = _running_executable(pid)
        version = _binary_version(executable) if executable else None
    return ServiceStatus(service.name, pid, True, service.address, version, "ready")


def status(endpoints: Endpoints, *, secure: SecureBroker | None = None) -> list[ServiceStatus]:
    """Our processes (from the pid files) and whether they answer their protocol right now."""
    return [_status_of(service, endpoints, secure) for service in _services(endpoints, secure)]


def format_status(statuses: list[ServiceStatus]) -> str:
    header = ("SERVICE", "STATE", "PID", "ADDRESS", "VERSION", "DETAIL")
    rows = [header] + [
        (s.name, "running" if s.running else "down", str(s.pid or "-"), s.address, s.version or "-", s.detail)
        for s in statuses
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )


# --- CLI -----------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `districtpulse services` (the main CLI adds them to its subparser)."""
    parser.add_argument(
        "action",
        choices=("up", "down", "status"),
        help="up: install if needed, start and wait until ready; down: stop (data is kept); "
        f"status: show them (exit code {STATUS_EXIT_NOT_RUNNING} if not both running)",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="up: fail instead of installing missing mosquitto/influxdb with apt-get",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="up/status: Mosquitto with TLS only on DP_MQTT_TLS_PORT "
        f"(default {DEFAULT_MQTT_TLS_PORT}), client certificates, passwords and per-gateway topic ACLs "
        "generated from the registry under DP_STATE_DIR/mosquitto/secure",
    )
    parser.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="with --secure: the registry whose gateways get credentials (default: the demo registry)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the parsed `services` command against `Endpoints.from_env()`; returns the exit code."""
    endpoints = Endpoints.from_env()
    secure = SecureBroker.from_env(registry=getattr(args, "registry", None)) if getattr(args, "secure", False) else None
    try:
        if args.action == "up":
            up(endpoints, install=not getattr(args, "no_install", False), secure=secure)
        elif args.action == "down":
            down(endpoints)
            return 0
        statuses = status(endpoints, secure=secure)
    except ServiceError as exc:
        print(f"districtpulse services {args.action}: {exc}", file=sys.stderr)
        return 1
    print(format_status(statuses))
    return 0 if all(s.running for s in statuses) else STATUS_EXIT_NOT_RUNNING


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m districtpulse.services",
        description="The project's own Mosquitto and InfluxDB, on 127.0.0.1, with state in DP_STATE_DIR.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""up, down, status and wait_ready: layout, processes and probes in order, under a lock per state dir."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Collection
from pathlib import Path

from districtpulse.config import Endpoints
from districtpulse.services import secure as security
from districtpulse.services.database import create_database, prepare_secure_database
from districtpulse.services.layout import (
    Log,
    SecureBroker,
    ServiceError,
    ServiceStatus,
    _render,
    _require_loopback,
    _Service,
    _services,
    influx_secrets,
    secure_files,
)
from districtpulse.services.probes import PROBE_ERRORS, probe
from districtpulse.services.processes import (
    _ensure_binaries,
    _is_ours,
    _log_tail,
    _port_in_use,
    _read_pid,
    _require_ports_free,
    _running_pid,
    _signal,
    _start,
    _state_lock,
    _stop,
)


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
                probe(service, endpoints, min(2.0, max(0.1, deadline - time.monotonic())), secure)
            except PROBE_ERRORS as exc:
                errors[service.name] = str(exc) or type(exc).__name__
            else:
                pending.remove(service)
        if not pending:
            return
        if time.monotonic() >= deadline:
            details = "\n".join(_not_ready_detail(service, errors.get(service.name)) for service in pending)
            raise ServiceError(f"services not ready after {timeout:g} s:\n{details}")
        time.sleep(0.1)


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
        changed = security.ensure(
            files.root, security.registry_gateways(secure.registry_path()), ingest_consumers=secure.ingest_consumers
        )
        database = security.ensure_influx_secrets(influx_secrets(endpoints).root)
    except (security.SecurityError, OSError) as exc:
        raise ServiceError(f"cannot prepare the secure mode's credentials in {files.root}: {exc}") from exc
    log(f"mosquitto: secure mode, CA and client credentials in {files.root} (ACL from {secure.registry_path()})")
    users = ", ".join(security.INFLUX_USERS)
    log(f"influxdb: secure mode, authentication on, the passwords of {users} in {database.root}")
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
        if (only is None or "influxdb" in only) and secure is None:
            create_database(endpoints)
        elif only is None or "influxdb" in only:
            for done in prepare_secure_database(endpoints, influx_secrets(endpoints)):
                log(f"influxdb: {done}")
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
        version = probe(service, endpoints, 2.0, secure)
    except PROBE_ERRORS as exc:
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

"""Installing the Debian packages, and starting, recognising and stopping our own processes."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from districtpulse.config import Endpoints
from districtpulse.services.layout import LOOPBACK, Log, SecureBroker, ServiceError, _render, _Service, _state_dir

APT_PACKAGES = ("mosquitto", "influxdb")
# Where Debian puts the binaries; /usr/sbin is often not on a normal user's PATH.
BINARY_DIRS = ("/usr/sbin", "/usr/bin")
STOP_TIMEOUT = 15.0
KILL_TIMEOUT = 5.0
LOG_TAIL_LINES = 25

# Starts the service in the background and prints its pid. The shell is the only child of this process and
# exits at once, so the service is re-parented away from us: a long-lived caller (pytest, the demo) never
# holds a Popen for it (no zombie, no "subprocess still running" ResourceWarning), and `$!` is the exact pid
# of the service (a simple command is exec'd in the forked child), written to the pid file before the
# service even opened its config.
_LAUNCHER = 'log=$1; shift; "$@" >>"$log" 2>&1 </dev/null & echo $!'


# Written to the service's log before each start, so an error shows only the lines of this start.
_START_MARKER = "--- districtpulse services up"


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

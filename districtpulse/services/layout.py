"""What derives from the endpoints: each service's files, ports and command line, and its rendered config."""

from __future__ import annotations

import json
import os
import pwd
import string
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from devices.wire import MAX_PACKET_BYTES
from districtpulse.config import Endpoints
from districtpulse.services import secure as security

Log = Callable[[str], None]

LOOPBACK = "127.0.0.1"
DEFAULT_MQTT_TLS_PORT = 18883


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
    `registry` None means the demo registry. `ingest_consumers` is how many ingest identities (`_ingest`,
    `_ingest-2`, ...) are made: a client id is its username in secure mode, so each consumer process needs one.
    """

    tls_port: int = DEFAULT_MQTT_TLS_PORT
    registry: Path | None = None
    ingest_consumers: int = security.DEFAULT_INGEST_CONSUMERS

    @classmethod
    def from_env(
        cls,
        environ: dict[str, str] | None = None,
        *,
        registry: Path | None = None,
        ingest_consumers: int = security.DEFAULT_INGEST_CONSUMERS,
    ) -> SecureBroker:
        env = os.environ if environ is None else environ
        return cls(int(env.get("DP_MQTT_TLS_PORT", DEFAULT_MQTT_TLS_PORT)), registry, ingest_consumers)

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


def influx_secrets(endpoints: Endpoints) -> security.InfluxSecrets:
    """Where `up --secure` keeps the passwords of the InfluxDB users of this state dir."""
    return security.InfluxSecrets(_state_dir(endpoints) / "influxdb" / "secure")


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
    source = resources.files("districtpulse.services") / "templates" / name
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


def render_influxdb_conf(endpoints: Endpoints, secure: SecureBroker | None = None) -> str:
    """The database's config for these endpoints (pure: writes nothing); with authentication in secure mode."""
    meta, data, wal = _influxdb(endpoints).data_dirs
    return _template("influxdb.conf.in").substitute(
        auth_enabled="true" if secure is not None else "false",
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
    return render_influxdb_conf(endpoints) if secure is None else render_influxdb_conf(endpoints, secure)


def _require_loopback(endpoints: Endpoints) -> None:
    """The managed services only ever bind 127.0.0.1: a DP_*_HOST elsewhere means services we don't own."""
    for var, host in (("DP_MQTT_HOST", endpoints.mqtt_host), ("DP_INFLUX_HOST", endpoints.influx_host)):
        if host not in (LOOPBACK, "localhost"):
            raise ServiceError(
                f"{var}={host}: the local services listen on {LOOPBACK} only; "
                f"unset {var} (or set it to {LOOPBACK}) to use them, or manage the remote service yourself"
            )

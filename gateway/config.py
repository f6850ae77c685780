"""gateway.toml: who the gateway is, where the broker is, how the spool is bounded, which adapters run.

    [gateway]
    id = "gw-b1"                      # this gateway's id in the registry
    registry = "registry.toml"        # optional: gives the district and this gateway's devices
    # district = "demo"               # required when there is no registry
    publish_interval_s = 10           # one message per device per interval (faster while catching up)
    heartbeat_interval_s = 60

    [mqtt]                            # host and port default to DP_MQTT_HOST / DP_MQTT_PORT
    host = "broker.example"
    port = 1883
    username = "gw-b1"
    password_file = "/etc/districtpulse/mqtt-password"   # the secret stays out of this file
    tls = true                        # TLS 1.2+, the broker's certificate and host name verified
    ca_file = "/etc/districtpulse/ca.crt"                # default: the system CAs
    cert_file = "/etc/districtpulse/gw-b1.crt"           # a client certificate (with key_file), if the
    key_file = "/etc/districtpulse/gw-b1.key"            # broker requires one (`services up --secure` does)

    [spool]
    path = "/var/lib/districtpulse/spool.sqlite"
    commit_interval_ms = 200
    max_bytes = 268435456

    [delivery]                        # when a reading may leave the spool (gateway.delivery)
    delete_on = "confirm"             # when ingest confirms it is stored; "puback": an ingest that does not confirm
    confirm_timeout_s = 30            # published again if not confirmed by then (doubling, up to the max)
    confirm_timeout_max_s = 600
    max_unconfirmed_readings = 20000  # published and not yet confirmed, at most

    [[adapter]]
    type = "simulated"
    interval_s = 1

Relative paths are relative to the folder of the config file. Unknown keys are errors (a typo in a bound
must not silently fall back to a default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from devices.endpoints import Endpoints
from devices.registry import RegistryError, gateway_devices
from devices.secrets import SecretFileError, read_secret
from devices.tables import Bounds, Check, TableError, load_toml
from devices.topics import check_id
from devices.wire import MAX_READINGS_PER_BATCH
from gateway.adapters import AdapterConfig, AdapterContext, DeviceRef, parse_adapter_config
from gateway.delivery import DeliveryPolicy
from gateway.errors import ConfigError
from gateway.publisher import TlsConfig
from gateway.spool import SpoolLimits

#: A message larger than this would not pass a broker with the project's `max_packet_size`.
MAX_MESSAGE_BYTES_CAP = 1024 * 1024

# Dataclasses loaded by `devices.tables`, not pydantic models: pydantic would cost the Pi ~12 MB (issue 4).
Id = Annotated[str, Check(check_id)]
Positive = Annotated[float, Bounds(gt=0)]


@dataclass(frozen=True, slots=True)
class GatewaySection:
    id: Id
    district: Id | None = None
    registry: Path | None = None
    publish_interval_s: Positive = 10.0
    heartbeat_interval_s: Positive = 60.0
    max_batch_readings: Annotated[int, Bounds(ge=1, le=MAX_READINGS_PER_BATCH)] = 500
    clock_check_interval_s: Positive = 30.0
    age_check_interval_s: Positive = 60.0
    #: On SIGTERM, how long to wait for the broker to acknowledge what is in flight.
    drain_timeout_s: Annotated[float, Bounds(ge=0)] = 5.0


def _env() -> Endpoints:
    return Endpoints.from_env()


@dataclass(frozen=True, slots=True)
class MqttSection:
    host: str = field(default_factory=lambda: _env().mqtt_host)
    port: Annotated[int, Bounds(ge=1, le=65535)] = field(default_factory=lambda: _env().mqtt_port)
    #: Default: dp-gw-<gateway id>. Must be unique per broker: a second client with the same id evicts the first.
    client_id: str | None = None
    keepalive: Annotated[int, Bounds(ge=5, le=3600)] = 30
    username: str | None = None
    password_file: Path | None = None
    #: Messages awaiting PUBACK at once (one slot is kept for the status message).
    max_inflight: Annotated[int, Bounds(ge=2, le=10_000)] = 100
    #: ... and at most this many payload bytes (paho holds each payload until its PUBACK).
    max_inflight_bytes: Annotated[int, Bounds(ge=1024)] = 1024 * 1024
    #: One message's readings, at most this many bytes of JSON (a message then stays under the broker's limit).
    max_message_bytes: Annotated[int, Bounds(ge=1024, le=MAX_MESSAGE_BYTES_CAP)] = 256 * 1024
    reconnect_min_s: Positive = 1.0
    reconnect_max_s: Positive = 60.0
    #: TLS is explicit: a CA or certificate file without `tls = true` is an error, not a silent upgrade.
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        given = [name for name in ("ca_file", "cert_file", "key_file") if getattr(self, name) is not None]
        if given and not self.tls:
            raise ValueError(f"{', '.join(given)} set but tls = false: set tls = true")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs a username")


@dataclass(frozen=True, slots=True)
class SpoolSection:
    path: Path = Path("spool.sqlite")
    commit_interval_ms: Annotated[int, Bounds(ge=1, le=60_000)] = 200
    synchronous: Literal["NORMAL", "FULL"] = "FULL"
    max_bytes: Annotated[int, Bounds(ge=64 * 1024)] = 256 * 1024 * 1024
    instantaneous_max_age_s: Positive = 2 * 86400.0
    max_age_s: Positive = 30 * 86400.0
    #: Readings waiting for the next commit at most (adapters block beyond: backpressure).
    max_buffered: Annotated[int, Bounds(ge=100)] = 4_000

    def __post_init__(self) -> None:
        if self.instantaneous_max_age_s > self.max_age_s:
            raise ValueError("instantaneous_max_age_s must not exceed max_age_s")

    @property
    def limits(self) -> SpoolLimits:
        return SpoolLimits(self.max_bytes, self.instantaneous_max_age_s, self.max_age_s)


@dataclass(frozen=True, slots=True)
class DeliverySection:
    delete_on: Literal["confirm", "puback"] = "confirm"
    confirm_timeout_s: Positive = 30.0
    confirm_timeout_max_s: Positive = 600.0
    retry_min_s: Positive = 2.0
    max_unconfirmed_readings: Annotated[int, Bounds(ge=1, le=10_000_000)] = 20_000

    def __post_init__(self) -> None:
        if self.confirm_timeout_s > self.confirm_timeout_max_s:
            raise ValueError("confirm_timeout_s must not exceed confirm_timeout_max_s")
        if self.retry_min_s > self.confirm_timeout_max_s:
            raise ValueError("retry_min_s must not exceed confirm_timeout_max_s")

    @property
    def policy(self) -> DeliveryPolicy:
        return DeliveryPolicy(
            self.delete_on,
            self.confirm_timeout_s,
            self.confirm_timeout_max_s,
            self.retry_min_s,
            self.max_unconfirmed_readings,
        )


@dataclass(frozen=True, slots=True)
class ConfigFile:
    gateway: GatewaySection
    #: Each table is checked by its adapter type's own dataclass (`gateway.adapters.parse_adapter_config`).
    adapter: Annotated[list[dict[str, Any]], Bounds(min_length=1)]
    mqtt: MqttSection = field(default_factory=MqttSection)
    spool: SpoolSection = field(default_factory=SpoolSection)
    delivery: DeliverySection = field(default_factory=DeliverySection)


class GatewayConfig:
    """The validated configuration, with paths resolved and the registry loaded."""

    def __init__(self, model: ConfigFile, base_dir: Path) -> None:
        self.model = model
        self.base_dir = base_dir
        self.gateway = model.gateway
        self.mqtt = model.mqtt
        self.spool = model.spool
        self.delivery = model.delivery
        self.spool_path = self._resolve(model.spool.path)
        registry_devices: tuple[DeviceRef, ...] = ()
        district = model.gateway.district
        if model.gateway.registry is not None:
            path = self._resolve(model.gateway.registry)
            try:
                registry_district, devices = gateway_devices(path, model.gateway.id)
            except RegistryError as exc:
                raise ConfigError(str(exc)) from exc
            if district is not None and district != registry_district:
                raise ConfigError(
                    f"gateway {model.gateway.id!r} belongs to district {registry_district!r}, not {district!r}"
                )
            district = registry_district
            registry_devices = tuple(DeviceRef(device_id, kind) for device_id, kind in devices)
        if district is None:
            raise ConfigError("gateway.district is required when there is no gateway.registry")
        self.district: str = district
        self.registry_devices = registry_devices
        self.adapters: list[AdapterConfig] = [
            parse_adapter_config(raw, where=f"adapter[{i}]") for i, raw in enumerate(model.adapter)
        ]
        names = [a.name or a.type for a in self.adapters]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"adapters need distinct names: {', '.join(duplicates)} (set name = ...)")

    def _resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else self.base_dir / path

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"dp-gw-{self.gateway.id}"

    def password(self) -> str | None:
        """Read from `password_file` (never logged, never in the config file itself)."""
        if self.mqtt.password_file is None:
            return None
        try:
            return read_secret(self._resolve(self.mqtt.password_file), "mqtt.password_file")
        except SecretFileError as exc:
            raise ConfigError(str(exc)) from exc

    def tls(self) -> TlsConfig | None:
        """The TLS settings with paths resolved, or None for a plain-text connection."""
        m = self.mqtt
        if not m.tls:
            return None
        ca, cert, key = (self._resolve(p) if p is not None else None for p in (m.ca_file, m.cert_file, m.key_file))
        return TlsConfig(ca, cert, key)

    def adapter_context(self) -> AdapterContext:
        return AdapterContext(self.gateway.id, self.district, self.registry_devices, self.base_dir)

    @classmethod
    def from_toml(cls, text: str, *, base_dir: Path, source: str = "<string>") -> GatewayConfig:
        try:
            model = load_toml(ConfigFile, text)
        except TableError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
        try:
            return cls(model, base_dir)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> GatewayConfig:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read gateway config {path}: {exc.strerror}") from exc
        return cls.from_toml(text, base_dir=path.resolve().parent, source=str(path))

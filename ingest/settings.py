"""Ingest configuration: a TOML file plus environment variables, validated by pydantic-settings.

Precedence, highest first: command-line flags, `DP_INGEST_*` environment variables (nested with `__`, e.g.
`DP_INGEST_INFLUX__TOKEN`, `DP_INGEST_MQTT__RECEIVE_MAXIMUM`), the TOML file given with `--config`, then the
defaults. The defaults of the endpoints come from the variables every component shares (`DP_MQTT_HOST`,
`DP_INFLUX_PORT`, `DP_INFLUX_DB`, `DP_STATE_DIR`, see `devices.endpoints`), so `districtpulse ingest` with
no file talks to the local services. An example file: `ingest/ingest.example.toml`.

Unknown keys are errors (`extra="forbid"`): a misspelt option must fail `--check`, not be ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from devices import demo_registry_path
from devices.endpoints import Endpoints
from devices.secrets import check_secret_file, read_secret
from devices.wire import MAX_PACKET_BYTES
from ingest.mqtt import DEFAULT_MAXIMUM_PACKET_SIZE, MqttConfig
from ingest.pipeline import IngestSettings
from storage.influx import InfluxConfig

T = TypeVar("T")


def _handed(target: type[T], section: BaseModel, *, unused: Collection[str] = (), **special: Any) -> T:
    """The dataclass `target` from the section's fields of the same names (a `SecretStr` revealed), then `special`.

    Every field of the section must land somewhere (a field of `target`, `special`, or `unused` on purpose), so a
    setting added to the file can never be validated and then silently dropped on its way to the pipeline."""
    names = {f.name for f in dataclasses.fields(target)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for name in type(section).model_fields:
        if name in special or name in unused:
            continue
        if name not in names:
            raise TypeError(f"{type(section).__name__}.{name} has no field in {target.__name__}")
        value = getattr(section, name)
        values[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return target(**values, **special)


def _env() -> Endpoints:
    return Endpoints.from_env()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSection(_Section):
    host: str = Field(default_factory=lambda: _env().mqtt_host)
    port: int = Field(default_factory=lambda: _env().mqtt_port, gt=0, lt=65536)
    client_id: str = Field(default="districtpulse-ingest", min_length=1, description="fixed: the session's key")
    topics: tuple[str, ...] = Field(default=("dp/v1/+/+/+/+",), min_length=1)
    session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0)
    receive_maximum: int = Field(default=1000, ge=1, le=65535)
    #: MQTT 5 Maximum Packet Size on CONNECT; 0: none. The protocol's largest packet is 268,435,460 bytes.
    maximum_packet_size: int = Field(default=DEFAULT_MAXIMUM_PACKET_SIZE, ge=0, le=268_435_460)
    max_buffered_messages: int = Field(default=0, ge=0)
    stall_timeout_s: float = Field(default=10.0, gt=0)
    keepalive: int = Field(default=30, ge=5)
    username: str | None = None
    password: SecretStr | None = None
    #: The password in a file only its owner reads (devices.secrets), instead of `password`.
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @field_validator("maximum_packet_size")
    @classmethod
    def _not_below_the_brokers_bound(cls, value: int) -> int:
        if 0 < value < MAX_PACKET_BYTES:
            raise ValueError(
                f"must be 0 (no limit) or at least {MAX_PACKET_BYTES}, the largest packet the broker accepts"
                " (devices.wire.MAX_PACKET_BYTES): the broker silently drops a larger message for this consumer"
            )
        return value

    @model_validator(mode="after")
    def _secret_from_one_place(self) -> MqttSection:
        _one_secret(self, "password", "password_file")
        return self


class InfluxSection(_Section):
    #: "auto" asks /ping for X-Influxdb-Version; "1" speaks /write with database + retention policy,
    #: "2" speaks /api/v2/write through influxdb-client with org + bucket + token.
    version: Literal["auto", "1", "2"] = "auto"
    url: str = Field(default_factory=lambda: _env().influx_url)
    database: str = Field(default_factory=lambda: _env().influx_db, min_length=1)
    retention_policy: str | None = None
    username: str | None = Field(default_factory=lambda: _env().influx_username)
    password: SecretStr | None = None
    #: The password in a file only its owner reads (devices.secrets), instead of `password`; `token_file` the same
    #: for `token` (2.x). Default: DP_INFLUX_USERNAME and DP_INFLUX_PASSWORD_FILE, as every component.
    password_file: Path | None = Field(default_factory=lambda: _env().influx_password_file)
    org: str | None = None
    bucket: str | None = None
    token: SecretStr | None = None
    token_file: Path | None = None
    timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _v2_needs_credentials(self) -> InfluxSection:
        if self.version == "2":
            missing = [name for name in ("org", "bucket") if getattr(self, name) is None]
            missing += ["token"] if self.token is None and self.token_file is None else []
            if missing:
                raise ValueError(f"influx.version = 2 needs {', '.join(missing)}")
        _one_secret(self, "password", "password_file")
        _one_secret(self, "token", "token_file")
        return self


def _one_secret(section: BaseModel, value: str, file: str) -> None:
    """At most one of a secret and its file; the file usable now (not read into the settings: see `runtime`)."""
    path = getattr(section, file)
    if path is None:
        return
    if getattr(section, value) is not None:
        raise ValueError(f"{value} and {file} are both set: keep one (the file keeps the secret out of the config)")
    check_secret_file(path, file)


def _revealed(section: BaseModel, value: str, file: str) -> str | None:
    """The secret of `value`, or read from `file`; only ever called when the runtime settings are made."""
    path = getattr(section, file)
    if path is not None:
        return read_secret(path, file)
    secret = getattr(section, value)
    return secret.get_secret_value() if isinstance(secret, SecretStr) else None


class MetricsSection(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, lt=65536, description="0: any free port")


class IngestConfig(BaseSettings):
    """Everything `districtpulse ingest` can be told, validated before anything connects."""

    model_config = SettingsConfigDict(
        env_prefix="DP_INGEST_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        nested_model_default_partial_update=True,
    )
    #: the TOML file of this load (set by `load`); None: no file
    toml_file: ClassVar[Path | None] = None

    registry: Path = Field(default_factory=demo_registry_path)
    quarantine: Path = Field(default_factory=lambda: _env().state_dir / "ingest" / "quarantine.sqlite")
    quarantine_max_rows: int = Field(default=1_000_000, ge=1)
    #: rows and payloads, in bytes (a payload once however many of its readings are quarantined)
    quarantine_max_bytes: int = Field(default=1 << 30, ge=1)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    influx: InfluxSection = Field(default_factory=InfluxSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    batch_readings: int = Field(default=5000, ge=1)
    batch_interval_s: float = Field(default=0.2, gt=0)
    writers: int = Field(default=8, ge=1, le=64)
    retry_base_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)
    max_inflight_readings: int = Field(default=100_000, ge=1)
    drain_timeout_s: float = Field(default=10.0, ge=0)
    confirm_delay_s: float = Field(default=0.25, ge=0, le=10)
    confirm_max_delay_s: float = Field(default=1.0, ge=0, le=60)
    #: Storage confirmations to the gateways. Off only where no gateway waits for them (every gateway older
    #: than confirmations, or a benchmark's baseline): a current gateway keeps and resends what is unconfirmed.
    confirm: bool = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_file))
        return tuple(sources)

    @classmethod
    def load(cls, toml_file: Path | None = None, **overrides: Any) -> IngestConfig:
        """Read the file (if any) and the environment; `overrides` (command-line flags) win over both."""
        if toml_file is not None and not toml_file.is_file():
            raise FileNotFoundError(f"configuration file not found: {toml_file}")
        loader = type("IngestConfigFromFile", (cls,), {"toml_file": toml_file})
        config: IngestConfig = loader(**overrides)
        return config

    def runtime(self) -> IngestSettings:
        """The pipeline's settings: every field handed over by name (secrets revealed only here)."""
        m, i = self.mqtt, self.influx
        return _handed(
            IngestSettings,
            self,
            unused={"metrics"},  # the metrics endpoint is the CLI's, not the pipeline's
            mqtt=_handed(
                MqttConfig,
                m,
                unused={"password_file"},
                subscriptions_file=self.quarantine.parent / f"subscriptions-{m.client_id}.json",
                password=_revealed(m, "password", "password_file"),
            ),
            influx=_handed(
                InfluxConfig,
                i,
                unused={"timeout_s", "password_file", "token_file"},
                timeout=i.timeout_s,
                password=_revealed(i, "password", "password_file"),
                token=_revealed(i, "token", "token_file"),
            ),
        )

    def summary(self) -> dict[str, object]:
        """What `--check` prints: the effective configuration without secrets."""
        doc = self.model_dump(mode="json")
        for section, key in (("mqtt", "password"), ("influx", "password"), ("influx", "token")):
            if doc[section].get(key) is not None:
                doc[section][key] = "***"
        return doc

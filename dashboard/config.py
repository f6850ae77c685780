"""The dashboard's configuration: one TOML file (`dashboard.toml`), every section optional.

    [dashboard]
    port = 8050
    registry = "devices/registries/demo.toml"
    refresh_s = 5                 # how often the live view and the alerts are recomputed
    reading_interval_s = 60       # how often a device is expected to report one reading
    reading_interval_by_kind = { weather_station = 600 }

    [influx]                      # default: the DP_INFLUX_* environment of every component
    url = "http://127.0.0.1:18086"
    database = "districtpulse"

    [[auth.user]]
    name = "operator"
    role = "operator"             # or "viewer": can look, cannot acknowledge or silence alerts
    password_env = "DP_DASHBOARD_OPERATOR_PASSWORD"

    [auth]
    secure_cookie = "auto"        # the default: Secure unless `dashboard.host` is loopback; or true / false
    metrics_token_env = "DP_DASHBOARD_METRICS_TOKEN"  # default: no token, /metrics for loopback clients only

    [auth.throttle]               # password and token guessing: these are the defaults
    max_failures = 5              # failed logins per user name, and per client address (wrong bearer
                                  # tokens count for the address), ...
    window_s = 300                # ... within this sliding window lock that user / that address out
    lockout_s = 60                # for this long (HTTP 429 + Retry-After, the password is not even checked),
    max_lockout_s = 900           # doubled at each repeated lockout up to this cap
    reset_after_s = 3600          # a user or address without a failure for this long starts over
    max_tracked = 10000           # user names (and addresses) remembered, least recently used forgotten
    # client_ip_header = "X-Real-IP"  # only behind a reverse proxy that overwrites it (default: TCP peer)

    [[alerts.rule]]
    kind = "device_silent"
    intervals = 3

Secrets can be given inline (`password`, `token`, `secret`) or, better, by the name of an environment
variable (`password_env`, ...), so the file itself can be committed. Without any user the dashboard refuses
to start unless `auth.open = true` says, on purpose, that no login is wanted (a kiosk on a closed network).
"""

from __future__ import annotations

import os
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from devices import DeviceKind, demo_registry_path
from devices.endpoints import Endpoints
from devices.problems import describe
from devices.secrets import check_secret_file, read_secret

Severity = Literal["critical", "warning", "info"]
Role = Literal["operator", "viewer"]
SecureCookie = Literal["auto"] | bool


class ConfigError(ValueError):
    """The dashboard configuration cannot be read or is inconsistent."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- alert rules ------------------------------------------------------------------------------------------------
class _Rule(_Model):
    name: str = Field(default="", description="shown on the dashboard and in /metrics; default: the kind")
    severity: Severity = "warning"


class DeviceSilentRule(_Rule):
    """A device whose last reading is older than `intervals` of its reading interval."""

    kind: Literal["device_silent"]
    intervals: float = Field(default=3, gt=0)


class CompletenessRule(_Rule):
    """A district whose readings over the last `window_s` are below `percent` of those expected."""

    kind: Literal["completeness_below"]
    percent: float = Field(default=95, gt=0, le=100)
    window_s: int = Field(default=3600, gt=0)


class GatewayOfflineRule(_Rule):
    """A gateway whose retained status says offline, or whose heartbeat is `heartbeats` intervals late."""

    kind: Literal["gateway_offline"]
    heartbeats: float = Field(default=3, gt=0)


class SpoolAgeRule(_Rule):
    """A gateway holding a reading it has not delivered for more than `seconds`."""

    kind: Literal["spool_older_than"]
    seconds: float = Field(default=900, gt=0)


class QuarantineRateRule(_Rule):
    """A district where more than `percent` of the readings of the last `window_s` went to quarantine."""

    kind: Literal["quarantine_rate_above"]
    percent: float = Field(default=1.0, ge=0, le=100)
    window_s: int = Field(default=3600, gt=0)


class ClockRule(_Rule):
    """A gateway whose clock is not synchronised, or is more than `max_skew_s` off the server's clock."""

    kind: Literal["clock_unsynced"]
    max_skew_s: float = Field(default=10, gt=0)


Rule = Annotated[
    DeviceSilentRule | CompletenessRule | GatewayOfflineRule | SpoolAgeRule | QuarantineRateRule | ClockRule,
    Field(discriminator="kind"),
]


def default_rules() -> list[Rule]:
    return [
        DeviceSilentRule(kind="device_silent", severity="critical"),
        GatewayOfflineRule(kind="gateway_offline", severity="critical"),
        CompletenessRule(kind="completeness_below"),
        SpoolAgeRule(kind="spool_older_than"),
        QuarantineRateRule(kind="quarantine_rate_above"),
        ClockRule(kind="clock_unsynced"),
    ]


class AlertsSection(_Model):
    rule: list[Rule] = Field(default_factory=default_rules)
    mqtt_topic: str | None = Field(default=None, description="publish alert changes here (QoS 1, JSON)")
    webhook_url: str | None = Field(default=None, description="POST alert changes here (JSON)")
    webhook_timeout_s: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [rule_name(r) for r in self.rule]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"alert rule names must be unique (set `name`): {', '.join(dupes)}")
        return self


def rule_name(rule: Rule) -> str:
    return rule.name or rule.kind


# -- access -----------------------------------------------------------------------------------------------------
def _secret(inline: str | None, env: str | None, what: str) -> str | None:
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"{what}: environment variable {env} is not set")
        return value
    return inline


class UserEntry(_Model):
    name: str = Field(min_length=1, max_length=64)
    role: Role = "viewer"
    password: str | None = Field(default=None, repr=False, min_length=8)
    password_env: str | None = None
    token: str | None = Field(default=None, repr=False, min_length=16)
    token_env: str | None = None

    def resolved_password(self) -> str | None:
        return _secret(self.password, self.password_env, f"user {self.name!r} password")

    def resolved_token(self) -> str | None:
        return _secret(self.token, self.token_env, f"user {self.name!r} token")


class ThrottleSection(_Model):
    """Login throttling (see `throttle`): the defaults follow Grafana's brute-force protection (5 in 5 min)."""

    max_failures: int = Field(default=5, ge=1, description="failures per user, and per address, before a lockout")
    window_s: float = Field(default=300, gt=0, description="the sliding window the failures are counted in")
    lockout_s: float = Field(default=60, gt=0, description="the first lockout; each repeated one doubles")
    max_lockout_s: float = Field(default=900, gt=0, description="the cap of the doubling")
    reset_after_s: float = Field(default=3600, gt=0, description="quiet time after which the doubling starts over")
    max_tracked: int = Field(default=10_000, ge=1, description="user names (and addresses) kept, LRU evicted")
    client_ip_header: str | None = Field(
        default=None,
        description="e.g. X-Real-IP, behind a reverse proxy that overwrites it; default: the TCP peer address",
    )

    @model_validator(mode="after")
    def _cap_above_first(self) -> Self:
        if self.max_lockout_s < self.lockout_s:
            raise ValueError("max_lockout_s must be at least lockout_s")
        return self


class AuthSection(_Model):
    user: list[UserEntry] = Field(default_factory=list)
    open: bool = Field(default=False, description="no login at all: everyone is a viewer")
    secret: str | None = Field(default=None, repr=False, description="cookie signing key; default: random per start")
    secret_env: str | None = None
    session_hours: float = Field(default=12, gt=0)
    secure_cookie: SecureCookie = Field(
        default="auto",
        description=(
            "the session cookie's Secure flag: true, false, or auto (the default): Secure unless the dashboard"
            " binds a loopback address (the demo's plain http on 127.0.0.1), and always on a request that came"
            " over https (a TLS proxy in front: X-Forwarded-Proto from 127.0.0.1, as uvicorn trusts it)"
        ),
    )
    metrics_token: str | None = Field(
        default=None,
        repr=False,
        description=(
            "bearer token for /metrics; without one, /metrics answers loopback clients only (a Prometheus on"
            " the same host; one elsewhere needs the token)"
        ),
    )
    metrics_token_env: str | None = None
    throttle: ThrottleSection = Field(default_factory=ThrottleSection)


# -- data -------------------------------------------------------------------------------------------------------
class DashboardSection(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8050, ge=0, le=65535)
    title: str = "DistrictPulse"
    registry: Path = Field(default_factory=demo_registry_path)
    quarantine: Path | None = Field(default=None, description="the ingest quarantine (SQLite); default: ingest's")
    refresh_s: float = Field(default=5, gt=0)
    energy_refresh_s: float = Field(default=30, gt=0, description="energy today is recomputed this often")
    reading_interval_s: float = Field(default=60, gt=0)
    reading_interval_by_kind: dict[DeviceKind, float] = Field(default_factory=dict)
    heartbeat_interval_s: float = Field(default=60, gt=0, description="the gateways' status heartbeat")
    fresh_intervals: float = Field(default=3, gt=0, description="a value older than this many intervals is stale")
    last_seen_lookback_s: int = Field(default=7 * 86400, gt=0, description="how far back to look for a device")
    chart_window_s: int = Field(default=3 * 3600, gt=0)
    chart_step_s: int = Field(default=60, gt=0)
    as_of: datetime | None = Field(
        default=None, description="show the district as it was at this moment (a recorded day) instead of now"
    )

    @field_validator("as_of")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("as_of needs a UTC offset, e.g. 2026-11-22T20:00:00+02:00")
        return value


def _one_secret(password: str | None, password_file: Path | None) -> None:
    if password_file is None:
        return
    if password is not None:
        raise ValueError("password and password_file are both set: keep one (the file keeps it out of the config)")
    check_secret_file(password_file, "password_file")


class InfluxSection(_Model):
    url: str
    database: str
    #: In secure mode the `reader` user (READ only); default DP_INFLUX_USERNAME / DP_INFLUX_PASSWORD_FILE.
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    #: The password in a file only its owner reads (devices.secrets), instead of `password`.
    password_file: Path | None = None

    @model_validator(mode="after")
    def _secret_from_one_place(self) -> Self:
        _one_secret(self.password, self.password_file)
        return self

    def secret(self) -> str | None:
        return read_secret(self.password_file, "influx.password_file") if self.password_file else self.password


class MqttSection(_Model):
    host: str
    port: int
    client_id: str = "districtpulse-dashboard"
    #: In secure mode `_dashboard`: its client id is its username there, so one dashboard per identity.
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    password_file: Path | None = None
    #: TLS towards the broker (secure mode): on when `ca_file` is set; a client certificate needs its key.
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _one_secret(self.password, self.password_file)
        if (self.cert_file is not None or self.key_file is not None) and self.ca_file is None:
            raise ValueError("cert_file and key_file need ca_file (TLS is on when ca_file is set)")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a TLS client certificate needs both cert_file and key_file")
        return self

    def secret(self) -> str | None:
        return read_secret(self.password_file, "mqtt.password_file") if self.password_file else self.password


class KpiSection(_Model):
    """Where aggregation's KPI outputs are: `measurement.field`, each with a `district` tag."""

    savings_kwh: str = "kpi_savings.savings_kwh"
    co2_avoided_kg: str = "kpi_co2.avoided_kg"


class DashboardConfig(_Model):
    dashboard: DashboardSection = Field(default_factory=DashboardSection)
    influx: InfluxSection
    mqtt: MqttSection
    auth: AuthSection = Field(default_factory=AuthSection)
    alerts: AlertsSection = Field(default_factory=AlertsSection)
    kpis: KpiSection = Field(default_factory=KpiSection)

    @property
    def quarantine_path(self) -> Path:
        """The quarantine the dashboard reads; ingest's default when not configured."""
        if self.dashboard.quarantine is not None:
            return self.dashboard.quarantine
        return Endpoints.from_env().state_dir / "ingest" / "quarantine.sqlite"

    def reading_interval_s(self, kind: DeviceKind) -> float:
        return self.dashboard.reading_interval_by_kind.get(kind, self.dashboard.reading_interval_s)

    @classmethod
    def from_mapping(cls, raw: dict[str, object], *, source: str = "<config>") -> Self:
        env = Endpoints.from_env()
        raw = dict(raw)
        raw.setdefault("influx", {})
        raw.setdefault("mqtt", {})
        influx, mqtt = raw["influx"], raw["mqtt"]
        if isinstance(influx, dict):
            defaults: dict[str, object] = {"url": env.influx_url, "database": env.influx_db}
            if env.influx_username and not {"username", "password", "password_file"} & set(influx):
                defaults |= {"username": env.influx_username, "password_file": env.influx_password_file}
            raw["influx"] = defaults | influx
        if isinstance(mqtt, dict):
            raw["mqtt"] = {"host": env.mqtt_host, "port": env.mqtt_port} | mqtt
        try:
            config = cls.model_validate(raw)
        except ValidationError as exc:
            problems = describe(exc)
            raise ConfigError(f"{source}: {problems}") from exc
        if not config.auth.user and not config.auth.open:
            raise ConfigError(f"{source}: no [[auth.user]]: add an operator (or set auth.open = true on purpose)")
        return config

    @classmethod
    def load(cls, path: Path) -> Self:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        base = path.parent
        section = raw.get("dashboard")
        if isinstance(section, dict):  # relative paths are relative to the file, not to the working directory
            for key in ("registry", "quarantine"):
                if isinstance(section.get(key), str):
                    section[key] = str(base / section[key])
        for name, keys in (
            ("influx", ("password_file",)),
            ("mqtt", ("password_file", "ca_file", "cert_file", "key_file")),
        ):
            table = raw.get(name)
            if isinstance(table, dict):
                for key in keys:
                    if isinstance(table.get(key), str):
                        table[key] = str(base / table[key])
        return cls.from_mapping(raw, source=str(path))

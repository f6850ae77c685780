"""Where the broker and the database are: one place for the defaults every component shares.

Defaults avoid the well-known ports on purpose: on a Debian machine with systemd, `apt-get install mosquitto
influxdb` starts the *system* services on 1883 and 8086, and the project's own services must never collide
with (or silently talk to) those.

Every value can be overridden by an environment variable, which is how CI, the Makefile and the tests point
all components at the same services. The database's credentials too: `DP_INFLUX_USERNAME` and
`DP_INFLUX_PASSWORD_FILE` (a file only its owner reads, `devices.secrets`: never the password itself in the
environment, which /proc shows to the same user's processes and many tools dump).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MQTT_PORT = 11883
DEFAULT_INFLUX_PORT = 18086
DEFAULT_INFLUX_DB = "districtpulse"


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Host and ports of the broker and the database, plus the state directory of the local services."""

    mqtt_host: str
    mqtt_port: int
    influx_host: str
    influx_port: int
    influx_db: str
    state_dir: Path
    influx_username: str | None = None
    influx_password_file: Path | None = None

    @property
    def influx_url(self) -> str:
        return f"http://{self.influx_host}:{self.influx_port}"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Endpoints:
        env = os.environ if environ is None else environ
        return cls(
            mqtt_host=env.get("DP_MQTT_HOST", "127.0.0.1"),
            mqtt_port=int(env.get("DP_MQTT_PORT", DEFAULT_MQTT_PORT)),
            influx_host=env.get("DP_INFLUX_HOST", "127.0.0.1"),
            influx_port=int(env.get("DP_INFLUX_PORT", DEFAULT_INFLUX_PORT)),
            influx_db=env.get("DP_INFLUX_DB", DEFAULT_INFLUX_DB),
            state_dir=Path(env.get("DP_STATE_DIR", Path.cwd() / ".services")).resolve(),
            influx_username=env.get("DP_INFLUX_USERNAME") or None,
            influx_password_file=Path(env["DP_INFLUX_PASSWORD_FILE"]) if env.get("DP_INFLUX_PASSWORD_FILE") else None,
        )

"""The project's own Mosquitto and InfluxDB 1.6: `districtpulse services up|down|status`.

Why the project starts its own services instead of using the system ones:

* reproducibility: the same broker and database settings (queue sizes, no `_internal` database, ...) on
  every developer machine, in CI and in the demo, from the templates in `templates/`;
* isolation: the data lives in the state directory (`Endpoints.state_dir`, default `<cwd>/.services`),
  never in /var/lib, and the ports (11883, 18086 by default) never collide with system services that
  `apt-get install` may have started on 1883 and 8086;
* no root daemons: both run as the current user, bound to 127.0.0.1 only.

Secure mode (`up --secure`, `SecureBroker`) runs the same Mosquitto with a TLS-only listener on its own port
(DP_MQTT_TLS_PORT), client certificates, passwords and per-gateway topic ACLs generated from the registry by
`districtpulse.services.secure`; the probes then authenticate as the broker's `_probe` user, which may touch no
topic. InfluxDB then runs with authentication: users admin, writer and reader (`database`).

The rooms of this package:

    layout      what derives from the endpoints: files, ports, command lines, the rendered configs
    processes   installing the Debian packages, starting, recognising and stopping our processes
    probes      is it up: a real MQTT CONNECT/CONNACK (paho) and InfluxDB's /ping (storage's client)
    database    the database `up` prepares, and in secure mode InfluxDB's admin, writer and reader users
    secure      secure mode's CA, certificates, passwords and ACL (from the registry), and the database's passwords
    manage      up, down, status, wait_ready: the above in order, under a lock per state dir
    cli         `districtpulse services up|down|status`
    templates/  the Mosquitto and InfluxDB config templates

It relies on Linux /proc to recognise its own processes: a pid file alone is not proof (pids are reused), so a
process counts as ours only if /proc/<pid>/cmdline is the expected binary with our config file. Processes are
never looked up or killed by name.
"""

from districtpulse.services.layout import (
    DEFAULT_MQTT_TLS_PORT,
    SecureBroker,
    ServiceError,
    ServiceStatus,
    influx_secrets,
    render_influxdb_conf,
    render_mosquitto_conf,
    secure_files,
)
from districtpulse.services.manage import down, format_status, status, up, wait_ready
from districtpulse.services.probes import influx_ping, influx_query, mqtt_handshake, tls_context

__all__ = [
    "DEFAULT_MQTT_TLS_PORT",
    "SecureBroker",
    "ServiceError",
    "ServiceStatus",
    "down",
    "format_status",
    "influx_ping",
    "influx_query",
    "influx_secrets",
    "mqtt_handshake",
    "render_influxdb_conf",
    "render_mosquitto_conf",
    "secure_files",
    "status",
    "tls_context",
    "up",
    "wait_ready",
]

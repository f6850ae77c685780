"""Is it up: a real MQTT CONNECT/CONNACK, and InfluxDB's /ping.

An open port alone does not prove that a broker accepts clients, so the broker probe is a whole MQTT handshake
through paho, the client the gateway and ingest use (TLS and a password in secure mode). The database probe
(and `influx_query`) go through storage's InfluxDB client, the one ingest and the jobs use, so a
service that `up` calls ready answers the components exactly as it answered the probe.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from devices.tls import TlsFilesError, client_context
from districtpulse.config import Endpoints
from districtpulse.services import secure as security
from districtpulse.services.layout import SecureBroker, ServiceError, _Service, secure_files
from storage.errors import StorageError
from storage.influx import InfluxConfig, InfluxV1


def tls_context(ca_file: Path, cert_file: Path | None = None, key_file: Path | None = None) -> ssl.SSLContext:
    """Verify the broker against `ca_file` (host name included); present a client certificate if given."""
    return client_context(ca_file, cert_file, key_file)


def mqtt_handshake(
    host: str,
    port: int,
    timeout: float = 2.0,
    *,
    tls: ssl.SSLContext | None = None,
    username: str | None = None,
    password: str | None = None,
) -> None:
    """A real MQTT 3.1.1 CONNECT/CONNACK (clean session, a random client id), then DISCONNECT.

    With `tls` the handshake runs over TLS (the broker's certificate is verified against the context's CA);
    the password is only ever sent inside that connection, and never appears in an error message. Raises
    `OSError` when nothing listens (ConnectionRefusedError) or TLS fails, `ServiceError` when the broker
    refuses or does not answer within `timeout`.
    """
    answer: list[ReasonCode] = []
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"dp-probe-{secrets.token_hex(4)}",
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    client.on_connect = lambda _c, _u, _f, reason, _p: answer.append(reason)
    if tls is not None:
        client.tls_set_context(tls)
    if username is not None:
        client.username_pw_set(username, password)
    client.connect_timeout = timeout
    try:
        client.connect(host, port, keepalive=10)
        deadline = time.monotonic() + timeout
        while not answer and time.monotonic() < deadline:
            if client.loop(timeout=min(0.05, max(0.0, deadline - time.monotonic()))) != mqtt.MQTT_ERR_SUCCESS:
                break  # the broker closed the connection without a CONNACK
        if not answer:
            raise ServiceError(f"{host}:{port} did not answer the MQTT CONNECT with a CONNACK within {timeout:g} s")
        if answer[0].is_failure:
            raise ServiceError(f"the broker on {host}:{port} refused the connection ({answer[0]})")
    finally:
        client.disconnect()  # without a network thread paho writes the DISCONNECT at once and closes the socket


def _influx(endpoints: Endpoints, timeout: float) -> InfluxV1:
    return InfluxV1(InfluxConfig(url=endpoints.influx_url, database=endpoints.influx_db, timeout=timeout))


def influx_ping(host: str, port: int, timeout: float = 2.0) -> str:
    """GET /ping must answer 204; returns the X-Influxdb-Version header (e.g. "1.6.7~rc0")."""

    async def ping() -> str:
        config = InfluxConfig(url=f"http://{host}:{port}", database="", timeout=timeout)
        async with InfluxV1(config) as influx:
            return await influx.ping()

    try:
        return asyncio.run(ping())
    except StorageError as exc:
        raise ServiceError(f"GET http://{host}:{port}/ping: {exc}") from exc


def influx_query(endpoints: Endpoints, query: str, *, database: str | None = None) -> list[dict[str, Any]]:
    """Run an InfluxQL statement; returns the series of its result, raises `ServiceError` on any error."""

    async def run() -> list[dict[str, Any]]:
        async with _influx(endpoints, 5.0) as influx:
            return await influx.query(query, database=database or endpoints.influx_db)

    try:
        return asyncio.run(run())
    except StorageError as exc:
        raise ServiceError(f"InfluxDB query {query!r} failed: {exc}") from exc


def probe(service: _Service, endpoints: Endpoints, timeout: float, secure: SecureBroker | None = None) -> str | None:
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


PROBE_ERRORS = (OSError, ServiceError, security.SecurityError, TlsFilesError)

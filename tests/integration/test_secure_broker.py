"""`districtpulse services up --secure`: TLS only, client certificates, passwords, per-gateway topic ACLs.

One PRIVATE secure instance for the module (temporary state dir, free ports, its own small registry), so the
shared plain services of the other tests are never touched. What is shown, on the real Mosquitto:

* a gateway publishes under dp/v1/<its district>/<its id>/# and nowhere else (not as another gateway, not
  under another district), and cannot subscribe to the district's readings;
* only ingest writes confirmations, and a gateway reads only its own;
* the ingest user receives everything, also through a `$share` subscription;
* a wrong password, an unknown user, a missing client certificate, an untrusted broker certificate and a
  plain-text connection are all refused;
* `up` again with a gateway added to the registry reloads the broker's credentials without a restart;
* no password and no private key appears in the output of `up`/`status`, in the broker's log or in the
  gateway's log lines.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.wire import encode_confirms
from districtpulse import services
from districtpulse.config import Endpoints
from districtpulse.services import SecureBroker
from districtpulse.services.secure import (
    DASHBOARD_USER,
    INFLUX_ADMIN,
    INFLUX_READER,
    INFLUX_WRITER,
    INGEST_USER,
    InfluxSecrets,
    SecureFiles,
    ingest_users,
)
from gateway.errors import BrokerUnavailable
from gateway.publisher import BrokerConfig, Publisher, TlsConfig
from storage.errors import SinkRefused
from storage.influx import InfluxConfig, InfluxV1
from tests.support.net import free_influx_port as _free_influx_port
from tests.support.net import free_port as _free_port

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 10.0

REGISTRY = """
[[district]]
id = "sxa"
  [[district.building]]
  id = "sxa-b1"
  floor_area_m2 = 100
    [[district.building.gateway]]
    id = "sx-g1"
      [[district.building.gateway.device]]
      id = "sx-dev1"
      kind = "electricity_meter"
    [[district.building.gateway]]
    id = "sx-g2"
[[district]]
id = "sxb"
  [[district.building]]
  id = "sxb-b1"
  floor_area_m2 = 100
    [[district.building.gateway]]
    id = "sx-g3"
"""

ADDED_GATEWAY = """
    [[district.building.gateway]]
    id = "sx-g4"
"""


@dataclass
class Secure:
    endpoints: Endpoints
    broker: SecureBroker
    files: SecureFiles
    registry: Path
    log: list[str]

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DP_MQTT_PORT": str(self.endpoints.mqtt_port),
            "DP_MQTT_TLS_PORT": str(self.broker.tls_port),
            "DP_INFLUX_PORT": str(self.endpoints.influx_port),
            "DP_STATE_DIR": str(self.endpoints.state_dir),
        }

    def broker_config(self, user: str, **overrides: object) -> BrokerConfig:
        files = self.files
        settings: dict[str, object] = {
            "client_id": f"t-{user}-{os.urandom(3).hex()}",
            "username": user,
            "password": files.password_file(user).read_text(encoding="utf-8").strip(),
            "tls": TlsConfig(files.ca_cert, files.client_cert(user), files.client_key(user)),
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 0.5,
            **overrides,
        }
        return BrokerConfig("127.0.0.1", self.broker.tls_port, **settings)  # type: ignore[arg-type]

    @property
    def influx(self) -> InfluxSecrets:
        return services.influx_secrets(self.endpoints)

    def secrets(self) -> dict[str, str]:
        """Every password and private key (its base64 body lines) the secure instance knows."""
        found = {
            f"password of {p.stem}": p.read_text(encoding="utf-8").strip()
            for p in (self.files.root / "secrets").glob("*.password")
        }
        found.update(
            {
                f"InfluxDB password of {user}": self.influx.password(user)
                for user in (INFLUX_ADMIN, INFLUX_WRITER, INFLUX_READER)
            }
        )
        for key in [self.files.ca_key, self.files.server_key, *(self.files.root / "clients").glob("*.key")]:
            lines = [line for line in key.read_text(encoding="utf-8").splitlines() if not line.startswith("-----")]
            found.update({f"{key.name} line {i}": line for i, line in enumerate(lines) if len(line) >= 16})
        return found


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    base = tmp_path_factory.mktemp("secure-broker")
    registry = base / "registry.toml"
    registry.write_text(REGISTRY, encoding="utf-8")
    endpoints = Endpoints.from_env(
        {
            "DP_MQTT_PORT": str(_free_port()),
            "DP_INFLUX_PORT": str(_free_influx_port()),
            "DP_INFLUX_DB": "secure",
            "DP_STATE_DIR": str(base / "state"),
        }
    )
    broker = SecureBroker(tls_port=_free_port(), registry=registry)
    log: list[str] = []
    try:
        services.up(endpoints, secure=broker, log=log.append, install=False)
        yield Secure(endpoints, broker, services.secure_files(endpoints), registry, log)
    finally:
        services.down(endpoints, log=log.append)


class Subscriber:
    """A paho client with TLS and a user's credentials, collecting (topic, payload) in order.

    `session_expiry_s` > 0 makes a persistent session (as ingest's), kept by the broker under `client_id`
    while the client is away; `disconnects` counts the connections the broker closed."""

    def __init__(
        self,
        secure: Secure,
        user: str,
        topic_filter: str,
        *,
        client_id: str | None = None,
        session_expiry_s: int = 0,
    ) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.granted: queue.Queue[list[int]] = queue.Queue()
        self.disconnects = 0
        files = secure.files
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or f"t-sub-{os.urandom(3).hex()}", protocol=mqtt.MQTTv5
        )
        client.username_pw_set(user, files.password_file(user).read_text(encoding="utf-8").strip())
        client.tls_set_context(services.tls_context(files.ca_cert, files.client_cert(user), files.client_key(user)))
        client.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, bytes(msg.payload)))
        client.on_subscribe = lambda _c, _u, _mid, codes, _p: self.granted.put([c.value for c in codes])
        client.on_disconnect = lambda *_: setattr(self, "disconnects", self.disconnects + 1)
        properties = mqtt.Properties(mqtt.PacketTypes.CONNECT)
        properties.SessionExpiryInterval = session_expiry_s
        client.connect("127.0.0.1", secure.broker.tls_port, clean_start=session_expiry_s == 0, properties=properties)
        client.loop_start()
        client.subscribe(topic_filter, qos=1)
        self.client = client
        self.reason_codes = self.granted.get(timeout=WAIT_S)

    def take_until(self, last_payload: bytes) -> list[tuple[str, bytes]]:
        """Everything received up to and including `last_payload` (the broker keeps one publisher's order)."""
        got = []
        while True:
            topic, payload = self.messages.get(timeout=WAIT_S)
            got.append((topic, payload))
            if payload == last_payload:
                return got

    def sync(self) -> None:
        """Subscribe to one more topic and wait for the SUBACK: packets sent to us before it are processed."""
        self.client.subscribe(f"sync/{os.urandom(3).hex()}", qos=1)
        self.granted.get(timeout=WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribers(secure: Secure) -> Iterator[list[Subscriber]]:
    made: list[Subscriber] = []
    yield made
    for sub in made:
        sub.close()


def _refusal(config: BrokerConfig, timeout: float = 2.0) -> str:
    """The BrokerUnavailable message of a connection attempt that must fail (no CONNACK: after `timeout`)."""
    publisher = Publisher(config)
    with pytest.raises(BrokerUnavailable) as caught:
        publisher.connect(timeout=timeout)
    return str(caught.value)


# --- topics --------------------------------------------------------------------------------------------


def test_a_gateway_publishes_under_its_own_prefix_only(secure: Secure, subscribers: list[Subscriber]) -> None:
    # Two connections at once: two ingest identities (one connection per identity in secure mode).
    everything = Subscriber(secure, INGEST_USER, "dp/v1/#")
    shared = Subscriber(secure, ingest_users()[1], "$share/sxgroup/dp/v1/+/+/+/+")
    subscribers += [everything, shared]
    assert everything.reason_codes == [1] and shared.reason_codes == [1]  # granted QoS 1
    own = "dp/v1/sxa/sx-g1/sx-dev1/electricity_meter"
    forged = [
        "dp/v1/sxa/sx-g2/sx-dev2/electricity_meter",  # another gateway of the same district
        "dp/v1/sxb/sx-g1/sx-dev1/electricity_meter",  # its own id under another district
        "dp/v1/sxa/sx-g10/sx-dev1/electricity_meter",  # a gateway whose id starts with its own
        "dp/v1/sxa",  # above its prefix
        "elsewhere/sx-g1",
    ]

    with Publisher(secure.broker_config("sx-g1")) as publisher:
        publisher.publish(own, b"ok-1")
        for i, topic in enumerate(forged):
            publisher.publish(topic, f"forged-{i}".encode())
        publisher.publish(own, b"ok-2")
        assert publisher.wait_acked(WAIT_S)
        # Each forged message got a PUBACK with "Not authorized" (MQTT 5): acknowledged, and counted.
        assert (publisher.acked, publisher.rejected) == (2 + len(forged), len(forged))

    expected = [(own, b"ok-1"), (own, b"ok-2")]
    assert everything.take_until(b"ok-2") == expected
    assert shared.take_until(b"ok-2") == expected
    assert everything.messages.empty() and shared.messages.empty()


def test_a_gateway_can_publish_its_retained_status_but_cannot_read_the_district(
    secure: Secure, subscribers: list[Subscriber]
) -> None:
    # Mosquitto 2.0 grants the subscription itself and applies the read ACL to every message instead.
    nosy = Subscriber(secure, "sx-g2", "dp/v1/#")
    subscribers.append(nosy)
    status_topic = "dp/v1/sxb/sx-g3/status"

    with Publisher(secure.broker_config("sx-g3")) as publisher:
        publisher.publish(status_topic, b'{"state": "online"}', retain=True)
        assert publisher.wait_acked(WAIT_S)
    reader = Subscriber(secure, INGEST_USER, status_topic)
    subscribers.append(reader)
    assert reader.take_until(b'{"state": "online"}') == [(status_topic, b'{"state": "online"}')]
    with Publisher(secure.broker_config("sx-g3")) as publisher:
        publisher.publish(status_topic, b"", retain=True)  # clear the retained message again
        assert publisher.wait_acked(WAIT_S)

    nosy.sync()  # a round trip after the broker routed the status: any copy for sx-g2 would be here by now
    assert nosy.messages.empty()


def test_only_ingest_writes_confirmations_and_a_gateway_reads_only_its_own(
    secure: Secure, subscribers: list[Subscriber]
) -> None:
    """A confirmation makes a gateway delete readings: nobody but ingest may write one, and a gateway reads
    only its own (another's would tell it nothing, and the ACL says so)."""
    confirm = encode_confirms({"sx-dev1": [(0, 9)]}, by=INGEST_USER, ts_ms=1)[0]
    with Publisher(secure.broker_config("sx-g1")) as gateway:  # a gateway confirming its own readings
        gateway.publish("dp/v1/sxa/sx-g1/confirm", b'{"v":1,"confirmed":{"sx-dev1":[[0,99]]}}')
        assert gateway.wait_acked(WAIT_S)
        assert (gateway.rejected, dict(gateway.reasons)) == (1, {0x87: 1})  # "Not authorized"
    # Subscribed afterwards: one connection per identity (the publisher above was sx-g1 too).
    own = Subscriber(secure, "sx-g1", "dp/v1/sxa/sx-g1/confirm")
    nosy = Subscriber(secure, "sx-g2", "dp/v1/sxa/sx-g1/confirm")
    subscribers += [own, nosy]
    with Publisher(secure.broker_config(INGEST_USER)) as ingest:
        ingest.publish("dp/v1/sxa/sx-g1/confirm", confirm)
        assert ingest.wait_acked(WAIT_S)
        assert ingest.rejected == 0

    assert own.take_until(confirm) == [("dp/v1/sxa/sx-g1/confirm", confirm)]
    nosy.sync()
    assert nosy.messages.empty()


# --- identities ----------------------------------------------------------------------------------------


def test_a_gateway_sending_ingests_client_id_cannot_take_over_its_session(
    secure: Secure, subscribers: list[Subscriber]
) -> None:
    """A client id is its username: a gateway that connects with ingest's client id gets a session of its
    own, so ingest stays connected and keeps its persistent session, queued readings included.

    On a broker that trusts the client id, the impostor's CONNECT disconnects ingest and takes its session
    over: the readings queued for ingest are offered to the impostor, refused by the ACL, and lost."""
    ingest_id = "districtpulse-ingest"  # ingest's default client id: known to everyone
    topic = "dp/v1/sxa/sx-g1/sx-dev1/electricity_meter"
    ingest = Subscriber(secure, INGEST_USER, "dp/v1/sxa/#", client_id=ingest_id, session_expiry_s=600)
    subscribers.append(ingest)
    with Publisher(secure.broker_config("sx-g1")) as gateway:
        gateway.publish(topic, b"live-1")
        assert gateway.wait_acked(WAIT_S)
        assert ingest.take_until(b"live-1") == [(topic, b"live-1")]

        impostor = Subscriber(secure, "sx-g2", "dp/v1/sxa/#", client_id=ingest_id, session_expiry_s=600)
        subscribers.append(impostor)
        gateway.publish(topic, b"live-2")
        assert gateway.wait_acked(WAIT_S)
        assert ingest.take_until(b"live-2") == [(topic, b"live-2")]
        assert ingest.disconnects == 0

        ingest.close()  # ingest away (a restart): its session keeps what arrives meanwhile
        impostor.close()
        impostor = Subscriber(secure, "sx-g2", "dp/v1/sxa/#", client_id=ingest_id, session_expiry_s=600)
        subscribers.append(impostor)
        gateway.publish(topic, b"queued-1")
        assert gateway.wait_acked(WAIT_S)
        impostor.sync()
        assert impostor.messages.empty()  # neither the live readings nor ingest's queue went to the impostor
    back = Subscriber(secure, INGEST_USER, "dp/v1/sxa/#", client_id="another-id", session_expiry_s=600)
    subscribers.append(back)
    assert back.take_until(b"queued-1") == [(topic, b"queued-1")]  # the same session: its username's


def test_two_connections_of_one_identity_are_one_session(secure: Secure, subscribers: list[Subscriber]) -> None:
    """The price of binding: one connection per identity. A second `_ingest` connection replaces the first
    (which is why each ingest consumer has a user of its own); `_ingest-2` beside it is not touched."""
    first = Subscriber(secure, INGEST_USER, "dp/v1/sxa/#")
    other = Subscriber(secure, ingest_users()[1], "dp/v1/sxa/#")
    subscribers += [first, other]
    first.client.reconnect_delay_set(60, 60)  # replaced, it stays away for the rest of the test
    second = Subscriber(secure, INGEST_USER, "dp/v1/sxa/#")
    subscribers.append(second)
    deadline = time.monotonic() + WAIT_S
    while first.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (first.disconnects, other.disconnects, second.disconnects) == (1, 0, 0)


def test_the_dashboard_reads_statuses_and_writes_alerts_only(secure: Secure, subscribers: list[Subscriber]) -> None:
    status_topic = "dp/v1/sxa/sx-g1/status"
    reading_topic = "dp/v1/sxa/sx-g1/sx-dev1/electricity_meter"
    dashboard = Subscriber(secure, DASHBOARD_USER, "dp/v1/#")
    subscribers.append(dashboard)
    with Publisher(secure.broker_config("sx-g1")) as gateway:
        gateway.publish(reading_topic, b"reading")
        gateway.publish(status_topic, b'{"state": "online"}')
        assert gateway.wait_acked(WAIT_S)
    assert dashboard.take_until(b'{"state": "online"}') == [(status_topic, b'{"state": "online"}')]
    dashboard.sync()
    assert dashboard.messages.empty()  # the reading was not delivered to the dashboard
    dashboard.close()  # one connection per identity: the publisher below is the dashboard too

    with Publisher(secure.broker_config(DASHBOARD_USER)) as publisher:
        publisher.publish("dp/alerts/sxa", b"alert")
        publisher.publish(reading_topic, b"forged reading")
        publisher.publish("dp/v1/sxa/sx-g1/confirm", b"forged confirmation")
        assert publisher.wait_acked(WAIT_S)
        # The alert is accepted ("No matching subscribers"), the forged reading and confirmation refused.
        assert (publisher.acked, publisher.rejected, dict(publisher.reasons)) == (3, 2, {0x10: 1, 0x87: 2})


# --- refused connections -------------------------------------------------------------------------------


def test_wrong_password_and_unknown_user_are_refused(secure: Secure) -> None:
    assert "Not authorized" in _refusal(secure.broker_config("sx-g1", password="not-the-password"))
    assert "Not authorized" in _refusal(secure.broker_config("sx-g1", password=None))
    # A valid password of another gateway does not make sx-g1 in it: passwords are per user.
    g2_password = secure.files.password_file("sx-g2").read_text(encoding="utf-8").strip()
    assert "Not authorized" in _refusal(secure.broker_config("sx-g1", password=g2_password))
    assert "Not authorized" in _refusal(secure.broker_config("sx-g1", username="sx-nobody"))


def test_plain_text_and_tls_without_the_right_certificates_are_refused(secure: Secure) -> None:
    files = secure.files
    # Plain-text MQTT on the TLS port: no CONNACK, whatever the credentials.
    assert "no CONNACK" in _refusal(secure.broker_config("sx-g1", tls=None))
    with pytest.raises((ConnectionError, OSError, services.ServiceError)):
        services.mqtt_handshake("127.0.0.1", secure.broker.tls_port, 3.0)
    # ... and no plain-text listener on the plain port at all.
    with pytest.raises(ConnectionRefusedError):
        services.mqtt_handshake("127.0.0.1", secure.endpoints.mqtt_port, 3.0)
    # TLS without a client certificate: the broker requires one.
    assert "no CONNACK" in _refusal(secure.broker_config("sx-g1", tls=TlsConfig(files.ca_cert)))
    # The gateway verifies the broker: with the system CAs only, our local CA's broker is not trusted.
    assert "CERTIFICATE_VERIFY_FAILED" in _refusal(secure.broker_config("sx-g1", tls=TlsConfig()))


# --- reload and secrets --------------------------------------------------------------------------------


def test_up_again_reloads_the_credentials_of_an_added_gateway_without_a_restart(
    secure: Secure, subscribers: list[Subscriber]
) -> None:
    pid_before = {s.name: s.pid for s in services.status(secure.endpoints, secure=secure.broker)}
    secure.registry.write_text(REGISTRY + ADDED_GATEWAY, encoding="utf-8")
    log: list[str] = []
    services.up(secure.endpoints, secure=secure.broker, log=log.append, install=False)
    secure.log.extend(log)

    assert pid_before == {s.name: s.pid for s in services.status(secure.endpoints, secure=secure.broker)}
    assert any("reloaded the password and ACL files" in line for line in log)
    everything = Subscriber(secure, INGEST_USER, "dp/v1/sxb/#")
    subscribers.append(everything)
    deadline = time.monotonic() + WAIT_S  # SIGHUP is handled by the broker's loop, shortly after `up` returns
    while True:
        try:
            with Publisher(secure.broker_config("sx-g4")) as publisher:
                publisher.publish("dp/v1/sxb/sx-g4/d/heat_meter", b"g4-1")
                assert publisher.wait_acked(WAIT_S)
            break
        except BrokerUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert everything.take_until(b"g4-1") == [("dp/v1/sxb/sx-g4/d/heat_meter", b"g4-1")]
    # Idempotent: nothing changed, so no reload.
    again: list[str] = []
    services.up(secure.endpoints, secure=secure.broker, log=again.append, install=False)
    assert not any("reloaded" in line for line in again)


def test_no_secret_appears_in_outputs_or_logs(secure: Secure, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with Publisher(secure.broker_config("sx-g1")) as publisher:  # connects, publishes, disconnects: logged
        publisher.publish("dp/v1/sxa/sx-g1/d/heat_meter", b"x")
        assert publisher.wait_acked(WAIT_S)
    _refusal(secure.broker_config("sx-g2", password="wrong"))
    command = [sys.executable, "-m", "districtpulse.services"]
    arguments = ["--secure", "--registry", str(secure.registry), "--no-install"]
    outputs = [
        subprocess.run([*command, action, *arguments], env=secure.env(), capture_output=True, text=True, timeout=60)
        for action in ("up", "status")
    ]
    assert [o.returncode for o in outputs] == [0, 0], outputs
    assert "mosquitto  running" in outputs[1].stdout
    texts = {
        "services log": "\n".join(secure.log),
        "cli": "\n".join(o.stdout + o.stderr for o in outputs),
        "mosquitto.log": (secure.endpoints.state_dir / "mosquitto" / "mosquitto.log").read_text(encoding="utf-8"),
        "mosquitto.conf": (secure.endpoints.state_dir / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8"),
        "influxd.log": (secure.endpoints.state_dir / "influxdb" / "influxd.log").read_text(encoding="utf-8"),
        "gateway log": caplog.text,
    }
    assert "refused the connection" in caplog.text  # the refusal was logged, without the password
    assert "u'sx-g1'" in texts["mosquitto.log"]  # the broker logs who connected...
    leaks = [
        (where, name) for name, value in secure.secrets().items() for where, text in texts.items() if value in text
    ]
    assert leaks == []  # ...but no password and no private key
    assert len(secure.secrets()) > 12  # 8 + 3 passwords and the key lines were really looked for


def test_plain_up_and_status_on_a_secure_state_dir_say_so_instead_of_downgrading(secure: Secure) -> None:
    with pytest.raises(services.ServiceError, match="secure mode switched on or off"):
        services.up(secure.endpoints, log=lambda _: None, install=False)
    mosquitto = {s.name: s for s in services.status(secure.endpoints)}["mosquitto"]
    assert (mosquitto.running, mosquitto.detail) == (
        False,
        "running in secure mode (TLS only): ask `districtpulse services status --secure`",
    )
    # Still the same secure broker, still refusing plain text.
    with pytest.raises(ConnectionRefusedError):
        services.mqtt_handshake("127.0.0.1", secure.endpoints.mqtt_port, 3.0)
    assert all(s.running for s in services.status(secure.endpoints, secure=secure.broker))


async def test_ingest_consumes_over_tls_with_its_own_credentials_and_stores_what_the_gateway_sent(
    secure: Secure, tmp_path: Path
) -> None:
    """The whole secure path: gateway (client certificate + password) -> TLS broker -> ingest (its own
    certificate + password, read-only ACL) -> InfluxDB."""
    from devices import Registry, encode_batch, units_for
    from ingest import IngestStats, Pipeline
    from ingest.settings import IngestConfig

    files = secure.files
    registry = Registry.load(secure.registry)
    # Configured as an operator would: secrets in files (0600), the database's writer user.
    settings = IngestConfig(
        registry=secure.registry,
        quarantine=tmp_path / "quarantine.sqlite",
        mqtt={
            "host": "127.0.0.1",
            "port": secure.broker.tls_port,
            "topics": ("dp/v1/sxa/+/+/+",),
            "session_expiry_s": 0,
            "username": INGEST_USER,
            "password_file": files.password_file(INGEST_USER),
            "ca_file": files.ca_cert,
            "cert_file": files.client_cert(INGEST_USER),
            "key_file": files.client_key(INGEST_USER),
        },
        influx={
            "url": secure.endpoints.influx_url,
            "database": secure.endpoints.influx_db,
            "username": INFLUX_WRITER,
            "password_file": secure.influx.password_file(INFLUX_WRITER),
        },
        batch_interval_s=0.05,
    ).runtime()
    assert "password" not in repr(settings).replace("password=", "")  # no secret value in the repr
    stats = IngestStats()
    pipeline = Pipeline(settings, registry, stats=stats)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    try:
        await asyncio.wait_for(pipeline.source.subscribed.wait(), WAIT_S)
        t0 = 1_790_000_000_000
        readings = [(t0 + i * 60_000, {"energy_import": 10.0 + i, "power": 500.0}) for i in range(3)]
        payload = encode_batch("sx-dev1", 0, units_for("electricity_meter"), readings)

        def publish() -> None:
            with Publisher(secure.broker_config("sx-g1")) as publisher:
                publisher.publish("dp/v1/sxa/sx-g1/sx-dev1/electricity_meter", payload)
                assert publisher.wait_acked(WAIT_S)

        await asyncio.to_thread(publish)
        deadline = time.monotonic() + WAIT_S
        while stats.readings_stored < 3:
            assert time.monotonic() < deadline, stats.as_dict()
            await asyncio.sleep(0.05)
        assert stats.readings_stored == 3
        assert sum(stats.readings_quarantined.values()) == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    async with _influx_as(secure, INFLUX_READER) as reader:
        rows = await reader.query(
            'SELECT "energy_import" FROM "electricity" WHERE "device" = \'sx-dev1\' AND time >= 1790000000000ms'
        )
    assert [row[1] for row in rows[0]["values"]] == [10.0, 11.0, 12.0]  # the reader sees what the writer stored


# --- InfluxDB's users ------------------------------------------------------------------------------------


def _influx_as(secure: Secure, user: str | None, password: str | None = None, database: str | None = None) -> InfluxV1:
    if user is not None and password is None:
        password = secure.influx.password(user)
    config = InfluxConfig(
        url=secure.endpoints.influx_url,
        database=database or secure.endpoints.influx_db,
        username=user,
        password=password,
        timeout=5.0,
    )
    return InfluxV1(config)


async def _refused(influx: InfluxV1, action: str) -> int:
    """The HTTP status InfluxDB refuses `action` ("write" or "query") with; 0 if it allowed it."""
    try:
        async with influx:
            if action == "write":
                await influx.write(b"secure_probe v=1 1790000000000")
            else:
                await influx.query("SELECT * FROM secure_probe LIMIT 1")
    except SinkRefused as exc:
        return exc.status
    return 0


async def test_influxdb_authenticates_every_request_and_grants_each_user_only_its_part(secure: Secure) -> None:
    """auth-enabled with three users: admin (everything), writer (ALL on the project's database only) and
    reader (READ on it only). Anonymous clients and wrong passwords get 401, a user outside its grant 403."""
    other = f"other_{os.urandom(3).hex()}"
    async with _influx_as(secure, INFLUX_ADMIN) as admin:
        await admin.query(f'CREATE DATABASE "{other}"')
    refusals = {
        "anonymous write": await _refused(_influx_as(secure, None), "write"),
        "anonymous query": await _refused(_influx_as(secure, None), "query"),
        "writer, wrong password": await _refused(_influx_as(secure, INFLUX_WRITER, "not-it"), "write"),
        "reader with the writer's password": await _refused(
            _influx_as(secure, INFLUX_READER, secure.influx.password(INFLUX_WRITER)), "query"
        ),
        "writer writes": await _refused(_influx_as(secure, INFLUX_WRITER), "write"),
        "writer queries": await _refused(_influx_as(secure, INFLUX_WRITER), "query"),
        "reader queries": await _refused(_influx_as(secure, INFLUX_READER), "query"),
        "reader writes": await _refused(_influx_as(secure, INFLUX_READER), "write"),
        "writer, another database": await _refused(_influx_as(secure, INFLUX_WRITER, database=other), "write"),
        "reader, another database": await _refused(_influx_as(secure, INFLUX_READER, database=other), "query"),
    }
    assert refusals == {
        "anonymous write": 401,
        "anonymous query": 401,
        "writer, wrong password": 401,
        "reader with the writer's password": 401,
        "writer writes": 0,
        "writer queries": 0,
        "reader queries": 0,
        "reader writes": 403,
        "writer, another database": 403,
        "reader, another database": 403,
    }
    async with _influx_as(secure, INFLUX_WRITER) as writer:  # no admin statements for the writer
        with pytest.raises(SinkRefused, match="requires admin privilege"):
            await writer.query(f'DROP DATABASE "{other}"')
    files = [secure.influx.password_file(u) for u in (INFLUX_ADMIN, INFLUX_WRITER, INFLUX_READER)]
    assert {f: stat.S_IMODE(f.stat().st_mode) for f in files} == dict.fromkeys(files, 0o600)
    assert stat.S_IMODE(secure.influx.root.stat().st_mode) == 0o700


def test_up_again_keeps_the_database_users_and_follows_a_replaced_password_file(secure: Secure) -> None:
    reader_file = secure.influx.password_file(INFLUX_READER)
    old = reader_file.read_text(encoding="utf-8")
    reader_file.write_text("a-password-set-by-hand\n", encoding="utf-8")  # an operator rotating it
    try:
        log: list[str] = []
        services.up(secure.endpoints, secure=secure.broker, log=log.append, install=False)
        assert not any("created the" in line for line in log)  # the users existed: only their passwords are set
        assert asyncio.run(_refused(_influx_as(secure, INFLUX_READER), "query")) == 0
        assert asyncio.run(_refused(_influx_as(secure, INFLUX_READER, old.strip()), "query")) == 401
    finally:
        reader_file.write_text(old, encoding="utf-8")
        services.up(secure.endpoints, secure=secure.broker, log=lambda _: None, install=False)
    assert asyncio.run(_refused(_influx_as(secure, INFLUX_READER), "query")) == 0


# --- the dashboard's link -------------------------------------------------------------------------------


async def test_the_dashboard_link_follows_statuses_and_publishes_alerts_over_tls(secure: Secure) -> None:
    from dashboard.mqtt import BrokerLink
    from devices.tls import client_context

    files = secure.files
    status_topic = "dp/v1/sxb/sx-g3/status"
    link = BrokerLink(
        "127.0.0.1",
        secure.broker.tls_port,
        ["sxb"],
        username=DASHBOARD_USER,
        password=files.password_file(DASHBOARD_USER).read_text(encoding="utf-8").strip(),
        tls=client_context(files.ca_cert, files.client_cert(DASHBOARD_USER), files.client_key(DASHBOARD_USER)),
    )
    await link.start(wait_s=WAIT_S)
    try:
        assert link.connected.is_set()

        def publish_status(payload: bytes) -> None:
            with Publisher(secure.broker_config("sx-g3")) as gateway:
                gateway.publish(status_topic, payload, retain=True)
                assert gateway.wait_acked(WAIT_S)

        await asyncio.to_thread(publish_status, b'{"v": 1, "state": "online", "ts": 1790000000000}')
        deadline = time.monotonic() + WAIT_S
        while "sx-g3" not in link.gateways():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert link.gateways()["sx-g3"].state == "online"
        await link.publish("dp/alerts/sxb", b'{"alert": "test"}')  # allowed, and acknowledged
        await asyncio.to_thread(publish_status, b"")  # clear the retained status again
    finally:
        await link.aclose()

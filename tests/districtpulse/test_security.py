"""`districtpulse.services.secure`: passwords, ACL and certificates for `services up --secure` (no broker here).

The hashes are checked against Mosquitto's own `mosquitto_passwd`, the certificates against `openssl verify`;
that the broker accepts them is shown by tests/integration/test_secure_broker.py.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from devices.wire import MAX_PACKET_BYTES
from districtpulse import services
from districtpulse.config import Endpoints
from districtpulse.services.secure import (
    DASHBOARD_USER,
    INGEST_USER,
    PROBE_USER,
    SecureFiles,
    SecurityError,
    ensure,
    hash_password,
    ingest_users,
    read_passwd,
    registry_gateways,
    render_acl,
    service_users,
    verify_password,
)

PAIRS = [("north", "gw-n2"), ("north", "gw-n1"), ("south", "gw-s1")]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _openssl(*args: str) -> str:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=True)
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> SecureFiles:
    root = tmp_path_factory.mktemp("secure") / "secure"
    assert ensure(root, PAIRS) is True
    return SecureFiles(root)


# --- passwords -----------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd not installed")
def test_verify_password_checks_hashes_made_by_mosquitto_passwd(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("alice:correct horse\nbob:b\u00e9b\u00e9 staple\n", encoding="utf-8")
    subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True)
    hashes = read_passwd(passwd)

    assert sorted(hashes) == ["alice", "bob"]
    assert all(h.startswith("$7$101$") for h in hashes.values())
    assert verify_password("correct horse", hashes["alice"])
    assert verify_password("b\u00e9b\u00e9 staple", hashes["bob"])
    assert not verify_password("correct horse ", hashes["alice"])
    assert not verify_password("correct horse", hashes["bob"])


def test_hash_password_round_trips_and_salts_every_hash() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")

    assert first != second  # a fresh 12-byte salt each time
    assert first.split("$")[1:3] == ["7", "101"]
    assert verify_password("s3cret", first) and verify_password("s3cret", second)
    assert not verify_password("s3creT", first)
    assert not verify_password("s3cret", "$6$abc$def")  # another scheme is never taken for a match
    assert not verify_password("s3cret", "$7$101$not base64!$x")


# --- ACL -----------------------------------------------------------------------------------------------


def test_acl_grants_each_gateway_its_own_topics_and_only_ingest_writes_confirmations() -> None:
    directives = [line for line in render_acl(PAIRS).splitlines() if line and not line.startswith("#")]

    assert directives == [
        "user _ingest",
        "topic read dp/v1/#",
        "topic read $share/+/dp/v1/#",
        "topic write dp/v1/+/+/confirm",
        "user _ingest-2",  # one identity per ingest consumer: a client id is its username
        "topic read dp/v1/#",
        "topic read $share/+/dp/v1/#",
        "topic write dp/v1/+/+/confirm",
        "user _dashboard",
        "topic read dp/v1/+/+/status",
        "topic write dp/alerts/#",
        "user _probe",
        "user gw-n1",
        "topic write dp/v1/north/gw-n1/+/+",
        "topic write dp/v1/north/gw-n1/status",
        "topic read dp/v1/north/gw-n1/confirm",
        "user gw-n2",
        "topic write dp/v1/north/gw-n2/+/+",
        "topic write dp/v1/north/gw-n2/status",
        "topic read dp/v1/north/gw-n2/confirm",
        "user gw-s1",
        "topic write dp/v1/south/gw-s1/+/+",
        "topic write dp/v1/south/gw-s1/status",
        "topic read dp/v1/south/gw-s1/confirm",
    ]
    assert not any(line.startswith("pattern") for line in directives)


def test_one_ingest_identity_per_consumer() -> None:
    assert ingest_users(1) == ("_ingest",)
    assert ingest_users(3) == ("_ingest", "_ingest-2", "_ingest-3")
    assert service_users(1) == ("_ingest", "_dashboard", "_probe")
    with pytest.raises(SecurityError, match="1 to 64"):
        ingest_users(0)
    acl = render_acl(PAIRS, ingest_consumers=3)
    assert [line for line in acl.splitlines() if line.startswith("user _ingest")] == [
        "user _ingest",
        "user _ingest-2",
        "user _ingest-3",
    ]


def test_a_gateway_in_two_districts_or_with_a_reserved_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SecurityError, match="two districts"):
        ensure(tmp_path / "a", [("north", "gw-1"), ("south", "gw-1")])
    with pytest.raises(SecurityError, match="cannot be a broker username"):
        ensure(tmp_path / "b", [("north", INGEST_USER)])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_registry_gateways_lists_every_gateway_with_its_district() -> None:
    from devices.registry import demo_registry_path

    assert sorted(registry_gateways(demo_registry_path())) == [("demo", "gw-b1"), ("demo", "gw-b2"), ("demo", "gw-b3")]
    with pytest.raises(SecurityError, match="cannot load the registry"):
        registry_gateways(Path("/nonexistent/registry.toml"))


# --- generated files -----------------------------------------------------------------------------------


def test_every_secret_is_private_and_the_passwd_file_holds_no_clear_text(generated: SecureFiles) -> None:
    users = [INGEST_USER, "_ingest-2", DASHBOARD_USER, PROBE_USER, "gw-n1", "gw-n2", "gw-s1"]
    secret_files = [generated.ca_key, generated.server_key, generated.passwd, generated.acl]
    secret_files += [generated.password_file(u) for u in users] + [generated.client_key(u) for u in users]

    assert {path: _mode(path) for path in secret_files} == dict.fromkeys(secret_files, 0o600)
    folders = [generated.root, generated.root / "clients", generated.root / "secrets"]
    assert {path: _mode(path) for path in folders} == dict.fromkeys(folders, 0o700)
    hashes = read_passwd(generated.passwd)
    assert sorted(hashes) == sorted(users)
    passwd_text = generated.passwd.read_text(encoding="utf-8")
    for user in users:
        password = generated.password_file(user).read_text(encoding="utf-8").strip()
        assert len(password) == 32
        assert verify_password(password, hashes[user])
        assert password not in passwd_text
    assert len({generated.password_file(u).read_text(encoding="utf-8") for u in users}) == len(users)
    # Nothing else was left behind (CSRs, extension files, temporary files).
    listed = {p.relative_to(generated.root).as_posix() for p in generated.root.rglob("*") if p.is_file()}
    expected = {"ca.crt", "ca.key", "server.crt", "server.key", "passwd", "acl"}
    expected |= {f"clients/{u}.{ext}" for u in users for ext in ("crt", "key")}
    expected |= {f"secrets/{u}.password" for u in users}
    assert listed == expected


def test_certificates_chain_to_the_local_ca_with_the_right_names_and_usages(generated: SecureFiles) -> None:
    ca = str(generated.ca_cert)
    leaves = [generated.server_cert, generated.client_cert("gw-n1"), generated.client_cert(INGEST_USER)]
    out = _openssl("verify", "-CAfile", ca, *map(str, leaves))
    assert out.count(": OK") == 3, out
    server = _openssl(
        "x509", "-in", str(generated.server_cert), "-noout", "-subject", "-ext", "subjectAltName,extendedKeyUsage"
    )
    assert "DNS:localhost, IP Address:127.0.0.1" in server
    assert "TLS Web Server Authentication" in server
    client = _openssl(
        "x509", "-in", str(generated.client_cert("gw-n1")), "-noout", "-subject", "-ext", "extendedKeyUsage"
    )
    assert "CN = gw-n1" in client and "TLS Web Client Authentication" in client
    # A client certificate cannot pose as the broker.
    assert ": OK" not in _openssl_fails(
        "verify", "-CAfile", ca, "-purpose", "sslserver", str(generated.client_cert("gw-n1"))
    )


def _openssl_fails(*args: str) -> str:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    assert result.returncode != 0, result.stdout
    return result.stdout + result.stderr


def test_ensure_is_idempotent_and_keeps_credentials_when_a_gateway_is_added(tmp_path: Path) -> None:
    root = tmp_path / "secure"
    assert ensure(root, PAIRS[:2]) is True
    files = SecureFiles(root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}

    assert ensure(root, PAIRS[:2]) is False  # nothing changed: a running broker is not reloaded
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before

    assert ensure(root, PAIRS) is True  # gw-s1 added: passwd and acl rewritten, nothing else touched
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    changed = {p.relative_to(root).as_posix() for p in before if before[p] != after[p]}
    assert changed == {"passwd", "acl"}
    assert sorted(read_passwd(files.passwd)) == sorted([*service_users(), "gw-n1", "gw-n2", "gw-s1"])
    assert "topic write dp/v1/south/gw-s1/+/+" in files.acl.read_text(encoding="utf-8")
    creds = files.credentials("gw-s1")
    assert creds.username == "gw-s1" and len(creds.password()) == 32
    with pytest.raises(SecurityError, match="no credentials for 'gw-x'"):
        files.credentials("gw-x")


# --- services: the secure config and the probe ---------------------------------------------------------


def test_secure_mosquitto_conf_has_a_tls_listener_only_and_no_anonymous_clients(tmp_path: Path) -> None:
    endpoints = Endpoints.from_env({"DP_MQTT_PORT": "21883", "DP_STATE_DIR": str(tmp_path / "state")})
    secure = services.SecureBroker(tls_port=28883)
    text = services.render_mosquitto_conf(endpoints, secure)
    directives = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    root = tmp_path.resolve() / "state" / "mosquitto" / "secure"

    assert [line for line in directives if line.startswith("listener")] == ["listener 28883 127.0.0.1"]
    assert "21883" not in text
    assert "$" not in text
    for directive in (
        "allow_anonymous false",
        "require_certificate true",
        "use_username_as_clientid true",  # nobody takes over another identity's session
        f"cafile {root}/ca.crt",
        f"certfile {root}/server.crt",
        f"keyfile {root}/server.key",
        f"password_file {root}/passwd",
        f"acl_file {root}/acl",
        "max_queued_messages 200000",
        f"max_packet_size {MAX_PACKET_BYTES}",  # the plain listener's bound applies to TLS clients too
    ):
        assert directive in directives
    assert "allow_anonymous true" not in directives
    # The plain config is untouched by secure mode.
    assert "allow_anonymous true" in services.render_mosquitto_conf(endpoints).splitlines()


def test_secure_broker_port_comes_from_dp_mqtt_tls_port() -> None:
    assert services.SecureBroker.from_env({}).tls_port == services.DEFAULT_MQTT_TLS_PORT
    assert services.SecureBroker.from_env({"DP_MQTT_TLS_PORT": "20001"}).tls_port == 20001

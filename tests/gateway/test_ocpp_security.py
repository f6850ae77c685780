"""OCPP 1.6 security profiles 1 (HTTP Basic: the charge point id and its AuthorizationKey, hashed at rest) and
2 (the same over TLS with the gateway's certificate), with the `ocpp` package's real ChargePoint client over
real websockets on loopback. Without them (the code before) any host that knew a charge point id was that
charger: it could replace the real one's connection and inject sessions and energy."""

from __future__ import annotations

import io
import logging
import ssl
from pathlib import Path

import pytest

from gateway.adapters import AdapterContext, parse_adapter_config
from gateway.adapters.ocpp import keys
from gateway.errors import ConfigError
from tests.support.ocpp_gateway import OcppGateway, boot, charger, meter, spooled, start

websockets_exceptions = pytest.importorskip("websockets.exceptions")

T0 = 1_800_000_000_000
KEY_1 = "0123456789abcdef0123456789abcdef01234567"  # 40 hex characters, as the whitepaper suggests
KEY_2 = "fedcba9876543210fedcba9876543210fedcba98"
TABLE = {"CP-1": {"1": "ev-1", "2": "ev-2"}, "CP-2": {"1": "ev-3"}}


def _hashes() -> dict[str, str]:
    return {"CP-1": keys.hash_key(KEY_1, iterations=2_000), "CP-2": keys.hash_key(KEY_2, iterations=2_000)}


def _gateway(tmp_path: Path, **config: object) -> OcppGateway:
    settings = {"charge_points": TABLE, "security_profile": 1, "auth_keys": _hashes(), **config}
    return OcppGateway(tmp_path / "spool.sqlite", T0, **settings)


async def _refused(port: int, cp: str = "CP-1", **kwargs: object) -> int:
    """The HTTP status of a handshake that must be refused."""
    with pytest.raises(websockets_exceptions.InvalidStatus) as caught:
        async with charger(port, cp, **kwargs):  # type: ignore[arg-type]
            pass
    return int(caught.value.response.status_code)


async def test_profile_1_lets_in_only_the_charge_point_with_its_own_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = _gateway(tmp_path)
    try:
        async with charger(gw.port, "CP-1", key=KEY_1) as cp:
            assert (await cp.call(boot())).status == "Accepted"
        assert await _refused(gw.port, "CP-1") == 401  # no credentials
        assert await _refused(gw.port, "CP-1", key=KEY_1[:-1] + "8") == 401  # a wrong key
        assert await _refused(gw.port, "CP-1", key=KEY_2) == 401  # another charge point's valid key
        assert await _refused(gw.port, "CP-9", key=KEY_1) == 404  # unknown id: refused before any key
        assert gw.adapter.auth_refused == 3
    finally:
        gw.shut()
    assert KEY_1 not in caplog.text and KEY_2 not in caplog.text  # the keys are never logged
    assert "CP-1: refused a connection from 127.0.0.1: wrong key" in caplog.text


async def test_the_username_must_be_the_charge_point_of_the_path(tmp_path: Path) -> None:
    import websockets.asyncio.client as client

    gw = _gateway(tmp_path)
    try:  # CP-2's own id and key, presented for CP-1's path
        headers = {"Authorization": "Basic " + __import__("base64").b64encode(f"CP-2:{KEY_2}".encode()).decode()}
        with pytest.raises(websockets_exceptions.InvalidStatus) as caught:
            async with client.connect(
                f"ws://127.0.0.1:{gw.port}/CP-1", subprotocols=["ocpp1.6"], additional_headers=headers
            ):
                pass
        assert caught.value.response.status_code == 401
        assert caught.value.response.headers["WWW-Authenticate"].startswith('Basic realm="OCPP"')
    finally:
        gw.shut()


async def test_an_impostor_neither_replaces_the_real_charger_nor_stops_its_session(tmp_path: Path) -> None:
    gw = _gateway(tmp_path)
    try:
        async with gw.committing(), charger(gw.port, "CP-1", key=KEY_1) as real:
            tx = (await real.call(start(1, 1000))).transaction_id
            for _ in range(3):  # guessing, from the same LAN
                assert await _refused(gw.port, "CP-1", key="guess-guess-guess-1") == 401
            await real.call(meter(tx, "2500", "7000"))  # the real charger's connection is still there
        readings = [(d, v.get("session_energy")) for d, v, _ in spooled(gw.path) if d == "ev-1"]
        assert readings[-1] == ("ev-1", 1.5)
    finally:
        gw.shut()


async def test_repeated_wrong_keys_lock_that_address_out_for_that_charge_point(tmp_path: Path) -> None:
    gw = _gateway(tmp_path)
    try:
        for _ in range(keys.MAX_FAILURES):
            assert await _refused(gw.port, "CP-1", key="guess-guess-guess-2") == 401
        assert await _refused(gw.port, "CP-1", key=KEY_1) == 429  # even the right key, from here, for a while
        async with charger(gw.port, "CP-2", key=KEY_2) as other:  # another charge point is not affected
            assert (await other.call(boot())).status == "Accepted"
    finally:
        gw.shut()


def test_the_lockout_doubles_forgets_on_success_and_stays_bounded() -> None:
    now = [0.0]
    lockout = keys.Lockout(clock=lambda: now[0])
    for _ in range(keys.MAX_FAILURES):
        lockout.failed("CP-1", "10.0.0.9")
    assert lockout.locked("CP-1", "10.0.0.9") and not lockout.locked("CP-1", "10.0.0.8")
    now[0] = keys.LOCKOUT_S + 1
    assert not lockout.locked("CP-1", "10.0.0.9")
    lockout.failed("CP-1", "10.0.0.9")  # one more after the lockout: twice as long
    now[0] += 2 * keys.LOCKOUT_S - 1
    assert lockout.locked("CP-1", "10.0.0.9")
    lockout.succeeded("CP-1", "10.0.0.9")
    assert not lockout.locked("CP-1", "10.0.0.9")
    for i in range(keys.MAX_TRACKED + 10):
        lockout.failed("CP-1", f"10.1.{i // 256}.{i % 256}")
    assert len(lockout._failures) == keys.MAX_TRACKED


@pytest.fixture
def certificates(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A local CA and a server certificate for 127.0.0.1/localhost, made with openssl (as `up --secure`)."""
    from districtpulse.services.secure import SecureFiles, ensure

    files = SecureFiles(tmp_path / "pki")
    ensure(files.root, [("d", "gw")])
    return files.ca_cert, files.server_cert, files.server_key


async def test_profile_2_is_basic_auth_over_tls_with_the_gateways_certificate(
    tmp_path: Path, certificates: tuple[Path, Path, Path]
) -> None:
    ca, cert, key = certificates
    gw = _gateway(tmp_path, security_profile=2, tls_cert_file=str(cert), tls_key_file=str(key))
    trusting = ssl.create_default_context(cafile=str(ca))
    try:
        async with charger(gw.port, "CP-1", key=KEY_1, tls=trusting) as cp:
            assert (await cp.call(boot())).status == "Accepted"
        assert await _refused(gw.port, "CP-1", tls=trusting) == 401  # TLS alone is not enough
        with pytest.raises((OSError, websockets_exceptions.InvalidMessage, websockets_exceptions.ConnectionClosed)):
            async with charger(gw.port, "CP-1", key=KEY_1):  # plain ws:// to the TLS port
                pass
        with pytest.raises(ssl.SSLCertVerificationError):  # a charger that does not trust our CA
            async with charger(gw.port, "CP-1", key=KEY_1, tls=ssl.create_default_context()):
                pass
    finally:
        gw.shut()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"host": "0.0.0.0"}, "security_profile 0 on 0.0.0.0"),
        ({"security_profile": 1}, "no auth_keys for CP-1"),
        ({"security_profile": 1, "auth_keys": {"CP-1": "plain-text-key-1234"}}, "auth_keys.CP-1: not a pbkdf2"),
        ({"security_profile": 1, "auth_keys": {"CP-1": "h", "CP-7": "h"}}, "not configured: CP-7"),
        ({"security_profile": 2, "auth_keys": "HASHES"}, "needs tls_cert_file and tls_key_file"),
        ({"security_profile": 1, "auth_keys": "HASHES", "tls_cert_file": "c.pem"}, "are for security_profile 2"),
    ],
)
def test_insecure_or_inconsistent_configs_are_refused(config: dict[str, object], message: str) -> None:
    if config.get("auth_keys") == "HASHES":
        config = {**config, "auth_keys": {"CP-1": _hashes()["CP-1"]}}
    table = {"type": "ocpp", "charge_points": {"CP-1": {"1": "ev-1"}}, **config}
    with pytest.raises(ConfigError, match=message):
        parse_adapter_config(table)


def test_all_interfaces_without_authentication_only_when_said() -> None:
    table = {"type": "ocpp", "host": "0.0.0.0", "allow_unauthenticated": True, "charge_points": {"CP-1": {"1": "e"}}}
    parsed = parse_adapter_config(table)
    assert parsed.host == "0.0.0.0"  # type: ignore[attr-defined]
    assert AdapterContext  # the context type the adapters are built with is public


def test_keys_are_hashed_salted_checked_in_constant_time_and_made_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stored = keys.hash_key(KEY_1)
    assert stored.startswith(f"pbkdf2-sha256${keys.ITERATIONS}$") and KEY_1 not in stored
    assert keys.hash_key(KEY_1) != stored  # salted
    assert keys.verify_key(KEY_1, stored) and not keys.verify_key(KEY_2, stored)
    with pytest.raises(keys.KeyProblem, match="16 to 40 bytes"):
        keys.hash_key("short")
    monkeypatch.setattr("sys.stdin", io.StringIO(KEY_2 + "\n"))
    assert keys.main() == 0
    assert keys.verify_key(KEY_2, capsys.readouterr().out.strip())
    assert keys.basic_credentials("Basic Q1AtMTpzM2NyZXQ=") == ("CP-1", "s3cret")
    assert keys.basic_credentials("Bearer x") is None and keys.basic_credentials("Basic %%%") is None


async def test_a_frame_not_shaped_like_ocpp_is_dropped_and_the_connection_goes_on(tmp_path: Path) -> None:
    """Found by tests/fuzz: a CALL whose action is a list made the `ocpp` package's router raise TypeError,
    which ended the charger's connection; an action with a NUL made it open a schema file named with it."""
    import json

    import websockets.asyncio.client as client

    gw = OcppGateway(tmp_path / "spool.sqlite", T0, charge_points=TABLE)
    try:
        async with client.connect(f"ws://127.0.0.1:{gw.port}/CP-1", subprotocols=["ocpp1.6"]) as ws:
            await ws.send('[2, ["m1"], ["Heartbeat"], {}]')
            await ws.send('[2, "m2", "Heart\\u0000beat", {}]')
            await ws.send('[2, "m3", "Heartbeat", {}]')
            answer = json.loads(await ws.recv())
            assert answer[:2] == [3, "m3"] and "currentTime" in answer[2]
        assert gw.adapter.malformed == 2
    finally:
        gw.shut()

"""The gateway's TLS and credential options (gateway.toml `[mqtt]`, `TlsConfig`), without a broker."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from districtpulse.services.secure import SecureFiles, ensure
from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from gateway.publisher import BrokerConfig, TlsConfig

HEAD = '[gateway]\nid = "gw-t1"\ndistrict = "tls"\n'
ADAPTER = '[[adapter]]\ntype = "simulated"\n'


def _load(tmp_path: Path, mqtt: str) -> GatewayConfig:
    path = tmp_path / "gateway.toml"
    path.write_text(f"{HEAD}[mqtt]\n{mqtt}{ADAPTER}", encoding="utf-8")
    return GatewayConfig.load(path)


def test_tls_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        'tls = true\nca_file = "pki/ca.crt"\ncert_file = "/etc/dp/gw.crt"\nkey_file = "pki/gw.key"\n'
        'username = "gw-t1"\npassword_file = "pw"\n',
    )
    assert config.tls() == TlsConfig(tmp_path / "pki/ca.crt", Path("/etc/dp/gw.crt"), tmp_path / "pki/gw.key")


def test_tls_is_off_unless_asked_for_and_system_cas_are_the_default(tmp_path: Path) -> None:
    assert _load(tmp_path, "").tls() is None
    assert _load(tmp_path, "tls = true\n").tls() == TlsConfig(None, None, None)


@pytest.mark.parametrize(
    ("mqtt", "message"),
    [
        ('ca_file = "ca.crt"\n', "ca_file set but tls = false"),
        ('tls = true\ncert_file = "gw.crt"\n', "needs both cert_file and key_file"),
        ('tls = true\nkey_file = "gw.key"\n', "needs both cert_file and key_file"),
        ('password_file = "pw"\n', "password_file needs a username"),
        ('tls = true\ncafile = "ca.crt"\n', "cafile"),  # a typo is an error, not a plain-text fallback
    ],
)
def test_inconsistent_tls_options_are_errors(tmp_path: Path, mqtt: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, mqtt)


def test_tls_context_verifies_the_broker_and_loads_the_client_certificate(tmp_path: Path) -> None:
    files = SecureFiles(tmp_path / "secure")
    ensure(files.root, [("tls", "gw-t1")])
    context = TlsConfig(files.ca_cert, files.client_cert("gw-t1"), files.client_key("gw-t1")).context()

    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert [cert["subject"] for cert in context.get_ca_certs()] == [
        ((("organizationName", "DistrictPulse"),), (("commonName", "DistrictPulse local CA"),))
    ]


def test_unusable_tls_files_are_config_errors_naming_the_files(tmp_path: Path) -> None:
    files = SecureFiles(tmp_path / "secure")
    ensure(files.root, [("tls", "gw-t1")])
    with pytest.raises(ConfigError, match=r"missing\.crt"):
        TlsConfig(tmp_path / "missing.crt").context()
    with pytest.raises(ConfigError, match="cannot load the TLS files"):  # a key that is not this cert's
        TlsConfig(files.ca_cert, files.client_cert("gw-t1"), files.ca_key).context()
    with pytest.raises(ConfigError, match="needs both"):
        TlsConfig(files.ca_cert, files.client_cert("gw-t1"), None).context()


def test_the_password_stays_out_of_the_broker_config_repr() -> None:
    broker = BrokerConfig("127.0.0.1", 8883, username="gw-t1", password="do-not-print-me", tls=TlsConfig())
    assert "do-not-print-me" not in repr(broker)
    assert "gw-t1" in repr(broker)

"""The dashboard's credentials: secrets in files (0600), TLS towards a secure broker, the shared defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.config import ConfigError, DashboardConfig

AUTH = "[auth]\nopen = true\n"


def _load(tmp_path: Path, text: str) -> DashboardConfig:
    path = tmp_path / "dashboard.toml"
    path.write_text(AUTH + text, encoding="utf-8")
    return DashboardConfig.load(path)


def _secret(tmp_path: Path, name: str, value: str, mode: int = 0o600) -> None:
    (tmp_path / name).write_text(value + "\n", encoding="utf-8")
    (tmp_path / name).chmod(mode)


def test_passwords_come_from_files_next_to_the_config_and_tls_is_on_with_a_ca(tmp_path: Path) -> None:
    _secret(tmp_path, "reader.password", "r-s3cret")
    _secret(tmp_path, "dashboard.password", "d-s3cret")
    config = _load(
        tmp_path,
        '[influx]\nusername = "reader"\npassword_file = "reader.password"\n'
        '[mqtt]\nusername = "_dashboard"\npassword_file = "dashboard.password"\n'
        'ca_file = "ca.crt"\ncert_file = "d.crt"\nkey_file = "d.key"\n',
    )
    assert (config.influx.secret(), config.mqtt.secret()) == ("r-s3cret", "d-s3cret")
    assert config.mqtt.ca_file == tmp_path / "ca.crt"
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[influx]\npassword = "x"\npassword_file = "private"\n', "both set"),
        ('[influx]\npassword_file = "readable"\n', "chmod 600"),
        ('[mqtt]\ncert_file = "d.crt"\nkey_file = "d.key"\n', "need ca_file"),
        ('[mqtt]\nca_file = "ca.crt"\ncert_file = "d.crt"\n', "needs both cert_file and key_file"),
    ],
)
def test_inconsistent_credentials_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    _secret(tmp_path, "private", "s3cret")
    _secret(tmp_path, "readable", "s3cret", 0o644)
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, text)


def test_the_database_credentials_default_to_the_shared_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _secret(tmp_path, "reader.password", "from-env")
    monkeypatch.setenv("DP_INFLUX_USERNAME", "reader")
    monkeypatch.setenv("DP_INFLUX_PASSWORD_FILE", str(tmp_path / "reader.password"))
    config = _load(tmp_path, "")
    assert (config.influx.username, config.influx.secret()) == ("reader", "from-env")
    # A section that names its own user keeps its own password too.
    assert _load(tmp_path, '[influx]\nusername = "other"\n').influx.secret() is None

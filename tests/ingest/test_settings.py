"""`districtpulse ingest --config`: TOML file, DP_INGEST_* variables and flags, in that order of precedence,
validated before anything connects; `--check` says whether the configuration is valid."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from ingest import cli
from ingest.settings import IngestConfig


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


TOML = """
batch_readings = 777
writers = 3
[mqtt]
client_id = "from-file"
receive_maximum = 50
topics = ["$share/ingest/dp/v1/+/+/+/+"]
[influx]
version = "1"
database = "filedb"
retention_policy = "autogen"
"""


def test_file_then_environment_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ingest.toml"
    path.write_text(TOML)
    monkeypatch.setenv("DP_MQTT_HOST", "10.0.0.7")  # the shared endpoint variables give the defaults
    monkeypatch.setenv("DP_INGEST_WRITERS", "4")  # env beats the file
    monkeypatch.setenv("DP_INGEST_INFLUX__DATABASE", "envdb")
    config = cli.load_config(_args("--config", str(path), "--writers", "5", "--client-id", "from-flag"))

    assert config.batch_readings == 777  # file
    assert config.writers == 5  # flag beats env
    assert config.mqtt.client_id == "from-flag"
    assert config.mqtt.receive_maximum == 50  # file, next to a flag in the same section
    assert config.mqtt.host == "10.0.0.7"  # default from DP_MQTT_HOST
    assert config.influx.database == "envdb"
    assert config.influx.retention_policy == "autogen"

    runtime = config.runtime()
    assert runtime.writers == 5 and runtime.batch_readings == 777
    assert runtime.mqtt.topics == ("$share/ingest/dp/v1/+/+/+/+",)
    assert runtime.mqtt.receive_maximum == 50
    assert runtime.influx.database == "envdb" and runtime.influx.version == "1"


def test_unknown_keys_and_bad_values_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "ingest.toml"
    path.write_text("[mqtt]\nrecieve_maximum = 10\n")  # misspelt
    with pytest.raises(ValueError, match="recieve_maximum"):
        IngestConfig.load(path)
    path.write_text("writers = 0\n")
    with pytest.raises(ValueError, match="writers"):
        IngestConfig.load(path)
    path.write_text('[influx]\nversion = "2"\norg = "o"\n')
    with pytest.raises(ValueError, match="bucket, token"):
        IngestConfig.load(path)


def test_check_prints_the_effective_configuration_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ingest.toml"
    path.write_text('[influx]\nversion = "2"\norg = "city"\nbucket = "raw"\ntoken = "s3cret-token"\n')
    assert cli.run(_args("--config", str(path), "--check")) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert doc["ok"] is True and doc["devices"] == 40
    assert doc["config"]["influx"]["org"] == "city"
    assert "s3cret" not in out

    path.write_text("batch_readings = -1\n")
    assert cli.run(_args("--config", str(path), "--check")) == 2
    assert "batch_readings" in capsys.readouterr().err
    assert cli.run(_args("--config", str(tmp_path / "missing.toml"), "--check")) == 2
    assert "not found" in capsys.readouterr().err


def test_the_example_configuration_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(cli.__file__).with_name("ingest.example.toml")
    assert cli.run(_args("--config", str(example), "--check")) == 0
    doc = json.loads(capsys.readouterr().out)["config"]
    assert doc["mqtt"]["topics"] == ["$share/ingest/dp/v1/+/+/+/+"]
    assert doc["writers"] == 8 and doc["influx"]["version"] == "auto"


def test_the_maximum_packet_size_is_never_below_the_brokers_bound(tmp_path: Path) -> None:
    """Below the broker's `max_packet_size` the broker would drop messages it accepted, silently, for this
    consumer (tests/integration/test_ingest_bounds.py): such a value is a configuration error."""
    from pydantic import ValidationError

    from devices.wire import MAX_PACKET_BYTES
    from ingest.mqtt import DEFAULT_MAXIMUM_PACKET_SIZE

    assert IngestConfig.load().runtime().mqtt.maximum_packet_size == DEFAULT_MAXIMUM_PACKET_SIZE > MAX_PACKET_BYTES
    example = Path(cli.__file__).with_name("ingest.example.toml")
    assert IngestConfig.load(example).mqtt.maximum_packet_size == DEFAULT_MAXIMUM_PACKET_SIZE
    for allowed in (0, MAX_PACKET_BYTES):
        assert IngestConfig.load(mqtt={"maximum_packet_size": allowed}).runtime().mqtt.maximum_packet_size == allowed
    with pytest.raises(ValidationError, match=f"at least {MAX_PACKET_BYTES}"):
        IngestConfig.load(mqtt={"maximum_packet_size": MAX_PACKET_BYTES - 1})


def test_confirmations_are_on_unless_switched_off() -> None:
    assert cli.load_config(_args()).runtime().confirm is True
    assert cli.load_config(_args("--no-confirm")).runtime().confirm is False


def test_every_setting_is_handed_to_the_pipeline_by_name() -> None:
    from ingest.settings import IngestConfig

    config = IngestConfig.load(None, batch_readings=7, writers=3, confirm_delay_s=0.5, quarantine_max_rows=9)
    settings = config.runtime()
    assert (settings.batch_readings, settings.writers, settings.confirm_delay_s, settings.quarantine_max_rows) == (
        7,
        3,
        0.5,
        9,
    )
    assert settings.influx.timeout == config.influx.timeout_s and settings.mqtt.client_id == config.mqtt.client_id


def test_a_setting_with_no_field_in_the_pipeline_is_an_error_not_a_silent_drop() -> None:
    from pydantic import BaseModel

    from ingest.mqtt import MqttConfig
    from ingest.settings import _handed

    class Section(BaseModel):
        host: str = "h"
        nowhere: int = 1

    with pytest.raises(TypeError, match=r"Section\.nowhere has no field in MqttConfig"):
        _handed(MqttConfig, Section())
    assert _handed(MqttConfig, Section(), unused={"nowhere"}).host == "h"


def test_no_secret_appears_in_a_repr_of_the_settings() -> None:
    """Issue 12: passwords and tokens sat in the dataclass reprs of the runtime settings (a log line or a
    traceback away from an operator's screen)."""
    from ingest.settings import IngestConfig

    secrets = {"mqtt-pass-1234", "influx-pass-5678", "influx-token-9abc"}
    config = IngestConfig.load(
        None,
        mqtt={"username": "_ingest", "password": "mqtt-pass-1234"},
        influx={
            "version": "2",
            "password": "influx-pass-5678",
            "org": "o",
            "bucket": "b",
            "token": "influx-token-9abc",
        },
    )
    settings = config.runtime()
    shown = " ".join([repr(settings), repr(settings.mqtt), repr(settings.influx), repr(config), str(config.summary())])
    assert not [s for s in secrets if s in shown]
    assert (settings.mqtt.password, settings.influx.password, settings.influx.token) == (
        "mqtt-pass-1234",
        "influx-pass-5678",
        "influx-token-9abc",
    )


def _secret_file(tmp_path: Path, name: str, secret: str, mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(secret + "\n", encoding="utf-8")
    path.chmod(mode)
    return path


def test_secrets_come_from_files_read_only_when_the_runtime_settings_are_made(tmp_path: Path) -> None:
    mqtt_file = _secret_file(tmp_path, "mqtt.password", "mqtt-s3cret")
    influx_file = _secret_file(tmp_path, "influx.password", "influx-s3cret")
    config = IngestConfig(
        mqtt={"username": "_ingest", "password_file": mqtt_file},
        influx={"username": "writer", "password_file": influx_file},
    )
    assert "s3cret" not in repr(config) and "s3cret" not in json.dumps(config.summary())
    influx_file.write_text("rotated\n", encoding="utf-8")  # read when used, not kept in the validated config
    runtime = config.runtime()
    assert (runtime.mqtt.password, runtime.influx.password) == ("mqtt-s3cret", "rotated")


def test_a_secret_file_others_may_read_or_a_secret_given_twice_is_a_config_error(tmp_path: Path) -> None:
    readable = _secret_file(tmp_path, "readable", "s3cret", 0o644)
    private = _secret_file(tmp_path, "private", "s3cret")
    with pytest.raises(ValueError, match=r"may be read by others .*chmod 600"):
        IngestConfig(influx={"username": "writer", "password_file": readable})
    with pytest.raises(ValueError, match="password and password_file are both set"):
        IngestConfig(mqtt={"username": "u", "password": "x", "password_file": private})
    with pytest.raises(ValueError, match="token and token_file are both set"):
        IngestConfig(influx={"version": "2", "org": "o", "bucket": "b", "token": "t", "token_file": private})
    v2 = IngestConfig(influx={"version": "2", "org": "o", "bucket": "b", "token_file": private})
    assert v2.runtime().influx.token == "s3cret"


def test_the_database_credentials_default_to_the_shared_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DP_INFLUX_USERNAME", "writer")
    monkeypatch.setenv("DP_INFLUX_PASSWORD_FILE", str(_secret_file(tmp_path, "w", "from-env")))
    runtime = IngestConfig().runtime()
    assert (runtime.influx.username, runtime.influx.password) == ("writer", "from-env")

"""gateway.toml: defaults, the registry as the source of district and devices, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import GatewayConfig
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_defaults_and_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DP_MQTT_PORT", "12345")
    config = GatewayConfig.load(
        _config(tmp_path, '[gateway]\nid = "gw1"\ndistrict = "d1"\n[[adapter]]\ntype = "simulated"\ncount = 2\n')
    )
    assert config.district == "d1"
    assert config.spool_path == tmp_path / "spool.sqlite"
    assert config.mqtt.port == 12345  # the environment gives the default broker
    assert config.client_id == "dp-gw-gw1"
    assert config.spool.commit_interval_ms == 200
    assert config.spool.synchronous == "FULL"
    assert config.password() is None


def test_the_registry_gives_the_district_and_the_devices(tmp_path: Path, registry_text: Callable[[str], str]) -> None:
    (tmp_path / "registry.toml").write_text(registry_text("dx"))
    (tmp_path / "secret").write_text("s3cret\n")
    (tmp_path / "secret").chmod(0o600)  # a secret file only its owner reads (devices.secrets)
    config = GatewayConfig.load(
        _config(
            tmp_path,
            '[gateway]\nid = "dx-gw1"\nregistry = "registry.toml"\n'
            '[mqtt]\nusername = "dx-gw1"\npassword_file = "secret"\n[[adapter]]\ntype = "simulated"\n',
        )
    )
    assert config.district == "dx"
    assert [(d.id, d.kind.value) for d in config.registry_devices] == [
        ("dx-em", "electricity_meter"),
        ("dx-bs", "building_sensor"),
        ("dx-ev", "ev_charger"),
    ]
    assert config.password() == "s3cret"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[gateway]\nid = "gw1"\n[[adapter]]\ntype = "simulated"\ncount = 1\n', "district is required"),
        ('[gateway]\nid = "gw 1"\ndistrict = "d"\n[[adapter]]\ntype = "simulated"\n', "invalid id 'gw 1'"),
        ('[gateway]\nid = "gw1"\ndistrict = "d"\n', "gateway.toml: adapter: field required$"),
        ('[gateway]\nid = "g"\ndistrict = "d"\n[spool]\nmax_byte = 1\n[[adapter]]\ntype = "simulated"\n', "max_byte"),
        ('[gateway]\nid = "g"\ndistrict = "d"\n[[adapter]]\ntype = "simulated"\ninterval_s = 0\n', "interval_s"),
        (
            '[gateway]\nid = "g"\ndistrict = "d"\n[[adapter]]\ntype = "simulated"\n[[adapter]]\ntype = "simulated"\n',
            "distinct names: simulated",
        ),
        ('[gateway]\nid = "g"\nregistry = "missing.toml"\n[[adapter]]\ntype = "simulated"\n', "cannot read registry"),
        ("[gateway\n", "not valid TOML"),
    ],
)
def test_errors_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GatewayConfig.load(_config(tmp_path, text))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "districtpulse", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def test_check_prints_a_summary_and_a_bad_config_exits_2(tmp_path: Path) -> None:
    good = _config(tmp_path, '[gateway]\nid = "gw1"\ndistrict = "d1"\n[[adapter]]\ntype = "simulated"\ncount = 7\n')
    proc = _cli("--config", str(good), "--check")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "gateway": "gw1",
        "district": "d1",
        "spool": str(tmp_path / "spool.sqlite"),
        "broker": json.loads(proc.stdout)["broker"],
        "client_id": "dp-gw-gw1",
        "adapters": {"simulated": 7},
    }
    assert not (tmp_path / "spool.sqlite").exists()  # --check touches nothing
    bad = _config(tmp_path, '[gateway]\nid = "gw1"\n[[adapter]]\ntype = "simulated"\ncount = 1\n')
    proc = _cli("--config", str(bad))
    assert proc.returncode == 2
    assert "district is required" in proc.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[gateway]\nid = "g"\ndistrict = "d"\npublish_interval_s = -1\n'
            '[spool]\nmax_bytes = 1\nsynchronous = "OFF"\n[[adapter]]\ntype = "simulated"\n',
            "gateway.publish_interval_s: must be > 0 (got -1.0); spool.synchronous: must be one of 'NORMAL', 'FULL'; "
            "spool.max_bytes: must be >= 65536 (got 1)",
        ),
        (
            '[gateway]\nid = "g"\ndistrict = "d"\n[mqtt]\nport = "x"\nkeepalive = 1\n[[adapter]]\ntype = "simulated"\n',
            "mqtt.port: expected an integer, got 'x'; mqtt.keepalive: must be >= 5 (got 1)",
        ),
        (
            '[gateway]\nid = "g"\ndistrict = "d"\n[spool]\ninstantaneous_max_age_s = 9\nmax_age_s = 1\n'
            '[[adapter]]\ntype = "simulated"\n',
            "spool: instantaneous_max_age_s must not exceed max_age_s",
        ),
        (
            '[gateway]\nid = "g"\ndistrict = "d"\n[[adapter]]\ntype = "simulated"\n[[adapter]]\ntype = "simulated"\n'
            'name = "two"\ninterval_s = 0\ncuont = 3\n',
            "adapter[1] (simulated): interval_s: must be > 0 (got 0.0); "
            "cuont: unknown key (allowed: type, name, interval_s, devices, count, kinds, seed, ticks, stagger)",
        ),
        (
            '[gateway]\nid = "g"\ndistrict = "d"\n[[adapter]]\ntype = "simulated"\ncount = 2\ndevices = ["a"]\n',
            "adapter[0] (simulated): give either devices or count, not both",
        ),
        ('[gateway]\nid = "g"\nregistry = "registry.toml"\n[[adapter]]\ntype = "simulated"\n', None),
    ],
)
def test_exact_messages_keep_the_source_and_location(tmp_path: Path, text: str, message: str | None) -> None:
    (tmp_path / "registry.toml").write_text('[[district]]\nid = "d"\n')
    path = _config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        GatewayConfig.load(path)
    expected = message if message is not None else f"gateway 'g' is not in the registry {tmp_path / 'registry.toml'}"
    assert str(info.value) == f"{path}: {expected}"

"""Secrets from files (devices.secrets): only the owner may read them, and a bad file says what to do."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devices.secrets import MAX_SECRET_BYTES, SecretFileError, check_secret_file, read_secret
from gateway.config import GatewayConfig
from gateway.errors import ConfigError


def _secret(tmp_path: Path, content: bytes, mode: int = 0o600, name: str = "pw") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("content", "secret"),
    [(b"s3cret\n", "s3cret"), (b"s3cret", "s3cret"), (b"s3cret\r\n", "s3cret"), (b" s p \n\n", " s p \n")],
)
def test_one_trailing_line_break_is_dropped_and_nothing_else(tmp_path: Path, content: bytes, secret: str) -> None:
    assert read_secret(_secret(tmp_path, content)) == secret


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644, 0o660])
def test_a_file_others_may_read_or_write_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    path = _secret(tmp_path, b"s3cret\n", mode)
    with pytest.raises(SecretFileError, match=rf"influx.password_file: {path} may be read by others .*chmod 600"):
        read_secret(path, "influx.password_file")


def test_missing_empty_large_binary_and_non_regular_files_are_refused(tmp_path: Path) -> None:
    cases = {
        "cannot read": tmp_path / "missing",
        "is empty": _secret(tmp_path, b"\n", name="empty"),
        f"more than a secret \\({MAX_SECRET_BYTES}\\)": _secret(tmp_path, b"x" * (MAX_SECRET_BYTES + 1), name="big"),
        "not UTF-8": _secret(tmp_path, b"\xff\xfe", name="binary"),
    }
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    cases["not a regular file"] = fifo  # would block a plain open() forever
    for message, path in cases.items():
        with pytest.raises(SecretFileError, match=message):
            check_secret_file(path)


def test_a_symlink_is_not_followed(tmp_path: Path) -> None:
    target = _secret(tmp_path, b"s3cret\n")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(SecretFileError, match="cannot read"):
        read_secret(link)


def test_the_error_never_holds_the_secret(tmp_path: Path) -> None:
    path = _secret(tmp_path, b"hunter2-secret\n", 0o644)
    with pytest.raises(SecretFileError) as caught:
        read_secret(path)
    assert "hunter2" not in str(caught.value)


def test_the_gateway_refuses_a_password_file_others_may_read(tmp_path: Path) -> None:
    _secret(tmp_path, b"s3cret\n", 0o644, name="mqtt-password")
    (tmp_path / "gateway.toml").write_text(
        '[gateway]\nid = "gw-t1"\ndistrict = "t"\n[mqtt]\nusername = "gw-t1"\npassword_file = "mqtt-password"\n'
        '[[adapter]]\ntype = "simulated"\n',
        encoding="utf-8",
    )
    config = GatewayConfig.load(tmp_path / "gateway.toml")
    with pytest.raises(ConfigError, match="chmod 600"):
        config.password()

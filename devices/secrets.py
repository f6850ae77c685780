"""Secrets from files: a password or a token is read from a file only its owner can read, never from a config
file, a command line (visible in /proc to every user) or a log line.

`read_secret` refuses, with a message that says what to do:
- a file that group or others may read or write (as ssh refuses a private key): `chmod 600 <path>`;
- anything but a regular file (a directory, a FIFO that would block the reader), or a missing file;
- an empty file, or one larger than `MAX_SECRET_BYTES` (a secret is short; a big file is a wrong path);
- bytes that are not UTF-8.

One trailing line break is dropped (what `echo` and editors leave); any other whitespace is part of the secret.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["MAX_SECRET_BYTES", "SecretFileError", "check_secret_file", "read_secret"]

MAX_SECRET_BYTES = 4096


class SecretFileError(ValueError):
    """A secret file that cannot be used; the message names the file and the fix, never the secret."""


def _open_checked(path: Path, what: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise SecretFileError(f"{what}: cannot read {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecretFileError(f"{what}: {path} is not a regular file")
        if info.st_mode & 0o077:
            raise SecretFileError(
                f"{what}: {path} may be read by others (mode {stat.S_IMODE(info.st_mode):04o}); chmod 600 {path}"
            )
        if info.st_size > MAX_SECRET_BYTES:
            raise SecretFileError(f"{what}: {path} has {info.st_size} bytes, more than a secret ({MAX_SECRET_BYTES})")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_secret(path: Path, what: str = "secret") -> str:
    """The secret in `path` (see the module docstring); `what` names it in errors ("influx.password_file")."""
    fd = _open_checked(path, what)
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(MAX_SECRET_BYTES + 1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SecretFileError(f"{what}: {path} is not UTF-8 text") from exc
    secret = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
    if not secret:
        raise SecretFileError(f"{what}: {path} is empty")
    return secret


def check_secret_file(path: Path, what: str = "secret") -> None:
    """Raise `SecretFileError` now if `read_secret` would later (configs check at load, read when used)."""
    read_secret(path, what)

"""The TLS client context every component uses towards the broker: one way to verify it.

The broker's certificate is verified against `ca_file` (the system CAs when None), host name included, with
TLS 1.2 at least; a client certificate is presented when given (it needs its key). Files that cannot be read
or parsed raise `TlsFilesError`, naming the files (never their content).
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["TlsFilesError", "client_context"]


class TlsFilesError(ValueError):
    """The CA, certificate or key files cannot be used; the message names them."""


def client_context(
    ca_file: Path | None = None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    if (cert_file is None) != (key_file is None):
        raise TlsFilesError("a TLS client certificate needs both cert_file and key_file")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert_file is not None and key_file is not None:
            context.load_cert_chain(str(cert_file), str(key_file))
    except (OSError, ssl.SSLError) as exc:  # FileNotFoundError, PermissionError, a PEM that does not parse
        named = ", ".join(str(p) for p in (ca_file, cert_file, key_file) if p is not None) or "(system CAs)"
        raise TlsFilesError(f"cannot load the TLS files {named}: {exc}") from exc
    return context

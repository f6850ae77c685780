"""The gateway's exceptions: paho's return codes and socket errors become these, at one boundary
(`gateway.publisher`), so callers never need to know paho's error vocabulary.

    GatewayError
    ├── BrokerUnavailable     cannot connect, or the connection was lost and not restored in time
    ├── PublishFailed         the client refused a message (queue full, payload too large)
    ├── SpoolError            the on-disk spool cannot be opened or written
    └── ConfigError           the gateway configuration is invalid
"""


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class BrokerUnavailable(GatewayError):
    """The broker cannot be reached or did not accept the connection."""


class PublishFailed(GatewayError):
    """A message was refused before it reached the network."""


class SpoolError(GatewayError):
    """The spool cannot be opened or written (disk full, corrupt file, wrong schema)."""


class ConfigError(GatewayError):
    """The gateway configuration is invalid; the message says where."""

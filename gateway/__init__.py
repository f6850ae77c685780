"""The edge gateway: reads devices, keeps readings in a durable spool, publishes them over MQTT (QoS 1).

Runs on a Raspberry Pi: imports only the standard library (sqlite3 for the spool) and paho-mqtt. No
pydantic: the configuration and the registry are read into dataclasses by `devices.tables` and
`devices.registry` (one registry model for every component, pydantic-free), which saves the ~12 MB
pydantic would take of the 40 MB budget (issue 4);
`tests/gateway/test_gateway_imports.py` keeps it that way.

    adapters (threads) ──put──► Spool (SQLite WAL, group commit, bounded) ──► Gateway loop ──► Publisher (paho)
                                  seq per device, deleted on PUBACK            one message per device per interval
"""

from gateway.config import GatewayConfig
from gateway.errors import BrokerUnavailable, ConfigError, GatewayError, PublishFailed, SpoolError
from gateway.publisher import BrokerConfig, Publisher, Will
from gateway.service import Gateway
from gateway.spool import Spool, SpoolLimits

__all__ = [
    "BrokerConfig",
    "BrokerUnavailable",
    "ConfigError",
    "Gateway",
    "GatewayConfig",
    "GatewayError",
    "PublishFailed",
    "Publisher",
    "Spool",
    "SpoolError",
    "SpoolLimits",
    "Will",
]

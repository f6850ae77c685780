"""The edge gateway: reads devices, keeps readings in a durable spool, publishes them over MQTT (QoS 1).

Runs on a Raspberry Pi: imports only the standard library, pydantic (through `devices`) and paho-mqtt.
"""

from gateway.errors import BrokerUnavailable, GatewayError, PublishFailed
from gateway.publisher import BrokerConfig, Publisher

__all__ = ["BrokerConfig", "BrokerUnavailable", "GatewayError", "PublishFailed", "Publisher"]

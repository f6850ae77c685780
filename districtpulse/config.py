"""Where the local services are (re-exported from `devices.endpoints`, which every component can import)."""

from devices.endpoints import DEFAULT_INFLUX_DB, DEFAULT_INFLUX_PORT, DEFAULT_MQTT_PORT, Endpoints

__all__ = ["DEFAULT_INFLUX_DB", "DEFAULT_INFLUX_PORT", "DEFAULT_MQTT_PORT", "Endpoints"]

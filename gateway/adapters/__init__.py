"""Device adapters: one folder each, registered here by type name. See `gateway.adapters.base`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from gateway.adapters import modbus, mqtt_sensors, ocpp, replay, simulated
from gateway.adapters.base import (
    Adapter,
    AdapterConfig,
    AdapterContext,
    AdapterSpec,
    DeviceRef,
    ReadingSink,
    Values,
)
from gateway.errors import ConfigError

ADAPTERS: Mapping[str, AdapterSpec] = {
    spec.name: spec
    for spec in (
        simulated.SPEC,
        replay.SPEC,
        ocpp.SPEC,
        modbus.SPEC,
        mqtt_sensors.SPEC,
    )
}


def parse_adapter_config(raw: Mapping[str, Any], *, where: str = "adapter") -> AdapterConfig:
    """Validate one `[[adapter]]` table with the model of its `type`; ConfigError says what is wrong."""
    kind = raw.get("type")
    spec = ADAPTERS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise ConfigError(f"{where}: unknown adapter type {kind!r} (known: {', '.join(sorted(ADAPTERS))})")
    try:
        config: AdapterConfig = spec.config.model_validate(raw)
        return config
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise ConfigError(f"{where} ({kind}): {problems}") from exc


def build_adapter(config: AdapterConfig, context: AdapterContext) -> Adapter:
    return ADAPTERS[config.type].create(config, context)


__all__ = [
    "ADAPTERS",
    "Adapter",
    "AdapterConfig",
    "AdapterContext",
    "AdapterSpec",
    "DeviceRef",
    "ReadingSink",
    "Values",
    "build_adapter",
    "parse_adapter_config",
]

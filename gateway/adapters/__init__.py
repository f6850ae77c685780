"""Device adapters: one folder each, registered here by type name. See `gateway.adapters.base`."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from devices.tables import TableError, load
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

#: type name -> the module holding its `SPEC`. Imported on first use, so a gateway loads (and its memory
#: holds) only the adapters it is configured with: on a Pi every megabyte counts.
_MODULES: dict[str, str] = {
    "simulated": "gateway.adapters.simulated",
    "replay": "gateway.adapters.replay",
    "ocpp": "gateway.adapters.ocpp",
    "modbus": "gateway.adapters.modbus",
    "mqtt_sensors": "gateway.adapters.mqtt_sensors",
}


class _Registry(Mapping[str, AdapterSpec]):
    def __getitem__(self, name: str) -> AdapterSpec:
        spec: AdapterSpec = importlib.import_module(_MODULES[name]).SPEC
        return spec

    def __iter__(self) -> Iterator[str]:
        return iter(_MODULES)

    def __len__(self) -> int:
        return len(_MODULES)


ADAPTERS: Mapping[str, AdapterSpec] = _Registry()


def parse_adapter_config(raw: Mapping[str, Any], *, where: str = "adapter") -> AdapterConfig:
    """Validate one `[[adapter]]` table with the model of its `type`; ConfigError says what is wrong."""
    kind = raw.get("type")
    spec = ADAPTERS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise ConfigError(f"{where}: unknown adapter type {kind!r} (known: {', '.join(sorted(ADAPTERS))})")
    try:
        return load(spec.config, raw)
    except TableError as exc:
        raise ConfigError(f"{where} ({kind}): {exc}") from exc


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

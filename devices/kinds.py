"""Device kinds: what each kind of device measures, in which unit, and within which range.

This table is the vocabulary every other package speaks: the gateway stamps readings with these metric names
and units, ingest validates against the ranges, InfluxDB stores one measurement per kind with one field per
metric, and aggregation knows which metrics are cumulative registers.

Ranges are *physical plausibility* limits, not alarm thresholds: a value outside them is certainly a fault
(a decoding error, a sensor failure, a unit mix-up) and is quarantined rather than stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

ValueType = Literal["float", "str"]


class DeviceKind(StrEnum):
    """The kinds of device a district deploys; the value is the last level of the MQTT topic."""

    ELECTRICITY_METER = "electricity_meter"
    HEAT_METER = "heat_meter"
    EV_CHARGER = "ev_charger"
    BUILDING_SENSOR = "building_sensor"
    PV_INVERTER = "pv_inverter"
    WEATHER_STATION = "weather_station"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric of a device kind.

    `cumulative` marks a register that only grows in normal operation (an energy counter): it is sent as the
    register value, never as a delta, so a lost message loses resolution, not energy. `choices` restricts a
    string metric to an enumeration (e.g. OCPP connector states).
    """

    name: str
    unit: str | None
    type: ValueType = "float"
    min: float = float("-inf")
    max: float = float("inf")
    cumulative: bool = False
    choices: frozenset[str] | None = None
    max_length: int = 64
    description: str = ""


@dataclass(frozen=True, slots=True)
class KindSpec:
    """A device kind: its InfluxDB measurement and its metrics by name."""

    kind: DeviceKind
    measurement: str
    metrics: MappingProxyType[str, MetricSpec] = field(repr=False)
    description: str = ""

    @property
    def cumulative_metrics(self) -> tuple[str, ...]:
        return tuple(name for name, spec in self.metrics.items() if spec.cumulative)


def _kind(kind: DeviceKind, measurement: str, description: str, *metrics: MetricSpec) -> KindSpec:
    return KindSpec(kind, measurement, MappingProxyType({m.name: m for m in metrics}), description)


#: OCPP 1.6 ChargePointStatus values (StatusNotification.req); the charger simulator and the OCPP adapter use them.
OCPP_CONNECTOR_STATUSES = frozenset(
    {
        "Available",
        "Preparing",
        "Charging",
        "SuspendedEVSE",
        "SuspendedEV",
        "Finishing",
        "Reserved",
        "Unavailable",
        "Faulted",
    }
)

KINDS: MappingProxyType[DeviceKind, KindSpec] = MappingProxyType(
    {
        spec.kind: spec
        for spec in (
            _kind(
                DeviceKind.ELECTRICITY_METER,
                "electricity",
                "Smart electricity meter (whole building or sub-meter)",
                MetricSpec(
                    "energy_import",
                    "kWh",
                    min=0,
                    max=1e9,
                    cumulative=True,
                    description="Cumulative active energy imported from the grid",
                ),
                MetricSpec(
                    "energy_export",
                    "kWh",
                    min=0,
                    max=1e9,
                    cumulative=True,
                    description="Cumulative active energy exported to the grid",
                ),
                MetricSpec("power", "W", min=-1e7, max=1e7, description="Active power, positive = import"),
                MetricSpec("voltage", "V", min=0, max=1000, description="Phase-to-neutral voltage"),
            ),
            _kind(
                DeviceKind.HEAT_METER,
                "heat",
                "District-heating or heat-pump heat meter",
                MetricSpec(
                    "energy",
                    "kWh",
                    min=0,
                    max=1e10,
                    cumulative=True,
                    description="Cumulative heat energy delivered",
                ),
                MetricSpec("flow_temperature", "degC", min=-20, max=150),
                MetricSpec("return_temperature", "degC", min=-20, max=150),
            ),
            _kind(
                DeviceKind.EV_CHARGER,
                "ev_charging",
                "EV charging point (one connector)",
                MetricSpec(
                    "connector_status",
                    None,
                    type="str",
                    choices=OCPP_CONNECTOR_STATUSES,
                    description="OCPP 1.6 connector status",
                ),
                MetricSpec(
                    "session_id",
                    None,
                    type="str",
                    max_length=64,
                    description="Charging session (transaction) id; empty when no session",
                ),
                MetricSpec(
                    "session_energy",
                    "kWh",
                    min=0,
                    max=1000,
                    cumulative=True,
                    description="Energy register of the current session, restarts at 0 per session",
                ),
                MetricSpec("power", "W", min=0, max=400_000, description="Charging power"),
            ),
            _kind(
                DeviceKind.BUILDING_SENSOR,
                "indoor",
                "Indoor climate and occupancy sensor",
                MetricSpec("temperature", "degC", min=-30, max=60),
                MetricSpec("relative_humidity", "%", min=0, max=100),
                MetricSpec("co2", "ppm", min=0, max=10_000),
                MetricSpec("occupancy", "count", min=0, max=10_000, description="People present"),
            ),
            _kind(
                DeviceKind.PV_INVERTER,
                "pv",
                "Photovoltaic inverter",
                MetricSpec(
                    "energy_production",
                    "kWh",
                    min=0,
                    max=1e9,
                    cumulative=True,
                    description="Cumulative energy produced",
                ),
                MetricSpec("power", "W", min=0, max=1e7, description="AC output power"),
            ),
            _kind(
                DeviceKind.WEATHER_STATION,
                "weather",
                "Outdoor weather station",
                MetricSpec("outdoor_temperature", "degC", min=-60, max=60),
            ),
        )
    }
)


def spec_for(kind: DeviceKind | str) -> KindSpec:
    """The spec of a kind; raises KeyError naming the kinds that exist."""
    try:
        return KINDS[DeviceKind(kind)]
    except ValueError as exc:
        known = ", ".join(k.value for k in DeviceKind)
        raise KeyError(f"unknown device kind {kind!r} (known: {known})") from exc


def units_for(kind: DeviceKind | str) -> dict[str, str]:
    """The unit of every metric of a kind that has one: what a conforming payload declares in `units`."""
    return {name: m.unit for name, m in spec_for(kind).metrics.items() if m.unit is not None}

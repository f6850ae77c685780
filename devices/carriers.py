"""Energy carriers: which cumulative register of which device kind measures which energy, once for everyone.

The daily KPI job tags `kpi_energy` with `Carrier.name`, the dashboard shows `Carrier.figure`, the demo prints
`Carrier.name` totals; all three read the register `Carrier.register` of devices of kind `Carrier.kind`
(sub-meters excluded: they are inside their main meter's total).
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.kinds import DeviceKind

__all__ = ["CARRIERS", "Carrier", "carriers_of"]


@dataclass(frozen=True, slots=True)
class Carrier:
    name: str  # the `carrier` tag of kpi_energy
    kind: DeviceKind
    register: str  # the cumulative kWh register (devices.kinds)
    figure: str  # the dashboard's per-device figure


CARRIERS: dict[str, Carrier] = {
    c.name: c
    for c in (
        Carrier("electricity", DeviceKind.ELECTRICITY_METER, "energy_import", "import_kwh"),
        Carrier("electricity_export", DeviceKind.ELECTRICITY_METER, "energy_export", "export_kwh"),
        Carrier("heat", DeviceKind.HEAT_METER, "energy", "heat_kwh"),
        Carrier("pv", DeviceKind.PV_INVERTER, "energy_production", "pv_kwh"),
        Carrier("ev", DeviceKind.EV_CHARGER, "session_energy", "ev_kwh"),
    )
}


def carriers_of(kind: DeviceKind) -> tuple[Carrier, ...]:
    """The carriers a device of this kind measures (none for sensors)."""
    return tuple(c for c in CARRIERS.values() if c.kind is kind)

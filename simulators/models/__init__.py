"""Per-kind device models, each simulating all devices of its kind at once, chunk by chunk."""

from simulators.models.base import Chunk, GroupOutput
from simulators.models.electricity import Coupling, ElectricityModel, Meter
from simulators.models.ev import EvModel, Session, energy_in_windows
from simulators.models.heat import HeatMeter, HeatModel
from simulators.models.indoor import IndoorModel, WeatherStationModel, Zone
from simulators.models.pv import PvModel, PvSystem, pv_power_w

__all__ = [
    "Chunk",
    "Coupling",
    "ElectricityModel",
    "EvModel",
    "GroupOutput",
    "HeatMeter",
    "HeatModel",
    "IndoorModel",
    "Meter",
    "PvModel",
    "PvSystem",
    "Session",
    "WeatherStationModel",
    "Zone",
    "energy_in_windows",
    "pv_power_w",
]

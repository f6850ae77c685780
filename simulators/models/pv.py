"""PV systems: plane-of-array irradiance from the site's solar geometry and clouds, then a simple inverter model.

    P_dc = kWp x POA / 1000 W/m2 x PR x (1 + gamma (T_cell - 25 degC)),  T_cell = T_air + POA (NOCT - 20) / 800
    P_ac = min(P_dc, AC rating)

PR = 0.86 covers soiling, wiring, mismatch and inverter losses; gamma = -0.4 %/K (crystalline silicon);
NOCT = 45 degC; the AC rating is kWp / 1.1 (a usual DC/AC ratio), so bright cold days clip a little.
Production is a deterministic function of the weather, so the inverter's register and the PV share of a
building meter agree exactly at the same sampling times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulators.models.base import J_PER_KWH, Chunk, FloatArray, GroupOutput
from simulators.solar import plane_of_array
from simulators.weather import WeatherSample

PERFORMANCE_RATIO = 0.86
GAMMA_PER_K = -0.004
NOCT_C = 45.0
DC_AC_RATIO = 1.1


@dataclass(frozen=True, slots=True)
class PvSystem:
    """A PV array: size and orientation, and the first local day (index in the run) it produces on."""

    name: str
    building: str
    kwp: float
    tilt_deg: float = 35.0
    azimuth_deg: float = 180.0
    from_day: int = -(10**9)
    #: True when it is a retrofit: the counterfactual is the building without it.
    intervention: bool = False


def pv_power_w(systems: list[PvSystem], weather: WeatherSample, day: np.ndarray) -> FloatArray:
    """AC power (W) of each system at the weather's sample times: shape (systems, samples)."""
    out = np.zeros((len(systems), weather.t_ms.size))
    for i, s in enumerate(systems):
        poa = plane_of_array(weather.ghi_w_m2, weather.sun, tilt_deg=s.tilt_deg, azimuth_deg=s.azimuth_deg)
        t_cell = weather.temperature_c + poa * (NOCT_C - 20.0) / 800.0
        dc = s.kwp * poa * PERFORMANCE_RATIO * (1.0 + GAMMA_PER_K * (t_cell - 25.0))
        ac = np.clip(dc, 0.0, s.kwp * 1000.0 / DC_AC_RATIO)
        out[i] = np.where(day >= s.from_day, ac, 0.0)
    return out


class PvModel:
    """The pv_inverter devices: power and the cumulative production register."""

    def __init__(self, systems: list[PvSystem], registers: FloatArray) -> None:
        self.systems = systems
        self.register = registers.astype(np.float64)

    def sample(self, chunk: Chunk) -> GroupOutput:
        power = pv_power_w(self.systems, chunk.weather, chunk.day)
        energy = power * chunk.dt_s / J_PER_KWH
        register = self.register[:, None] + np.cumsum(energy, axis=1) - energy
        self.register = self.register + energy.sum(axis=1)
        values = {"energy_production": register, "power": power}
        rows = [i for i, s in enumerate(self.systems) if s.intervention]
        cf = {"energy_production": np.zeros_like(energy)} if rows else {}
        return GroupOutput(values, energy={"energy_production": energy}, counterfactual=cf, counterfactual_rows=rows)

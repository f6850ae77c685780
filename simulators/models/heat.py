"""Heat meters: space heating driven by degree days, plus domestic hot water.

    P_space = UA x max(0, T_balance - T_smoothed) x noise        (a retrofit multiplies it by its factor)
    P_dhw   = mean hot-water power x daily draw shape x noise

T_smoothed is the outdoor temperature through the building's thermal inertia (tau 12 h), so a day's heat is
close to UA x 24 h x the day's degree days below the balance point: the heating-degree-day model that
energy-savings methods (IPMVP option C, CalTRACK) regress on. UA per m2 and the hot-water share are typical
of Finnish stock heated by district heat (~110 kWh/m2a space heat in a 3,900 Kd S17 climate).
Flow temperature follows a heating curve (never below 58 degC, for hot water hygiene); the return
temperature falls as load rises (cooling of the network water improves with load).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulators.models.base import J_PER_KWH, Chunk, FloatArray, GroupOutput, lognormal_factor
from simulators.models.profiles import hot_water_shape, use_of
from simulators.rng import ou_path

UA_W_M2K = {"residential": 1.15, "commercial": 0.95, "education": 1.05}
BALANCE_C = {"residential": 17.0, "commercial": 15.0, "education": 16.0}
HOT_WATER_KWH_M2A = {"residential": 30.0, "commercial": 5.0, "education": 8.0}
DESIGN_OUTDOOR_C = -26.0


@dataclass(slots=True)
class HeatMeter:
    device: str
    building: str
    use: str
    area_m2: float
    scale: float = 1.0
    retrofit_from_day: int = 10**9
    retrofit_factor: float = 1.0

    @property
    def ua_w_k(self) -> float:
        return UA_W_M2K[use_of(self.use)] * self.area_m2 * self.scale

    @property
    def balance_c(self) -> float:
        return BALANCE_C[use_of(self.use)]

    @property
    def hot_water_w(self) -> float:
        return HOT_WATER_KWH_M2A[use_of(self.use)] * self.area_m2 * 1000 / 8766


class HeatModel:
    def __init__(self, meters: list[HeatMeter], rng: np.random.Generator, registers: FloatArray) -> None:
        self.meters = meters
        self.rng = rng
        self.register = registers.astype(np.float64)
        self.z = rng.standard_normal((2, len(meters)))

    def sample(self, chunk: Chunk) -> GroupOutput:
        n, dt = chunk.n, chunk.dt_s
        z, self.z = ou_path(self.rng, self.z, n, dt, 3600.0)
        t_smooth = chunk.weather.temperature_smoothed_c
        space_cf = np.empty((len(self.meters), n))
        dhw = np.empty((len(self.meters), n))
        factor = np.ones((len(self.meters), n))
        design = np.empty(len(self.meters))
        for i, m in enumerate(self.meters):
            space_cf[i] = m.ua_w_k * np.maximum(0.0, m.balance_c - t_smooth) * lognormal_factor(z[0, i], 0.05)
            dhw[i] = m.hot_water_w * hot_water_shape(m.use, chunk.hour, chunk.weekday) * lognormal_factor(z[1, i], 0.3)
            factor[i] = np.where(chunk.day >= m.retrofit_from_day, m.retrofit_factor, 1.0)
            design[i] = m.ua_w_k * (m.balance_c - DESIGN_OUTDOOR_C) + 2 * m.hot_water_w
        power_cf = space_cf + dhw
        power = space_cf * factor + dhw
        energy = power * dt / J_PER_KWH
        register = self.register[:, None] + np.cumsum(energy, axis=1) - energy
        self.register = self.register + energy.sum(axis=1)
        flow = np.clip(58.0 + (10.0 - t_smooth) * 0.6, 58.0, 80.0) + np.zeros((len(self.meters), 1))
        load_ratio = np.clip(power / design[:, None], 0.0, 1.0)
        ret = flow - (8.0 + 22.0 * load_ratio)
        rows = [i for i, m in enumerate(self.meters) if m.retrofit_from_day < 10**9]
        cf = {"energy": power_cf * dt / J_PER_KWH} if rows else {}
        return GroupOutput(
            {"energy": register, "flow_temperature": flow, "return_temperature": ret},
            energy={"energy": energy},
            counterfactual=cf,
            counterfactual_rows=rows,
        )

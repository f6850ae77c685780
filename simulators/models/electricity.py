"""Electricity meters: building and household demand with daily/weekly shapes and weather, PV and EVs.

Demand of a meter's share of a building (its floor area divided among the building's main meters):

    P = area x intensity x shape(use, hour, weekday) x season x noise      base load, lighting in winter
      + UA_e x max(0, 17 degC - T_smoothed)                               direct electric heating (some homes)
      + c x area x max(0, T_out - 22 degC) while occupied                 cooling (offices, schools)

The noise is a log-normal Ornstein-Uhlenbeck factor (tau 20 min); it is larger for a single household than
for a whole building (fewer appliances average out). Households get a log-normal size factor.

Sub-meters take a share of their main meter's base load with their own noise; the main meter measures the
rest plus the sub-meters, so main >= sum of its sub-meters at every instant. The building's common main
meter (the first one) also carries the building's EV chargers and PV: it is a bidirectional grid meter with
an import and an export register, and `power` is the net import (negative while exporting).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulators.models.base import J_PER_KWH, Chunk, FloatArray, GroupOutput, lognormal_factor
from simulators.models.profiles import electricity_shape, use_of
from simulators.rng import ou_path

#: Annual electricity intensity without heating or cooling (kWh per m2 and year), typical Nordic values.
INTENSITY_KWH_M2A = {"residential": 35.0, "commercial": 90.0, "education": 50.0}
SEASON_AMPLITUDE = {"residential": 0.15, "commercial": 0.05, "education": 0.08}
COOLING_W_M2K = {"residential": 0.0, "commercial": 1.2, "education": 0.6}
ELECTRIC_HEATING_UA_W_K = 90.0  # a household with direct electric heating: ~7,500 kWh/a in Helsinki


@dataclass(slots=True)
class Meter:
    device: str
    building: str
    use: str
    area_m2: float
    sigma: float
    scale: float = 1.0
    parent: int | None = None  # row of the main meter for a sub-meter
    share: float = 0.0  # sub-meter: share of the parent's base load
    heating_ua_w_k: float = 0.0
    common: bool = False  # carries the building's EV and PV
    efficiency_from_day: int = 10**9
    efficiency_factor: float = 1.0


@dataclass(frozen=True, slots=True)
class Coupling:
    """What hangs behind a building's common meter for one chunk: EV energy and PV power per sample."""

    ev_kwh: FloatArray
    pv_w: FloatArray
    pv_w_counterfactual: FloatArray


class ElectricityModel:
    def __init__(self, meters: list[Meter], rng: np.random.Generator, imports: FloatArray, exports: FloatArray) -> None:
        self.meters = meters
        self.rng = rng
        self.imports = imports.astype(np.float64)
        self.exports = exports.astype(np.float64)
        self.z = rng.standard_normal(len(meters))
        self.vz = rng.standard_normal(len(meters))
        self.sigma = np.array([m.sigma for m in meters])

    def sample(self, chunk: Chunk, couplings: dict[str, Coupling]) -> GroupOutput:
        n, dt = chunk.n, chunk.dt_s
        ms = self.meters
        z, self.z = ou_path(self.rng, self.z, n, dt, 1200.0)
        vz, self.vz = ou_path(self.rng, self.vz, n, dt, 600.0)
        noise = lognormal_factor(z, self.sigma[:, None])
        doy = chunk.weather.sun.day_of_year
        t_out, t_smooth = chunk.weather.temperature_c, chunk.weather.temperature_smoothed_c
        shapes: dict[str, FloatArray] = {}
        base = np.empty((len(ms), n))
        extra = np.zeros((len(ms), n))
        factor = np.ones((len(ms), n))
        for i, m in enumerate(ms):
            use = use_of(m.use)
            if use not in shapes:
                shapes[use] = electricity_shape(use, chunk.hour, chunk.weekday)
            season = 1.0 + SEASON_AMPLITUDE[use] * np.cos(2 * np.pi * (doy - 15) / 365.25)
            base[i] = m.area_m2 * INTENSITY_KWH_M2A[use] * 1000 / 8766 * m.scale * shapes[use] * season
            if m.parent is None:
                extra[i] = m.heating_ua_w_k * np.maximum(0.0, 17.0 - t_smooth)
                occupied = shapes[use] > 1.0
                extra[i] += COOLING_W_M2K[use] * m.area_m2 * np.maximum(0.0, t_out - 22.0) * occupied
            factor[i] = np.where(chunk.day >= m.efficiency_from_day, m.efficiency_factor, 1.0)
        own = base * noise  # each meter's own noisy base load
        load_cf = own + extra
        for i, m in enumerate(ms):  # sub-meters: a share of the parent's base shape, with their own noise
            if m.parent is not None:
                load_cf[i] = m.share * base[m.parent] * noise[i]
        sub_share = np.zeros(len(ms))
        for m in ms:
            if m.parent is not None:
                sub_share[m.parent] += m.share
        for i, m in enumerate(ms):  # main = rest + its sub-meters
            if m.parent is None and sub_share[i] > 0:
                subs = sum(load_cf[j] for j, s in enumerate(ms) if s.parent == i)
                load_cf[i] = (1.0 - sub_share[i]) * own[i] + extra[i] + subs
        load = load_cf * factor  # an efficiency retrofit scales the whole building, sub-meters included

        net = load.copy()
        net_cf = load_cf.copy()
        cf_rows = {i for i, m in enumerate(ms) if m.efficiency_from_day < 10**9}
        for i, m in enumerate(ms):
            c = couplings.get(m.building) if m.common else None
            if c is None:
                continue
            ev_w = c.ev_kwh * J_PER_KWH / dt
            net[i] += ev_w - c.pv_w
            net_cf[i] += ev_w - c.pv_w_counterfactual
            if c.pv_w is not c.pv_w_counterfactual:
                cf_rows.add(i)

        imp = np.maximum(net, 0.0) * dt / J_PER_KWH
        exp = np.maximum(-net, 0.0) * dt / J_PER_KWH
        import_reg = self.imports[:, None] + np.cumsum(imp, axis=1) - imp
        export_reg = self.exports[:, None] + np.cumsum(exp, axis=1) - exp
        self.imports = self.imports + imp.sum(axis=1)
        self.exports = self.exports + exp.sum(axis=1)
        voltage = 230.0 + 1.8 * vz - np.clip(net, -60_000, 60_000) * 2e-5
        counterfactual: dict[str, FloatArray] = {}
        if cf_rows:
            counterfactual = {
                "energy_import": np.maximum(net_cf, 0.0) * dt / J_PER_KWH,
                "energy_export": np.maximum(-net_cf, 0.0) * dt / J_PER_KWH,
            }
        return GroupOutput(
            {"energy_import": import_reg, "energy_export": export_reg, "power": net, "voltage": voltage},
            energy={"energy_import": imp, "energy_export": exp},
            counterfactual=counterfactual,
            counterfactual_rows=sorted(cf_rows),
        )

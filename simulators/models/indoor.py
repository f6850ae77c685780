"""Building sensors (indoor temperature, relative humidity, CO2, occupancy) and the outdoor weather station.

Occupancy: the zone's capacity x the use's occupancy shape x a slow log-normal noise, rounded to people.
CO2: the well-mixed single-zone mass balance, solved exactly over each step,

    C(t + dt) = C_eq + (C(t) - C_eq) exp(-ach dt),   C_eq = C_out + 1e6 x n x G / (ach x V)

with G = 5.2e-6 m3/s of CO2 per seated adult (~19 l/h), outdoor 420 ppm, and the air change rate ach higher
while the ventilation runs (occupied hours). Indoor temperature relaxes (tau 3 h) towards the heating
set point (with a night/weekend set-back in offices and schools), people's heat and summer overheating.
Humidity: outdoor water vapour plus ~50 g/h per person, diluted by ventilation, as RH at the indoor
temperature, so winters are dry (15-30 %) and summers humid, as in Nordic buildings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulators.models.base import Chunk, FloatArray, GroupOutput, lognormal_factor
from simulators.models.profiles import occupancy_fraction, use_of
from simulators.rng import ou_path
from simulators.weather import absolute_humidity_g_m3, relative_humidity_pct

CO2_OUTDOOR_PPM = 420.0
CO2_PER_PERSON_M3_S = 5.2e-6
MOISTURE_PER_PERSON_G_H = 50.0
M2_PER_PERSON = {"residential": 30.0, "commercial": 12.0, "education": 3.5}
ACH_OCCUPIED = {"residential": 0.5, "commercial": 2.0, "education": 3.0}
ACH_IDLE = 0.3


@dataclass(slots=True)
class Zone:
    device: str
    building: str
    use: str
    area_m2: float
    height_m: float = 3.0

    @property
    def volume_m3(self) -> float:
        return self.area_m2 * self.height_m

    @property
    def capacity(self) -> float:
        return self.area_m2 / M2_PER_PERSON[use_of(self.use)]


class IndoorModel:
    def __init__(self, zones: list[Zone], rng: np.random.Generator) -> None:
        self.zones = zones
        self.rng = rng
        self.z = rng.standard_normal((2, len(zones)))
        self.co2 = np.full(len(zones), 450.0)
        self.temp = np.full(len(zones), 21.0)

    def sample(self, chunk: Chunk) -> GroupOutput:
        n, dt = chunk.n, chunk.dt_s
        z, self.z = ou_path(self.rng, self.z, n, dt, 1800.0)
        w = chunk.weather
        ah_out = absolute_humidity_g_m3(w.temperature_c, w.relative_humidity_pct)
        k = len(self.zones)
        occupancy = np.empty((k, n))
        co2 = np.empty((k, n))
        temp = np.empty((k, n))
        c_eq = np.empty((k, n))
        decay = np.empty((k, n))
        target = np.empty((k, n))
        ach = np.empty((k, n))
        for i, zone in enumerate(self.zones):
            use = use_of(zone.use)
            frac = occupancy_fraction(use, chunk.hour, chunk.weekday)
            people = np.round(zone.capacity * frac * lognormal_factor(z[0, i], 0.25))
            occupancy[i] = people
            ventilated = frac > 0.1 if use != "residential" else np.ones(n, dtype=bool)
            ach[i] = np.where(ventilated, ACH_OCCUPIED[use], ACH_IDLE) / 3600.0
            c_eq[i] = CO2_OUTDOOR_PPM + 1e6 * people * CO2_PER_PERSON_M3_S / (ach[i] * zone.volume_m3)
            decay[i] = np.exp(-ach[i] * dt)
            setpoint = np.where((use == "residential") | (frac > 0.1), 21.5, 19.0)
            target[i] = (
                setpoint
                + 0.6 * people / max(zone.capacity, 1.0)
                + 0.45 * np.maximum(0.0, w.temperature_smoothed_c - 18.0)
            )
        t_decay = float(np.exp(-dt / (3 * 3600.0)))
        c, t = self.co2, self.temp
        for j in range(n):  # exact step of the first-order balances, all zones at once
            co2[:, j] = c
            temp[:, j] = t
            c = c_eq[:, j] + (c - c_eq[:, j]) * decay[:, j]
            t = target[:, j] + (t - target[:, j]) * t_decay
        self.co2, self.temp = c, t
        temp = temp + 0.15 * z[1]
        volume = np.array([zone.volume_m3 for zone in self.zones])[:, None]
        ah_in = ah_out[None, :] + occupancy * MOISTURE_PER_PERSON_G_H / (ach * 3600.0 * volume)
        rh = np.clip(relative_humidity_pct(temp, ah_in), 5.0, 95.0)
        return GroupOutput(
            {"temperature": temp, "relative_humidity": rh, "co2": co2, "occupancy": occupancy},
        )


class WeatherStationModel:
    """An outdoor thermometer: the district weather plus a little sensor noise (OU, 0.1 K)."""

    def __init__(self, count: int, rng: np.random.Generator) -> None:
        self.rng = rng
        self.z = rng.standard_normal(count)

    def sample(self, chunk: Chunk) -> GroupOutput:
        z, self.z = ou_path(self.rng, self.z, chunk.n, chunk.dt_s, 900.0)
        values: FloatArray = chunk.weather.temperature_c[None, :] + 0.1 * z
        return GroupOutput({"outdoor_temperature": values})

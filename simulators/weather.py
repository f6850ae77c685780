"""The district's weather: outdoor temperature, cloud cover, humidity and irradiance, shared by every device.

The weather is generated once per run on a fixed 5-minute grid and linearly interpolated to any sample time.
So it does not depend on the resolution the devices are sampled at: a 1 s and a 1 h run of the same seed see
the same weather, and energy totals are comparable across resolutions.

    temperature = annual cycle + diurnal cycle (damped by clouds) + synoptic weather (OU, tau ~3 days)
    cloud cover  = logistic(OU, tau ~8 h) with a chosen mean
    GHI          = clear-sky (Haurwitz, solar geometry of the site) x cloud attenuation (Kasten-Czeplak)

Defaults describe Helsinki (60.17 N, 24.94 E): annual mean 6.5 degC, January -4, July 17.5, mean cloud cover
0.72, which gives ~1,000 kWh/m2 global irradiation a year (the measured figure is ~950-1,000).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simulators.rng import ou_step_factors, stream
from simulators.solar import FloatArray, IntArray, SunPosition, clear_sky_ghi, cloudy_ghi, sun_position

GRID_MS = 300_000
_WINDOW_POINTS = 3 * 288  # keep three days of grid: bounded memory however long the run


@dataclass(frozen=True, slots=True)
class Climate:
    """Where the district is and what its weather is like. Lives in the simulator config, not the registry."""

    latitude: float = 60.17
    longitude: float = 24.94
    mean_temp_c: float = 6.5
    annual_amplitude_k: float = 10.8
    coldest_day_of_year: int = 25
    diurnal_amplitude_k: float = 2.5
    synoptic_sigma_k: float = 3.5
    synoptic_tau_h: float = 72.0
    cloud_mean: float = 0.72
    #: Winters are cloudier than summers at high latitudes (Helsinki: ~0.85 in December, ~0.6 in June).
    cloud_seasonal_amplitude: float = 0.12
    cloud_tau_h: float = 8.0
    outdoor_rh_pct: float = 80.0
    building_tau_h: float = 12.0

    def __post_init__(self) -> None:
        if not -90 <= self.latitude <= 90 or not -180 <= self.longitude <= 180:
            raise ValueError(f"latitude/longitude out of range: {self.latitude}, {self.longitude}")
        if not 0 < self.cloud_mean < 1:
            raise ValueError("cloud_mean must be in (0, 1)")


@dataclass(frozen=True, slots=True)
class WeatherSample:
    """The weather at a set of sample times (all arrays have the shape of the times)."""

    t_ms: IntArray
    temperature_c: FloatArray
    #: Outdoor temperature smoothed with the building time constant: what heating demand follows.
    temperature_smoothed_c: FloatArray
    cloud_cover: FloatArray
    relative_humidity_pct: FloatArray
    sun: SunPosition
    ghi_w_m2: FloatArray
    ghi_clear_w_m2: FloatArray


class Weather:
    """Generates the weather grid lazily, forward in time; `at(times)` interpolates it."""

    def __init__(self, climate: Climate, seed: int, start_ms: int) -> None:
        self.climate = climate
        self._rng = stream(seed, "weather")
        self._t0 = start_ms - start_ms % GRID_MS
        self._first_index = 0  # grid index of _temp[0]
        self._synoptic = float(self._rng.standard_normal())
        self._cloud_z = float(self._rng.standard_normal())
        self._rh_z = float(self._rng.standard_normal())
        self._smoothed: float | None = None
        self._temp = np.empty(0)
        self._smooth = np.empty(0)
        self._cloud = np.empty(0)
        self._rh = np.empty(0)

    def _base_temperature(self, t_ms: IntArray, cloud: FloatArray) -> FloatArray:
        c = self.climate
        days = t_ms / 86_400_000
        doy = (days % 365.2425) + 1  # close enough to the civil day of year for a climate cycle
        annual = c.mean_temp_c - c.annual_amplitude_k * np.cos(2 * np.pi * (doy - c.coldest_day_of_year) / 365.2425)
        # Diurnal range is larger in summer and on clear days; peak at 15:00 local solar time.
        solar_hour = (days % 1.0) * 24 + c.longitude / 15
        summer = 0.5 - 0.5 * np.cos(2 * np.pi * (doy - c.coldest_day_of_year) / 365.2425)
        amplitude = c.diurnal_amplitude_k * (0.5 + summer) * (1.2 - 0.6 * cloud)
        result: FloatArray = annual + amplitude * np.cos(2 * np.pi * (solar_hour - 15) / 24)
        return result

    def _extend_to(self, index: int) -> None:
        """Generate grid points up to and including grid index `index`."""
        have = self._first_index + len(self._temp)
        n = index + 1 - have
        if n <= 0:
            return
        c = self.climate
        a_syn, b_syn = ou_step_factors(GRID_MS / 1000, c.synoptic_tau_h * 3600)
        a_cl, b_cl = ou_step_factors(GRID_MS / 1000, c.cloud_tau_h * 3600)
        a_rh, b_rh = ou_step_factors(GRID_MS / 1000, 6 * 3600)
        noise = self._rng.standard_normal((n, 3)).T  # point by point: the same draws however the grid grows
        syn = np.empty(n)
        cz = np.empty(n)
        rz = np.empty(n)
        for k in range(n):
            syn[k], cz[k], rz[k] = self._synoptic, self._cloud_z, self._rh_z
            self._synoptic = a_syn * self._synoptic + b_syn * noise[0, k]
            self._cloud_z = a_cl * self._cloud_z + b_cl * noise[1, k]
            self._rh_z = a_rh * self._rh_z + b_rh * noise[2, k]
        t = self._t0 + (have + np.arange(n, dtype=np.int64)) * GRID_MS
        doy = (t / 86_400_000) % 365.2425
        mean = np.clip(
            c.cloud_mean + c.cloud_seasonal_amplitude * np.cos(2 * np.pi * (doy - 15) / 365.2425), 0.05, 0.95
        )
        cloud = 1.0 / (1.0 + np.exp(-(np.log(mean / (1 - mean)) + 2.2 * cz)))
        temp = self._base_temperature(t, cloud) + c.synoptic_sigma_k * syn
        rh = np.clip(c.outdoor_rh_pct + 8.0 * rz + 10.0 * (cloud - c.cloud_mean), 30.0, 100.0)
        a_b = math.exp(-GRID_MS / 1000 / (c.building_tau_h * 3600))
        smooth = np.empty(n)
        s = float(temp[0]) if self._smoothed is None else self._smoothed
        for k in range(n):
            s = a_b * s + (1 - a_b) * float(temp[k])
            smooth[k] = s
        self._smoothed = s
        self._temp = np.concatenate([self._temp, temp])
        self._smooth = np.concatenate([self._smooth, smooth])
        self._cloud = np.concatenate([self._cloud, cloud])
        self._rh = np.concatenate([self._rh, rh])
        drop = len(self._temp) - _WINDOW_POINTS
        if drop > 0:
            self._temp, self._smooth = self._temp[drop:], self._smooth[drop:]
            self._cloud, self._rh = self._cloud[drop:], self._rh[drop:]
            self._first_index += drop

    def at(self, t_ms: IntArray) -> WeatherSample:
        """The weather at sample times; times must not go back more than a day behind the latest request."""
        if t_ms.size == 0:
            raise ValueError("no sample times")
        last = int((int(t_ms.max()) - self._t0) // GRID_MS) + 1
        self._extend_to(last)
        first = int((int(t_ms.min()) - self._t0) // GRID_MS)
        if first < self._first_index:
            raise ValueError("weather requested too far back in time")
        grid_t = (self._t0 + (self._first_index + np.arange(len(self._temp))) * GRID_MS).astype(np.float64)
        x = t_ms.astype(np.float64)
        temp = np.interp(x, grid_t, self._temp)
        smooth = np.interp(x, grid_t, self._smooth)
        cloud = np.interp(x, grid_t, self._cloud)
        rh = np.interp(x, grid_t, self._rh)
        sun = sun_position(t_ms, self.climate.latitude, self.climate.longitude)
        clear = clear_sky_ghi(sun.cos_zenith)
        return WeatherSample(t_ms, temp, smooth, cloud, rh, sun, cloudy_ghi(clear, cloud), clear)


def absolute_humidity_g_m3(temperature_c: FloatArray, relative_humidity_pct: FloatArray) -> FloatArray:
    """Water vapour density (g/m3) from temperature and relative humidity (Magnus formula)."""
    saturation_hpa = 6.112 * np.exp(17.62 * temperature_c / (243.12 + temperature_c))
    result: FloatArray = 216.7 * (relative_humidity_pct / 100 * saturation_hpa) / (273.15 + temperature_c)
    return result


def relative_humidity_pct(temperature_c: FloatArray, absolute_g_m3: FloatArray) -> FloatArray:
    """Relative humidity (%) of air at `temperature_c` holding `absolute_g_m3` of water vapour."""
    saturation = absolute_humidity_g_m3(temperature_c, np.full_like(temperature_c, 100.0))
    result: FloatArray = 100.0 * absolute_g_m3 / saturation
    return result

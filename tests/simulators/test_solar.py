"""Solar geometry and irradiance against published figures for Helsinki (60.17 N, 24.94 E)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest

from simulators.models.pv import PvSystem, pv_power_w
from simulators.solar import sun_position
from simulators.weather import Climate, Weather

LAT, LON = 60.17, 24.94


def day_times(d: date, step_ms: int = 10_000) -> np.ndarray:
    t0 = int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)
    return np.arange(t0, t0 + 86_400_000, step_ms, dtype=np.int64)


@pytest.mark.parametrize(
    ("day", "daylight_h", "max_elevation"),
    [
        # Published for Helsinki (e.g. timeanddate.com): 18 h 57 min and 5 h 49 min of daylight at the
        # solstices (sunrise/sunset = upper limb with refraction, elevation -0.833 deg); noon elevation
        # 90 - latitude +/- 23.44 deg.
        (date(2026, 6, 21), 18 + 57 / 60, 90 - LAT + 23.44),
        (date(2026, 12, 21), 5 + 49 / 60, 90 - LAT - 23.44),
    ],
)
def test_daylight_and_noon_elevation_match_published_values(day: date, daylight_h: float, max_elevation: float) -> None:
    t = day_times(day)
    elevation = sun_position(t, LAT, LON).elevation_deg
    assert abs((elevation > -0.833).sum() * 10 / 3600 - daylight_h) < 0.05  # within 3 minutes
    assert abs(elevation.max() - max_elevation) < 0.1


def test_solar_noon_follows_longitude_and_the_equation_of_time() -> None:
    t = day_times(date(2026, 11, 3))  # equation of time at its maximum, +16.4 min
    noon = t[np.argmax(sun_position(t, LAT, LON).elevation_deg)]
    expected_minutes = 12 * 60 - 4 * LON - 16.4
    assert abs((noon % 86_400_000) / 60_000 - expected_minutes) < 1.0


def test_azimuth_is_south_at_noon_and_east_in_the_morning() -> None:
    t = day_times(date(2026, 3, 20), 60_000)
    sun = sun_position(t, LAT, LON)
    noon = np.argmax(sun.elevation_deg)
    assert abs(np.degrees(sun.azimuth[noon]) - 180) < 1
    morning = np.argmax(sun.elevation_deg > 5)
    assert 60 < np.degrees(sun.azimuth[morning]) < 120


def test_a_year_of_weather_gives_helsinki_irradiation_temperature_and_pv_yield() -> None:
    # Bounds: Helsinki global horizontal irradiation ~950-1,000 kWh/m2/a (FMI, PVGIS); south-facing PV at
    # 40 deg ~900-1,000 kWh/kWp with typical losses (PVGIS); annual mean temperature 6-7 degC (FMI 1991-2020).
    start = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
    weather = Weather(Climate(), 11, start)
    ghi = pv = 0.0
    daily = []
    system = [PvSystem("pv", "b", 1.0, 40, 180)]
    for day in range(365):
        t = np.arange(start + day * 86_400_000, start + (day + 1) * 86_400_000, 300_000, dtype=np.int64)
        w = weather.at(t)
        ghi += w.ghi_w_m2.sum() * 300 / 3.6e6
        pv += pv_power_w(system, w, np.zeros(t.size, dtype=np.int64)).sum() * 300 / 3.6e6
        daily.append(w.temperature_c.mean())
    assert 900 < ghi < 1100
    assert 850 < pv < 1100
    assert 5.0 < np.mean(daily) < 8.0
    january, july = np.mean(daily[:31]), np.mean(daily[181:212])
    assert -9 < january < 1 and 13 < july < 22

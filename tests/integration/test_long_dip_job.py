"""A meter that reads 0 through a reboot longer than the job's look-back, on the real InfluxDB.

The electricity meter has no `max_power_w`, so nothing bounds an interval: before the dip rule the register
coming back (81,000.9 after a day at 0) was an interval of 81,000.9 kWh counted from the "reset" to 0. The
daily job must give each day its true energy (the simulated consumption, 0 while the meter read 0 and the
0.9 kWh of the dip on the day it comes back), whether it computes one day (`compute_day`) or many in one
fetch (`compute_days`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest

from aggregation.jobs.daily import compute_day, compute_days, local_day
from devices import Registry
from districtpulse.config import Endpoints
from storage.influx import InfluxV1
from tests.support.registries import small_registry_toml, unique
from tests.support.services import scratch_database

H = 3_600_000
DAY = date(2026, 11, 10)


@pytest.fixture
async def influx(endpoints: Endpoints) -> AsyncIterator[InfluxV1]:
    async with scratch_database(endpoints, "dip") as client:
        yield client


async def test_a_reboot_longer_than_the_look_back_gives_no_energy(influx: InfluxV1) -> None:
    district = unique("dip")
    text = small_registry_toml(district).replace("max_power_w = 100000\n", "")
    registry = Registry.from_toml(text)
    meter, building = f"{district}-em", f"{district}-b1"
    assert registry.devices[meter].max_power_w is None
    zone = ZoneInfo("Europe/Helsinki")
    days = [local_day(zone, DAY + timedelta(days=n)) for n in range(3)]
    # Hourly: 0.25 kWh an hour on day 0 until 12:00, then 0 from 12:00 of day 0 to 12:00 of day 2 (36 h, far
    # more than the 6 h look-back), then back at the register plus the 0.9 kWh it counted meanwhile.
    register, lines, truth = 81_000.0, [], {d.day: 0.0 for d in days}
    for hour in range(72):
        ts = days[0].start_ms + hour * H
        day = days[hour // 24].day
        if hour < 12:
            register += 0.25 if hour else 0.0
            truth[day] += 0.25 if hour else 0.0
            value = register
        elif hour < 60:
            value = 0.0
        else:
            register += 0.9 if hour == 60 else 0.25
            truth[day] += 0.9 if hour == 60 else 0.25
            value = register
        lines.append(f"electricity,district={district},device={meter} energy_import={value},seq={hour}i {ts}")
    # a reading 2 days before, so that day 0's first interval has a start
    lines.insert(
        0, f"electricity,district={district},device={meter} energy_import=80999.5,seq=0i {days[0].start_ms - 2 * H}"
    )
    truth[days[0].day] += 0.5
    await influx.write("\n".join(lines).encode())

    single = {d.day: (await compute_day(influx, registry, district, d)).energy[(building, "electricity")] for d in days}
    many = await compute_days(influx, registry, district, days)
    together = {d.day: k.energy[(building, "electricity")] for d, k in zip(days, many, strict=True)}
    assert single == pytest.approx(truth, abs=1e-9)
    assert together == pytest.approx(truth, abs=1e-9)
    assert truth[days[2].day] == pytest.approx(0.9 + 11 * 0.25)  # the day it came back: no 81,000 kWh

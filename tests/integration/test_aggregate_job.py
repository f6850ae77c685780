"""`districtpulse aggregate` on the real InfluxDB: daily KPIs equal the simulator's truth, late data revises
exactly its day, and a day becomes final after the watermark."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date

import pytest

from aggregation.jobs.daily import run_cycle
from devices import Registry, demo_registry_path
from districtpulse.config import Endpoints
from simulators import DistrictSimulator, Message
from storage.influx import InfluxV1
from tests.support.influx_writes import write_messages
from tests.support.services import scratch_database

DAY = date(2026, 11, 20)


@pytest.fixture
async def influx(endpoints: Endpoints) -> AsyncIterator[InfluxV1]:
    async with scratch_database(endpoints, "agg") as client:
        yield client


def main_meter_registers(messages: list[Message]) -> dict[str, list[float]]:
    """The independent reference: each main meter's import register in time order, from the raw payloads."""
    out: dict[str, list[tuple[int, float]]] = {}
    for msg in messages:
        if msg.device.endswith("-em-main"):
            doc = json.loads(msg.payload)
            out.setdefault(msg.device, []).extend((r["ts"], r["values"]["energy_import"]) for r in doc["readings"])
    return {device: [v for _, v in sorted(rows)] for device, rows in out.items()}


async def kpi(influx: InfluxV1, measurement: str, fields: str, where: str = "") -> list[dict[str, object]]:
    series = await influx.query(f'SELECT {fields} FROM "{measurement}" {where} GROUP BY *')
    out = []
    for s in series:
        for row in s["values"]:
            out.append(dict(zip(s["columns"], row, strict=True)) | s.get("tags", {}))
    return out


async def test_daily_kpis_match_truth_and_late_data_revises_its_day(influx: InfluxV1) -> None:
    registry = Registry.load(demo_registry_path())
    sim = DistrictSimulator(registry, DAY, seed=11, inject_bad_readings=0)
    messages = list(sim.messages())
    cutoff = sim.end_ms - 3 * 3_600_000
    early = await write_messages(influx, registry, messages, lambda ts: ts < cutoff)
    after_day = sim.end_ms + 3_600_000

    first = await run_cycle(influx, registry, days=3, final_after_hours=48, now_ms=after_day)
    assert [(d, day, rev) for d, day, rev in first.recomputed] == [("demo", DAY, 1)]
    [district] = await kpi(influx, "kpi_district", "*")
    assert (district["readings"], district["status"], district["revision"]) == (early, "provisional", 1)

    late = await write_messages(influx, registry, messages, lambda ts: ts >= cutoff)  # 3 hours arrive late
    assert early + late == 40 * 1440
    second = await run_cycle(influx, registry, days=3, final_after_hours=48, now_ms=after_day)
    assert second.recomputed == [("demo", DAY, 2)]
    [district] = await kpi(influx, "kpi_district", "*")
    assert (district["readings"], district["status"], district["revision"]) == (40 * 1440, "provisional", 2)
    assert district["completeness"] == 1.0

    energy = {(r["building"], r["carrier"]): r["energy_kwh"] for r in await kpi(influx, "kpi_energy", "*")}
    registers = main_meter_registers(messages)
    for building in ("b1", "b2", "b3"):
        values = registers[f"{building}-em-main"]  # the day's first reading opens the first interval
        assert energy[(building, "electricity")] == pytest.approx(values[-1] - values[0], rel=1e-9)
    total = sum(v for (_, carrier), v in energy.items() if carrier == "electricity")
    assert district["electricity_import_kwh"] == pytest.approx(total, rel=1e-12)
    assert district["co2_kg"] > 0
    assert district["co2_factor_source"] == "electricity/FI/location/2024"

    third = await run_cycle(influx, registry, days=3, final_after_hours=48, now_ms=after_day)
    assert (third.recomputed, third.finalised, third.unchanged) == ([], [], 1)

    later = sim.end_ms + 49 * 3_600_000
    fourth = await run_cycle(influx, registry, days=3, final_after_hours=48, now_ms=later)
    assert fourth.finalised == [("demo", DAY)]
    [district] = await kpi(influx, "kpi_district", "*")
    assert (district["status"], district["revision"]) == ("final", 2)

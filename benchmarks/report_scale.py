"""The funder report of a district-year of the Scalable Cities fleet: 17,500 meters, under 60 s (issue 14).

A registry of one district with `--buildings` buildings of `--meters` electricity meters each (1,750 x 10 =
17,500 meters) and a year of the KPIs `districtpulse aggregate` writes for it, written straight to a scratch
database of the local InfluxDB: kpi_energy per building, day and carrier (electricity and heat: 1.28 million
points), kpi_district per day, savings to date per building and carrier, CO2, and each meter's first and
last reading of the year (their sequence numbers are what the data-quality accounts read). Timed: the whole
`districtpulse report` (collect, assemble, HTML with its charts, JSON; `--pdf` adds Chromium's print).
Baseline measured in the same run: one InfluxQL query that reads every kpi_energy point of the year, i.e.
what the report would cost if it read each day's row (its first version did); the report reads InfluxDB's
sums per building and per day instead. Medians of `--repeat` runs. The scratch database is dropped.

    PYTHONPATH=. python benchmarks/report_scale.py [--buildings 1750] [--meters 10] [--days 365] [--repeat 3]

Measured here (2 cores, helpers running): see the issue note for the figures and the command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

from aggregation.report import cli as report_cli
from aggregation.report.collect import Period
from devices.endpoints import Endpoints
from devices.progress import ProgressBar
from storage.influx import InfluxConfig, InfluxV1

DISTRICT = "sc"
ZONE = "Europe/Helsinki"
LAST = date(2026, 11, 30)


def registry_text(buildings: int, meters: int) -> str:
    lines = [f'[[district]]\nid = "{DISTRICT}"\ntimezone = "{ZONE}"\nheat_zone = "FI-Helsinki"\n']
    for b in range(buildings):
        lines.append(
            f'  [[district.building]]\n  id = "{DISTRICT}-b{b}"\n  floor_area_m2 = 1000\n  retrofit = 2026-09-01\n'
            f'    [[district.building.gateway]]\n    id = "{DISTRICT}-b{b}-g"\n'
        )
        lines.extend(
            f'      [[district.building.gateway.device]]\n      id = "{DISTRICT}-b{b}-m{m}"\n'
            '      kind = "electricity_meter"\n      commissioned = 2024-01-01T00:00:00Z\n'
            for m in range(meters)
        )
    return "".join(lines)


def kpi_lines(buildings: int, meters: int, period: Period) -> list[str]:
    days = (period.last - period.first).days + 1
    day_ms = [
        Period.of(period.first + timedelta(days=i), period.first + timedelta(days=i), ZONE).start_ms
        for i in range(days)
    ]
    lines = []
    for b in range(buildings):
        tags = f"building={DISTRICT}-b{b},district={DISTRICT}"
        for i, ts in enumerate(day_ms):
            lines.append(f"kpi_energy,{tags},carrier=electricity energy_kwh={500 + b % 7 + i % 5},revision=1i {ts}")
            lines.append(f"kpi_energy,{tags},carrier=heat energy_kwh={900 + b % 11 + i % 3},revision=1i {ts}")
        lines.extend(
            f"kpi_savings_building,{tags},carrier={carrier} savings_kwh=1200.5,counterfactual_kwh=9000.0,"
            'observed_kwh=7799.5,model_type="hdd_only",cv_rmse=0.12,nmbe=0.0001,r_squared=0.9,fsu=0.3,'
            'fsu_error_band_kwh=360.0,baseline_days=365i,reporting_days=91i,qualified=true,reason="",'
            f'retrofit="2026-09-01",status="final",revision=1i {period.last_day_ms}'
            for carrier in ("electricity", "heat")
        )
        for m in range(meters):
            device = f"device={DISTRICT}-b{b}-m{m},district={DISTRICT}"
            lines.append(f"electricity,{device} seq=0i,energy_import=1000.0 {period.start_ms + 60_000}")
            lines.append(f"electricity,{device} seq={days * 96 - 1}i,energy_import=5000.0 {period.end_ms - 60_000}")
    for i, ts in enumerate(day_ms):
        lines.append(
            f"kpi_district,district={DISTRICT} electricity_import_kwh=900000.0,heat_kwh=1600000.0,completeness=1.0,"
            f'readings_issued={buildings * meters * 96}i,status="final",revision=1i {ts}'
        )
        savings = f"savings_kwh={10.0 * i},savings_band_kwh={1.0 * i},qualified={2 * buildings}i"
        lines.append(f"kpi_savings,district={DISTRICT} {savings} {ts}")
    lines.append(
        f"kpi_co2,district={DISTRICT} avoided_kg=5000.0,electricity_avoided_kg=1000.0,"
        'electricity_factor_id="electricity/FI/location/2024",electricity_factor_g_per_kwh=27.0,heat_avoided_kg=4000.0,'
        f'heat_factor_id="district_heat/FI-Helsinki/location/2021",heat_factor_g_per_kwh=182.0 {period.last_day_ms}'
    )
    return lines


async def write(influx: InfluxV1, lines: list[str]) -> float:
    t0 = time.perf_counter()
    bar = ProgressBar(len(lines), label="writing KPIs", unit="points")
    for i in range(0, len(lines), 20_000):
        await influx.write("\n".join(lines[i : i + 20_000]).encode())
        bar.advance(min(20_000, len(lines) - i))
    bar.close()
    return time.perf_counter() - t0


async def scan(influx: InfluxV1, period: Period) -> None:
    await influx.query(
        f'SELECT "energy_kwh", "revision" FROM "kpi_energy" WHERE "district" = \'{DISTRICT}\''
        f" AND time >= {period.start_ms}ms AND time < {period.end_ms}ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--buildings", type=int, default=1750)
    parser.add_argument("--meters", type=int, default=10)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pdf", action="store_true", help="time the PDF too (headless Chromium)")
    args = parser.parse_args()
    env = Endpoints.from_env()
    database = f"bench_report_{uuid.uuid4().hex[:8]}"
    period = Period.of(LAST - timedelta(days=args.days - 1), LAST, ZONE)
    with tempfile.TemporaryDirectory(prefix="dp-report-bench-") as tmp:
        registry = Path(tmp) / "registry.toml"
        registry.write_text(registry_text(args.buildings, args.meters), encoding="utf-8")

        async def prepare() -> tuple[float, int]:
            async with InfluxV1(InfluxConfig(url=env.influx_url, database=database, timeout=300)) as influx:
                await influx.create_database()
                lines = kpi_lines(args.buildings, args.meters, period)
                return await write(influx, lines), len(lines)

        async def baseline() -> float:
            async with InfluxV1(InfluxConfig(url=env.influx_url, database=database, timeout=300)) as influx:
                t0 = time.perf_counter()
                await scan(influx, period)
                return time.perf_counter() - t0

        write_s, points = asyncio.run(prepare())
        report_args = argparse.ArgumentParser()
        report_cli.add_arguments(report_args)
        out = Path(tmp) / "out"
        formats = "html,json,pdf" if args.pdf else "html,json"
        argv = ["--district", DISTRICT, "--from", period.first.isoformat(), "--to", period.last.isoformat()]
        argv += ["--registry", str(registry), "--influx-url", env.influx_url, "--influx-db", database]
        argv += ["--out", str(out), "--format", formats]
        namespace = report_args.parse_args(argv)
        try:
            scans, reports = [], []
            for _ in range(args.repeat):
                scans.append(asyncio.run(baseline()))
                t0 = time.perf_counter()
                if report_cli.run(namespace) != 0:
                    raise SystemExit("the report failed (its message is above)")
                reports.append(time.perf_counter() - t0)
            doc = json.loads(next(out.glob("*.json")).read_text(encoding="utf-8"))
        finally:

            async def drop() -> None:
                async with InfluxV1(InfluxConfig(url=env.influx_url, database=database)) as influx:
                    await influx.query(f'DROP DATABASE "{database}"')

            asyncio.run(drop())
    report_s, scan_s = statistics.median(reports), statistics.median(scans)
    result = {
        "meters": args.buildings * args.meters,
        "buildings": args.buildings,
        "days": args.days,
        "points_written": points,
        "write_s": round(write_s, 1),
        "report_s": round(report_s, 2),
        "read_every_row_s": round(scan_s, 2),
        "report_vs_read_every_row": round(report_s / scan_s, 2),
        "under_60_s": report_s < 60,
        "electricity_kwh": doc["energy"]["by_carrier_kwh"]["electricity"],
        "savings_buildings": len(doc["savings"]["buildings"]),
        "devices_accounted": len(doc["data_quality"]["devices"]),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""`districtpulse aggregate`: raw readings in InfluxDB -> daily KPI series, recomputed when late data arrives.

Each cycle looks at the last `--days` local days of every district (the allowed lateness). For each day it
asks InfluxDB how many readings it holds per building (one cheap count query); a day is recomputed only when
that count differs from the count its KPIs were computed from, so late or backfilled readings revise exactly
the days they fall in. Results go to two measurements (InfluxQL-readable on 1.x and on 2.x's v1 API):

    kpi_energy,district=..,building=..,carrier=electricity|electricity_export|heat|pv|ev
        energy_kwh, readings, coverage, status="provisional"|"final", revision, computed_at   (time = local midnight)
    kpi_district,district=..
        electricity_import_kwh, electricity_export_kwh, heat_kwh, pv_kwh, ev_kwh, final_energy_kwh,
        self_consumption, self_sufficiency, co2_kg, co2_factor_g_per_kwh, completeness, readings,
        status, revision, computed_at

A day is `final` once its end is older than `--final-after-hours`; before that it is `provisional` and may
be revised (revision + 1 whenever its readings change). Energy comes from the cumulative registers through
`aggregation.interval_energy` (resets, rollovers and glitches handled); an interval counts in the day its
reading closes, and each day's query starts `LOOKBACK` earlier so the first interval after midnight is kept.

Known limit: a correction that overwrites existing points with new values (same count) is not detected;
re-run with `--recompute` for that.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from aggregation import interval_energy
from aggregation.co2 import load_factors
from devices import KINDS, DeviceKind, Registry, demo_registry_path
from devices.endpoints import Endpoints
from devices.registry import DistrictEntry
from ingest.influx import InfluxConfig, InfluxV1

log = logging.getLogger("aggregate")

LOOKBACK_MS = 6 * 3_600_000  # how far before midnight to look for the reading that opens the first interval
LOOKAHEAD_MS = 3_600_000  # readings after midnight that let the kernel tell a glitch from a reset

#: carrier -> (device kind, register field)
CARRIERS: dict[str, tuple[DeviceKind, str]] = {
    "electricity": (DeviceKind.ELECTRICITY_METER, "energy_import"),
    "electricity_export": (DeviceKind.ELECTRICITY_METER, "energy_export"),
    "heat": (DeviceKind.HEAT_METER, "energy"),
    "pv": (DeviceKind.PV_INVERTER, "energy_production"),
    "ev": (DeviceKind.EV_CHARGER, "session_energy"),
}


@dataclass(frozen=True, slots=True)
class DayWindow:
    day: date
    start_ms: int
    end_ms: int


def local_day(zone: ZoneInfo, day: date) -> DayWindow:
    start = datetime.combine(day, datetime.min.time(), zone)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone)
    return DayWindow(day, int(start.timestamp() * 1000), int(end.timestamp() * 1000))


@dataclass(slots=True)
class DayKpis:
    readings: int
    energy: dict[tuple[str, str], float] = field(default_factory=dict)  # (building, carrier) -> kWh
    coverage: dict[tuple[str, str], float] = field(default_factory=dict)


async def count_readings(influx: InfluxV1, district: str, window: DayWindow) -> int:
    """Readings of a district's day in InfluxDB (every raw point has the integer field `seq`)."""
    measurements = ",".join(f'"{k.measurement}"' for k in KINDS.values())
    series = await influx.query(
        f'SELECT count("seq") FROM {measurements} WHERE "district" = \'{district}\''
        f" AND time >= {window.start_ms}ms AND time < {window.end_ms}ms"
    )
    return sum(int(row[1]) for s in series for row in s["values"])


async def compute_day(influx: InfluxV1, registry: Registry, district: str, window: DayWindow) -> DayKpis:
    """Energy per building and carrier for one local day, from the registers."""
    kpis = DayKpis(readings=await count_readings(influx, district, window))
    for building in (b for b, (d, _) in registry.buildings.items() if d.id == district):
        for carrier in CARRIERS:
            kpis.energy[(building, carrier)] = 0.0
            kpis.coverage[(building, carrier)] = 0.0
    for carrier, (kind, register) in CARRIERS.items():
        series = await influx.query(
            f'SELECT "{register}" FROM "{KINDS[kind].measurement}" WHERE "district" = \'{district}\''
            f" AND time >= {window.start_ms - LOOKBACK_MS}ms AND time < {window.end_ms + LOOKAHEAD_MS}ms"
            ' GROUP BY "device"'
        )
        devices_in_carrier: dict[str, int] = {}
        for s in series:
            device = registry.devices.get(s["tags"]["device"])
            if device is None or device.submeter_of is not None:
                continue  # sub-meters are inside their main meter
            rows = [(row[0], row[1]) for row in s["values"] if row[1] is not None]
            if not rows:
                continue
            ts = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            reg = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
            result = interval_energy(ts, reg, max_power_w=device.max_power_w, rollover=device.register_rollover_kwh)
            in_day = (ts >= window.start_ms) & (ts < window.end_ms)
            key = (device.building, carrier)
            kpis.energy[key] += float(np.nansum(result.energy_kwh[in_day]))
            covered = np.isfinite(result.energy_kwh[in_day]).sum()
            kpis.coverage[key] += float(covered)
            devices_in_carrier[device.building] = devices_in_carrier.get(device.building, 0) + 1
        for building, n in devices_in_carrier.items():
            key = (building, carrier)
            kpis.coverage[key] = kpis.coverage[key] / (n * 1440)  # share of minutes with a valid interval
    return kpis


def district_line(
    district: DistrictEntry,
    window: DayWindow,
    kpis: DayKpis,
    *,
    status: str,
    revision: int,
    expected_readings: int,
    computed_at: int,
) -> str:
    def total(carrier: str) -> float:
        return sum(v for (_, c), v in kpis.energy.items() if c == carrier)

    imported, exported, heat, pv, ev = (total(c) for c in ("electricity", "electricity_export", "heat", "pv", "ev"))
    self_used = max(pv - exported, 0.0)
    self_consumption = self_used / pv if pv > 0 else float("nan")
    self_sufficiency = self_used / (imported + self_used) if imported + self_used > 0 else float("nan")
    factors = load_factors()
    grid = factors.find(carrier="electricity", zone=district.grid_zone)
    co2_g = imported * grid.value
    if district.heat_zone is not None:
        co2_g += heat * factors.find(carrier="district_heat", zone=district.heat_zone).value
    fields = {
        "electricity_import_kwh": imported,
        "electricity_export_kwh": exported,
        "heat_kwh": heat,
        "pv_kwh": pv,
        "ev_kwh": ev,
        "final_energy_kwh": imported + heat,
        "self_consumption": self_consumption,
        "self_sufficiency": self_sufficiency,
        "co2_kg": co2_g / 1000,
        "co2_factor_g_per_kwh": grid.value,
        "completeness": kpis.readings / expected_readings if expected_readings else float("nan"),
    }
    body = ",".join(f"{k}={v!r}" for k, v in fields.items() if np.isfinite(v))
    return (
        f'kpi_district,district={district.id} {body},readings={kpis.readings}i,status="{status}",'
        f'revision={revision}i,computed_at={computed_at}i,co2_factor_source="{grid.id}" {window.start_ms}'
    )


def energy_lines(
    district: str, window: DayWindow, kpis: DayKpis, *, status: str, revision: int, computed_at: int
) -> list[str]:
    return [
        f"kpi_energy,district={district},building={building},carrier={carrier} energy_kwh={kwh!r},"
        f'coverage={kpis.coverage[(building, carrier)]!r},readings={kpis.readings}i,status="{status}",'
        f"revision={revision}i,computed_at={computed_at}i {window.start_ms}"
        for (building, carrier), kwh in sorted(kpis.energy.items())
    ]


@dataclass(slots=True)
class Stored:
    readings: int
    revision: int
    status: str


async def stored_state(influx: InfluxV1, district: str, window: DayWindow) -> Stored | None:
    series = await influx.query(
        f'SELECT "readings", "revision", "status" FROM "kpi_district" WHERE "district" = \'{district}\''
        f" AND time = {window.start_ms}ms"
    )
    for s in series:
        for row in s["values"]:
            return Stored(int(row[1]), int(row[2]), str(row[3]))
    return None


@dataclass(slots=True)
class CycleReport:
    recomputed: list[tuple[str, date, int]] = field(default_factory=list)  # (district, day, revision)
    finalised: list[tuple[str, date]] = field(default_factory=list)
    unchanged: int = 0


async def run_cycle(
    influx: InfluxV1,
    registry: Registry,
    *,
    days: int,
    final_after_hours: float,
    now_ms: int,
    expected_interval_s: int = 60,
    recompute: bool = False,
) -> CycleReport:
    """One pass over the lateness window of every district."""
    report = CycleReport()
    for district in registry.districts.values():
        zone = ZoneInfo(district.timezone)
        today = datetime.fromtimestamp(now_ms / 1000, zone).date()
        n_devices = sum(1 for d in registry if d.district == district.id)
        for offset in range(days, -1, -1):
            window = local_day(zone, today - timedelta(days=offset))
            if window.start_ms > now_ms:
                continue
            status = "final" if now_ms >= window.end_ms + final_after_hours * 3_600_000 else "provisional"
            previous = await stored_state(influx, district.id, window)
            count = await count_readings(influx, district.id, window)
            if count == 0 and previous is None:
                continue
            if not recompute and previous is not None and previous.readings == count:
                if previous.status == status:
                    report.unchanged += 1
                    continue
                revision = previous.revision  # same numbers, now final
                report.finalised.append((district.id, window.day))
            else:
                revision = 1 if previous is None else previous.revision + 1
                report.recomputed.append((district.id, window.day, revision))
            kpis = await compute_day(influx, registry, district.id, window)
            expected = n_devices * (window.end_ms - window.start_ms) // (expected_interval_s * 1000)
            lines = energy_lines(district.id, window, kpis, status=status, revision=revision, computed_at=now_ms)
            lines.append(
                district_line(
                    district,
                    window,
                    kpis,
                    status=status,
                    revision=revision,
                    expected_readings=expected,
                    computed_at=now_ms,
                )
            )
            await influx.write("\n".join(lines).encode())
            log.info(
                "kpis written",
                extra={
                    "fields": {
                        "district": district.id,
                        "day": str(window.day),
                        "status": status,
                        "revision": revision,
                        "readings": kpis.readings,
                    }
                },
            )
    return report


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = Endpoints.from_env()
    p.add_argument("--registry", type=Path, default=demo_registry_path())
    p.add_argument("--influx-url", default=env.influx_url)
    p.add_argument("--influx-db", default=env.influx_db)
    p.add_argument("--days", type=int, default=7, help="allowed lateness: local days recomputed when data changes")
    p.add_argument("--final-after-hours", type=float, default=48.0, help="a day is final this long after it ends")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between cycles")
    p.add_argument("--once", action="store_true", help="run one cycle and exit")
    p.add_argument("--recompute", action="store_true", help="recompute every day in the window")


async def _main(args: argparse.Namespace) -> int:
    registry = Registry.load(args.registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with InfluxV1(InfluxConfig(url=args.influx_url, database=args.influx_db)) as influx:
        while True:
            report = await run_cycle(
                influx,
                registry,
                days=args.days,
                final_after_hours=args.final_after_hours,
                now_ms=time.time_ns() // 1_000_000,
                recompute=args.recompute,
            )
            print(
                f"aggregate: recomputed={len(report.recomputed)} finalised={len(report.finalised)} "
                f"unchanged={report.unchanged}",
                flush=True,
            )
            if args.once:
                return 0
            try:
                await asyncio.wait_for(stop.wait(), args.interval)
                return 0
            except TimeoutError:
                continue


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_main(args))

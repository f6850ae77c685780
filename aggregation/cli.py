"""The aggregation room's commands, one module: the jobs on InfluxDB and the analysts' CSV tool.

    districtpulse aggregate   the daily KPI job (`aggregation.jobs.daily`), with the savings job
                              (`aggregation.jobs.savings`) for districts that have retrofits
    districtpulse savings     weather-normalised metered savings (CalTRACK 2.0) from CSV files
                              (`aggregation.savings_cli`: no InfluxDB)

Each command is an `(add_arguments, run)` pair that `districtpulse.cli` imports only when chosen.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from aggregation import savings_cli
from aggregation.jobs.daily import run_cycle
from devices import Registry, demo_registry_path
from devices.endpoints import Endpoints
from devices.secrets import SecretFileError, read_secret
from storage.influx import InfluxConfig, InfluxV1

__all__ = ["Command", "aggregate", "savings"]


class Command(NamedTuple):
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def add_aggregate_arguments(p: argparse.ArgumentParser) -> None:
    env = Endpoints.from_env()
    p.add_argument("--registry", type=Path, default=demo_registry_path())
    p.add_argument("--influx-url", default=env.influx_url)
    p.add_argument("--influx-db", default=env.influx_db)
    p.add_argument("--influx-user", default=env.influx_username, help="default: DP_INFLUX_USERNAME")
    p.add_argument(
        "--influx-password-file",
        type=Path,
        default=env.influx_password_file,
        help="the password in a file only you can read (default: DP_INFLUX_PASSWORD_FILE); never on the command line",
    )
    p.add_argument("--days", type=int, default=7, help="allowed lateness: local days recomputed when data changes")
    p.add_argument("--final-after-hours", type=float, default=48.0, help="a day is final this long after it ends")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between cycles")
    p.add_argument("--once", action="store_true", help="run one cycle and exit")
    p.add_argument("--recompute", action="store_true", help="recompute every day in the window")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr for long backfills (default: when stderr is a terminal)",
    )


async def _main(args: argparse.Namespace) -> int:
    registry = Registry.load(args.registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    password = read_secret(args.influx_password_file, "--influx-password-file") if args.influx_password_file else None
    config = InfluxConfig(url=args.influx_url, database=args.influx_db, username=args.influx_user, password=password)
    async with InfluxV1(config) as influx:
        while True:
            report = await run_cycle(
                influx,
                registry,
                days=args.days,
                final_after_hours=args.final_after_hours,
                now_ms=time.time_ns() // 1_000_000,
                recompute=args.recompute,
                progress=args.progress,
            )
            print(
                f"aggregate: recomputed={len(report.recomputed)} finalised={len(report.finalised)} "
                f"unchanged={report.unchanged} backfilled={len(report.backfilled)} savings={len(report.savings)}",
                flush=True,
            )
            if args.once:
                return 0
            try:
                await asyncio.wait_for(stop.wait(), args.interval)
                return 0
            except TimeoutError:
                continue


def run_aggregate(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_main(args))
    except SecretFileError as exc:
        print(f"aggregate: {exc}", file=sys.stderr)
        return 2


aggregate = Command(add_aggregate_arguments, run_aggregate)
savings = Command(savings_cli.add_arguments, savings_cli.run)

"""`districtpulse simulate`: simulate a district (or replay recorded meter data) and publish it as gateways do.

    districtpulse simulate --days 3 --seed 7 --faults late,duplicate,nan --truth truth.json
    districtpulse simulate --dry-run --out day.jsonl          # the exact topic + payload of every message
    districtpulse simulate --scale scalable-cities --connections 4 --time-limit 10 --topic-root load/v1
    districtpulse simulate --replay meters.csv --speed 3600   # recorded data, an hour a second

Faults (`--faults a,b,c`, `name=N` for N of them, `all`): disconnect, duplicate, out_of_order, late, malformed,
counter_glitch, rollover, meter_replacement, clock_skew, unsynced_boot, nan, out_of_range.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from pathlib import Path

from devices import Registry, RegistryError, demo_registry_path, logs
from devices.endpoints import Endpoints
from gateway.errors import GatewayError
from simulators.config import FAULT_NAMES, Cadence, FaultConfig, SimConfig
from simulators.district import yesterday
from simulators.engine import GatewayEvent, Message, Simulation
from simulators.fleets import FLEET_CADENCES, FLEETS, registry_toml
from simulators.progress import ProgressBar
from simulators.publish import PublishReport, publish, write_jsonl
from simulators.status import StatusEvent

log = logging.getLogger("simulate")
#: `gateway.service.Timing.heartbeat_interval_s`: what the dashboard's "late" rule expects of a live gateway.
REAL_HEARTBEAT_S = 60


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = Endpoints.from_env()
    p.add_argument("--registry", type=Path, help="registry TOML (default: the demo district)")
    p.add_argument("--scale", choices=sorted(FLEETS), help="simulate a named fleet instead of a registry")
    p.add_argument("--district", help="district id (with --scale: the id to give the fleet; default 'sc')")
    p.add_argument("--day", type=date.fromisoformat, help="first local day (default: --days days before today)")
    p.add_argument("--days", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--resolution", type=int, help="seconds between readings, 1..3600 (default 60)")
    p.add_argument("--publish-interval", type=int, help="seconds between a device's batches (default 900)")
    p.add_argument("--faults", default="", help=f"comma-separated: {', '.join(FAULT_NAMES)}, all; name=N for N")
    p.add_argument("--bad-readings", type=int, help="NaN/out-of-range readings (default 5 without --faults)")
    p.add_argument("--stagger", action="store_true", help="spread each device's publish time in its interval")
    p.add_argument("--speed", type=float, default=0.0, help="1 = real time, N = N x faster, 0 = flat out (default)")
    p.add_argument("--connections", type=int, help="share N connections among all gateways (default: one each)")
    p.add_argument("--time-limit", type=float, help="stop publishing after this many seconds")
    p.add_argument("--topic-root", help="publish under this root instead of dp/v1 (load tests)")
    p.add_argument("--progress", action="store_true", help="a progress bar on stderr")
    p.add_argument("--mqtt-host", default=env.mqtt_host)
    p.add_argument("--mqtt-port", type=int, default=env.mqtt_port)
    p.add_argument("--dry-run", action="store_true", help="write messages to --out instead of publishing")
    p.add_argument("--out", type=Path, help="with --dry-run: the JSON-lines file to write")
    p.add_argument("--truth", type=Path, help="write the ground truth (JSON) here")
    p.add_argument("--truth-points", action="store_true", help="include every expected point in the truth")
    p.add_argument("--write-registry", type=Path, help="write the simulated registry as TOML (for --scale)")
    replay = p.add_argument_group("replay of recorded meter data (see simulators/replay.py for the formats)")
    replay.add_argument("--replay", type=Path, nargs="+", help="CSV file(s) to replay instead of simulating")
    replay.add_argument("--format", choices=("long", "wide", "files"), default="long")
    replay.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="COLUMN=DEVICE:METRIC[:interval]",
        help="wide/files: where a column (wide) or file name (files) goes; ':interval' accumulates per-interval "
        "energy into the cumulative register",
    )
    replay.add_argument("--tz", default="UTC", help="time zone of naive timestamps in the CSV")


def _registry(args: argparse.Namespace) -> Registry:
    if args.scale:
        registry = FLEETS[args.scale](args.district or "sc")
        if args.write_registry:
            args.write_registry.write_text(registry_toml(registry), encoding="utf-8")
        return registry
    return Registry.load(args.registry or demo_registry_path())


def _config(args: argparse.Namespace, registry: Registry) -> SimConfig:
    district = next(iter(registry.districts.values()))
    start = args.day or yesterday(district.timezone) - timedelta(days=args.days - 1)
    bad = args.bad_readings if args.bad_readings is not None else (0 if args.faults or args.scale else 5)
    faults = FaultConfig.parse(args.faults, days=args.days)
    counts = dict(faults.counts)
    if bad:
        counts["nan"] = counts.get("nan", 0) + (bad + 1) // 2
        counts["out_of_range"] = counts.get("out_of_range", 0) + bad // 2
    base = Cadence(args.resolution or 60, args.publish_interval or 900)
    cadences = dict(FLEET_CADENCES.get(args.scale or "", {}))
    if args.resolution or args.publish_interval:
        cadences = {}
    return SimConfig(
        start=start,
        days=args.days,
        seed=args.seed,
        cadence=base,
        cadences=cadences,
        faults=FaultConfig({k: v for k, v in counts.items() if v}),
        stagger=args.stagger or bool(args.scale),
        truth_points=args.truth_points,
        heartbeat_s=heartbeat_s(args.speed, base.publish_interval_s),
    )


def heartbeat_s(speed: float, publish_interval_s: int) -> int | None:
    """Simulated seconds between heartbeats: a real gateway's 60 s of wall-clock time at this speed, at most
    one publish interval; flat out (speed 0) one per publish interval.

    The dashboard calls a gateway late after a few heartbeat intervals of silence (wall clock), so a paced run
    must keep the wall-clock gap at a real gateway's, whatever the speed; faster than that, one per interval
    is all that a simulated day needs and keeps the status traffic small.
    """
    if speed <= 0:
        return None
    return max(1, min(publish_interval_s, round(REAL_HEARTBEAT_S * speed)))


def run(args: argparse.Namespace) -> int:
    if args.dry_run and args.out is None:
        print("simulate: --dry-run needs --out FILE", file=sys.stderr)
        return 2
    try:
        registry = _registry(args)
        if args.replay:
            from simulators.replay import replay_cli

            return replay_cli(args, registry)
        config = _config(args, registry)
    except (RegistryError, ValueError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    sim = Simulation(registry, config, district=args.district if args.district in registry.districts else None)
    items = sim.stream()
    bar = ProgressBar(sim.end_ms - sim.start_ms, label="simulate") if args.progress else None
    if args.dry_run:
        messages, readings = write_jsonl(_with_progress(items, bar, sim.start_ms), args.out)
        report = PublishReport(messages, readings, 0.0, 0)
    else:
        try:
            report = publish(
                _with_progress(items, bar, sim.start_ms),
                host=args.mqtt_host,
                port=args.mqtt_port,
                connections=args.connections,
                client_prefix=f"dp-sim-{sim.district.id}",
                speed=args.speed,
                topic_root=args.topic_root,
                time_limit_s=args.time_limit,
            )
        except (GatewayError, TimeoutError) as exc:
            print(f"simulate: {exc}", file=sys.stderr)
            return 1
    if bar is not None:
        bar.close()
    if args.truth:
        if report.stopped_early:
            print("simulate: stopped by --time-limit: no truth written (it would not match)", file=sys.stderr)
        else:
            sim.truth.write(args.truth)
    log.info("simulated", extra={"fields": {"messages": report.messages, "readings": report.readings}})
    line = (
        f"simulate: messages={report.messages} readings={report.readings} bad={sim.truth.bad_readings} "
        f"days={config.days} start={config.start}"
    )
    if not args.dry_run:
        line += (
            f" seconds={report.seconds:.2f} msg_per_s={report.messages_per_s:.0f}"
            f" readings_per_s={report.readings_per_s:.0f} connections={report.connections}"
            f" statuses={report.statuses}"
        )
    print(line)
    return 0


def _with_progress(
    items: Iterable[Message | GatewayEvent | StatusEvent], bar: ProgressBar | None, start_ms: int
) -> Iterator[Message | GatewayEvent | StatusEvent]:
    count = 0
    for item in items:
        if bar is not None and isinstance(item, Message):
            count += 1
            bar.update(item.deliver_ms - start_ms, count)
        yield item


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulators", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    logs.setup()
    return run(parser.parse_args(argv))

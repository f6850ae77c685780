"""`districtpulse simulate`: simulate a district day and publish it as its gateways would."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from datetime import date
from pathlib import Path

from devices import Registry, RegistryError, demo_registry_path, logs
from devices.endpoints import Endpoints
from gateway.errors import GatewayError
from simulators.district import DistrictSimulator, yesterday
from simulators.publish import publish_messages, write_jsonl

log = logging.getLogger("simulate")


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = Endpoints.from_env()
    p.add_argument("--registry", type=Path, default=demo_registry_path())
    p.add_argument("--day", type=date.fromisoformat, help="local day to simulate (default: yesterday)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--bad-readings", type=int, default=5, help="readings made invalid on purpose (NaN, range)")
    p.add_argument("--mqtt-host", default=env.mqtt_host)
    p.add_argument("--mqtt-port", type=int, default=env.mqtt_port)
    p.add_argument("--dry-run", action="store_true", help="write messages to --out instead of publishing")
    p.add_argument("--out", type=Path, help="with --dry-run: the JSON-lines file to write")
    p.add_argument("--truth", type=Path, help="write the ground truth (JSON) here")


def run(args: argparse.Namespace) -> int:
    try:
        registry = Registry.load(args.registry)
    except RegistryError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    district = next(iter(registry.districts.values()))
    sim = DistrictSimulator(
        registry, args.day or yesterday(district.timezone), seed=args.seed, inject_bad_readings=args.bad_readings
    )
    if args.dry_run:
        if args.out is None:
            print("simulate: --dry-run needs --out FILE", file=sys.stderr)
            return 2
        messages, readings = write_jsonl(sim.messages(), args.out)
    else:
        try:
            messages, readings = publish_messages(sim.messages(), registry, host=args.mqtt_host, port=args.mqtt_port)
        except GatewayError as exc:
            print(f"simulate: {exc}", file=sys.stderr)
            return 1
    if args.truth:
        args.truth.write_text(json.dumps(asdict(sim.truth) | {"day": sim.day.isoformat()}, indent=1, default=str))
    log.info("simulated", extra={"fields": {"messages": messages, "readings": readings, "day": sim.day.isoformat()}})
    print(f"simulate: messages={messages} readings={readings} bad={sim.truth.bad_readings} day={sim.day}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators", description=__doc__)
    add_arguments(parser)
    logs.setup()
    return run(parser.parse_args(argv))

"""`districtpulse services up|down|status` (also `python -m districtpulse.services`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from districtpulse.config import Endpoints
from districtpulse.services.layout import DEFAULT_MQTT_TLS_PORT, SecureBroker, ServiceError
from districtpulse.services.manage import down, format_status, status, up
from districtpulse.services.secure import DEFAULT_INGEST_CONSUMERS

STATUS_EXIT_NOT_RUNNING = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `districtpulse services` (the main CLI adds them to its subparser)."""
    parser.add_argument(
        "action",
        choices=("up", "down", "status"),
        help="up: install if needed, start and wait until ready; down: stop (data is kept); "
        f"status: show them (exit code {STATUS_EXIT_NOT_RUNNING} if not both running)",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="up: fail instead of installing missing mosquitto/influxdb with apt-get",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="up/status: Mosquitto with TLS only on DP_MQTT_TLS_PORT "
        f"(default {DEFAULT_MQTT_TLS_PORT}), client certificates, passwords and per-gateway topic ACLs "
        "generated from the registry under DP_STATE_DIR/mosquitto/secure",
    )
    parser.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="with --secure: the registry whose gateways get credentials (default: the demo registry)",
    )
    parser.add_argument(
        "--ingest-consumers",
        type=int,
        default=DEFAULT_INGEST_CONSUMERS,
        metavar="N",
        help="with --secure: ingest identities to make (_ingest, _ingest-2, ...), one per consumer process "
        f"(a client id is its username in secure mode; default {DEFAULT_INGEST_CONSUMERS})",
    )


def run(args: argparse.Namespace) -> int:
    """Run the parsed `services` command against `Endpoints.from_env()`; returns the exit code."""
    endpoints = Endpoints.from_env()
    secure = None
    if getattr(args, "secure", False):
        consumers = getattr(args, "ingest_consumers", DEFAULT_INGEST_CONSUMERS)
        secure = SecureBroker.from_env(registry=getattr(args, "registry", None), ingest_consumers=consumers)
    try:
        if args.action == "up":
            up(endpoints, install=not getattr(args, "no_install", False), secure=secure)
        elif args.action == "down":
            down(endpoints)
            return 0
        statuses = status(endpoints, secure=secure)
    except ServiceError as exc:
        print(f"districtpulse services {args.action}: {exc}", file=sys.stderr)
        return 1
    print(format_status(statuses))
    return 0 if all(s.running for s in statuses) else STATUS_EXIT_NOT_RUNNING


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m districtpulse.services",
        description="The project's own Mosquitto and InfluxDB, on 127.0.0.1, with state in DP_STATE_DIR.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))

"""`districtpulse gateway`: publish readings as an edge gateway does.

The walking skeleton's gateway replays a recorded message file (`--replay FILE.jsonl`, one
`{"topic": ..., "payload": ...}` per line, as written by `districtpulse simulate --dry-run --out`) through
the QoS 1 publisher. The durable spool and the device adapters (Modbus, OCPP, MQTT sensors) come with the
gateway issue.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from devices import logs
from devices.endpoints import Endpoints
from gateway.errors import GatewayError
from gateway.publisher import BrokerConfig, Publisher

log = logging.getLogger("gateway")


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = Endpoints.from_env()
    p.add_argument("--replay", type=Path, required=True, help="message file to publish (JSON lines)")
    p.add_argument("--mqtt-host", default=env.mqtt_host)
    p.add_argument("--mqtt-port", type=int, default=env.mqtt_port)
    p.add_argument("--client-id", default="districtpulse-gateway")


def run(args: argparse.Namespace) -> int:
    published = 0
    try:
        with (
            args.replay.open(encoding="utf-8") as lines,
            Publisher(BrokerConfig(args.mqtt_host, args.mqtt_port, client_id=args.client_id)) as pub,
        ):
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                    topic, payload = str(doc["topic"]), str(doc["payload"]).encode()
                except (ValueError, KeyError, TypeError) as exc:
                    print(f"gateway: {args.replay}:{number}: not a message line: {exc}", file=sys.stderr)
                    return 2
                pub.publish(topic, payload)
                published += 1
    except (GatewayError, OSError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    log.info("replayed", extra={"fields": {"messages": published, "file": str(args.replay)}})
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    add_arguments(parser)
    logs.setup()
    return run(parser.parse_args(argv))

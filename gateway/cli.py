"""`districtpulse gateway`: run an edge gateway.

    districtpulse gateway --config gateway.toml     the service: adapters -> durable spool -> MQTT (QoS 1)
    districtpulse gateway --config gateway.toml --check
                                                    validate the configuration, print a summary, exit
    districtpulse gateway --replay FILE.jsonl       publish a recorded message file directly (no spool), as
                                                    written by `districtpulse simulate --dry-run --out`

The service runs until SIGTERM or SIGINT (it then commits the spool, waits briefly for the broker to
acknowledge what is in flight, publishes its offline status and exits 0); with `--exit-when-idle` it also
exits once every adapter has finished and every reading has been acknowledged (a file replay through the
spool). It exits 1 if an adapter fails and 2 on a configuration error.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from devices import logs
from devices.endpoints import Endpoints
from gateway.adapters import build_adapter
from gateway.clock import Clock
from gateway.config import GatewayConfig
from gateway.errors import ConfigError, GatewayError
from gateway.publisher import BrokerConfig, Publisher, Will
from gateway.service import Gateway, OnAck, PublisherLike, Subscriptions, Timing
from gateway.spool import Spool

log = logging.getLogger("gateway")


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = Endpoints.from_env()
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--config", type=Path, help="gateway.toml: run the gateway service")
    mode.add_argument("--replay", type=Path, help="message file to publish directly (JSON lines)")
    p.add_argument("--check", action="store_true", help="with --config: validate it, print a summary, exit")
    p.add_argument("--exit-when-idle", action="store_true", help="exit once adapters are done and all is acked")
    p.add_argument("--mqtt-host", default=None, help=f"overrides the config (default {env.mqtt_host})")
    p.add_argument("--mqtt-port", type=int, default=None, help=f"overrides the config (default {env.mqtt_port})")
    p.add_argument("--client-id", default=None)


def build_gateway(
    config: GatewayConfig,
    *,
    clock: Clock | None = None,
    host: str | None = None,
    port: int | None = None,
    client_id: str | None = None,
) -> Gateway:
    """Everything `--config` runs, wired together (also what the tests and the benchmark start)."""
    clock = clock or Clock()
    spool_cfg = config.spool
    spool = Spool(
        config.spool_path,
        limits=spool_cfg.limits,
        synchronous=spool_cfg.synchronous,
        now_ms=clock.now_ms,
        synced=lambda: clock.synced,
        max_buffered=spool_cfg.max_buffered,
    )
    try:
        adapters = {a.name or a.type: build_adapter(a, config.adapter_context()) for a in config.adapters}
    except BaseException:
        spool.close()
        raise
    mqtt = config.mqtt
    broker = BrokerConfig(
        host or mqtt.host,
        port or mqtt.port,
        client_id=client_id or config.client_id,
        keepalive=mqtt.keepalive,
        username=mqtt.username,
        password=config.password(),
        tls=config.tls(),
        reconnect_min_s=mqtt.reconnect_min_s,
        reconnect_max_s=mqtt.reconnect_max_s,
    )
    g = config.gateway
    timing = Timing(
        commit_interval_s=spool_cfg.commit_interval_ms / 1000,
        publish_interval_s=g.publish_interval_s,
        heartbeat_interval_s=g.heartbeat_interval_s,
        clock_check_interval_s=g.clock_check_interval_s,
        age_check_interval_s=g.age_check_interval_s,
        drain_timeout_s=g.drain_timeout_s,
        max_batch_readings=g.max_batch_readings,
        max_inflight_bytes=mqtt.max_inflight_bytes,
        max_message_bytes=mqtt.max_message_bytes,
        delivery=config.delivery.policy,
    )

    def make_publisher(on_ack: OnAck, will: Will, subscriptions: Subscriptions) -> PublisherLike:
        return Publisher(
            broker,
            max_inflight=mqtt.max_inflight,
            on_ack=on_ack,
            will=will,
            drain_timeout=g.drain_timeout_s,
            subscriptions=subscriptions,
        )

    return Gateway(g.id, config.district, spool, adapters, make_publisher, clock, timing)


def _summary(config: GatewayConfig) -> dict[str, object]:
    devices = {}
    for a in config.adapters:
        devices[a.name or a.type] = len(build_adapter(a, config.adapter_context()).devices())
    return {
        "gateway": config.gateway.id,
        "district": config.district,
        "spool": str(config.spool_path),
        "broker": f"{config.mqtt.host}:{config.mqtt.port}",
        "client_id": config.client_id,
        "adapters": devices,
    }


def run_service(args: argparse.Namespace) -> int:
    try:
        config = GatewayConfig.load(args.config)
        if args.check:
            print(json.dumps(_summary(config)))
            return 0
        gateway = build_gateway(config, host=args.mqtt_host, port=args.mqtt_port, client_id=args.client_id)
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "starting",
        extra={"fields": {"gateway": config.gateway.id, "district": config.district, "version": gateway.version}},
    )
    return gateway.run(stop, exit_when_idle=args.exit_when_idle)


def run_replay(args: argparse.Namespace) -> int:
    env = Endpoints.from_env()
    host, port = args.mqtt_host or env.mqtt_host, args.mqtt_port or env.mqtt_port
    published = 0
    try:
        with (
            args.replay.open(encoding="utf-8") as lines,
            Publisher(BrokerConfig(host, port, client_id=args.client_id or "districtpulse-gateway")) as pub,
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


def run(args: argparse.Namespace) -> int:
    if args.config is not None:
        return run_service(args)
    return run_replay(args)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    add_arguments(parser)
    logs.setup()
    return run(parser.parse_args(argv))

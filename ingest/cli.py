"""`districtpulse ingest`: consume readings from MQTT into InfluxDB until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from devices import Registry, RegistryError, demo_registry_path
from devices.endpoints import Endpoints
from ingest.influx import InfluxConfig
from ingest.mqtt import MqttConfig
from ingest.pipeline import IngestSettings, Pipeline

log = logging.getLogger("ingest")


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = Endpoints.from_env()
    p.add_argument("--registry", type=Path, default=demo_registry_path(), help="device registry (TOML)")
    p.add_argument("--mqtt-host", default=env.mqtt_host)
    p.add_argument("--mqtt-port", type=int, default=env.mqtt_port)
    p.add_argument("--client-id", default="districtpulse-ingest", help="fixed: the broker keeps its session")
    p.add_argument("--topic", action="append", help="subscription filter (repeatable); default all readings")
    p.add_argument("--influx-url", default=env.influx_url)
    p.add_argument("--influx-db", default=env.influx_db)
    p.add_argument(
        "--quarantine", type=Path, default=env.state_dir / "ingest" / "quarantine.sqlite", help="quarantine file"
    )
    p.add_argument("--writers", type=int, default=2)
    p.add_argument("--batch-readings", type=int, default=5000)
    p.add_argument("--check", action="store_true", help="validate the configuration and exit")
    p.add_argument("--ready-file", type=Path, help="create this file once subscribed (for scripts and tests)")


def settings_from(args: argparse.Namespace) -> IngestSettings:
    topics = tuple(args.topic) if args.topic else MqttConfig().topics
    return IngestSettings(
        registry=args.registry,
        quarantine=args.quarantine,
        mqtt=MqttConfig(
            host=args.mqtt_host,
            port=args.mqtt_port,
            client_id=args.client_id,
            topics=topics,
            subscriptions_file=args.quarantine.parent / f"subscriptions-{args.client_id}.json",
        ),
        influx=InfluxConfig(url=args.influx_url, database=args.influx_db),
        writers=args.writers,
        batch_readings=args.batch_readings,
    )


async def _main(settings: IngestSettings, registry: Registry, ready_file: Path | None = None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pipeline = Pipeline(settings, registry)

    async def report() -> None:
        while not stop.is_set():
            await asyncio.sleep(10)
            log.info("progress", extra={"fields": pipeline.stats.as_dict()})

    async def announce_ready() -> None:
        await pipeline.source.subscribed.wait()
        log.info("subscribed", extra={"fields": {"topics": list(settings.mqtt.topics)}})
        if ready_file is not None:
            await asyncio.to_thread(ready_file.write_text, "ready\n")

    reporter = asyncio.create_task(report())
    announcer = asyncio.create_task(announce_ready())
    try:
        stats = await pipeline.run(stop)
    finally:
        reporter.cancel()
        announcer.cancel()
    log.info("stopped", extra={"fields": stats.as_dict()})
    return 0


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    try:
        registry = Registry.load(settings.registry)
    except RegistryError as exc:
        print(f"ingest: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(
            json.dumps(
                {
                    "ok": True,
                    "devices": len(registry),
                    "mqtt": f"{args.mqtt_host}:{args.mqtt_port}",
                    "influx": args.influx_url,
                    "database": args.influx_db,
                }
            )
        )
        return 0
    return asyncio.run(_main(settings, registry, args.ready_file))


def main(argv: list[str]) -> int:
    """`python -m ingest`: the same as `districtpulse ingest`."""
    from devices import logs

    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__)
    add_arguments(parser)
    logs.setup()
    return run(parser.parse_args(argv))

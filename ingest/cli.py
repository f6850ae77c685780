"""`districtpulse ingest`: consume readings from MQTT into InfluxDB until SIGTERM or SIGINT.

Configuration: `--config ingest.toml` and `DP_INGEST_*` variables (see `ingest.settings`); the flags below
override both. `--check` validates the configuration and the registry, prints the effective configuration
as JSON (secrets masked) and exits: 0 if valid, 2 if not.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from devices import Registry, RegistryError
from ingest.metrics import IngestMetrics, serve_metrics
from ingest.pipeline import IngestStats, Pipeline
from ingest.settings import IngestConfig
from storage.errors import QuarantineUnusable
from storage.writers import open_writer

log = logging.getLogger("ingest")

# flag dest -> path in IngestConfig
_FLAGS: dict[str, tuple[str, ...]] = {
    "registry": ("registry",),
    "quarantine": ("quarantine",),
    "mqtt_host": ("mqtt", "host"),
    "mqtt_port": ("mqtt", "port"),
    "client_id": ("mqtt", "client_id"),
    "topic": ("mqtt", "topics"),
    "receive_maximum": ("mqtt", "receive_maximum"),
    "session_expiry": ("mqtt", "session_expiry_s"),
    "influx_url": ("influx", "url"),
    "influx_db": ("influx", "database"),
    "influx_version": ("influx", "version"),
    "writers": ("writers",),
    "batch_readings": ("batch_readings",),
    "max_inflight_readings": ("max_inflight_readings",),
    "drain_timeout": ("drain_timeout_s",),
    "metrics_port": ("metrics", "port"),
    "confirm": ("confirm",),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML configuration file (see ingest/ingest.example.toml)")
    p.add_argument("--registry", type=Path, help="device registry (TOML)")
    p.add_argument("--mqtt-host")
    p.add_argument("--mqtt-port", type=int)
    p.add_argument("--client-id", help="fixed: the broker keeps its session")
    p.add_argument("--topic", action="append", help="subscription filter (repeatable); default all readings")
    p.add_argument("--influx-url")
    p.add_argument("--influx-db")
    p.add_argument("--influx-version", choices=["auto", "1", "2"])
    p.add_argument("--quarantine", type=Path, help="quarantine file")
    p.add_argument("--writers", type=int)
    p.add_argument("--batch-readings", type=int)
    p.add_argument("--max-inflight-readings", type=int, help="readings held until acknowledged, at most")
    p.add_argument("--receive-maximum", type=int, help="MQTT 5 unacknowledged messages at most")
    p.add_argument("--session-expiry", type=int, help="seconds the broker keeps the session")
    p.add_argument("--drain-timeout", type=float, help="seconds to drain after SIGTERM")
    p.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (0: any free port)")
    p.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    p.add_argument(
        "--no-confirm",
        dest="confirm",
        action="store_false",
        default=None,
        help="publish no storage confirmations (only where no gateway waits for them: see the README)",
    )
    p.add_argument("--check", action="store_true", help="validate the configuration and exit")
    p.add_argument("--ready-file", type=Path, help="create this file once subscribed (for scripts and tests)")


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that were given, as a nested dict for IngestConfig."""
    out: dict[str, Any] = {}
    for dest, path in _FLAGS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if dest == "topic":
            value = tuple(value)
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    if getattr(args, "no_metrics", False):
        out.setdefault("metrics", {})["enabled"] = False
    return out


def load_config(args: argparse.Namespace) -> IngestConfig:
    return IngestConfig.load(args.config, **overrides_from(args))


async def _main(config: IngestConfig, registry: Registry, ready_file: Path | None = None) -> int:
    settings = config.runtime()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stats = IngestStats()
    metrics = IngestMetrics(stats)
    writer = await open_writer(settings.influx)
    pipeline = Pipeline(settings, registry, stats=stats, observer=metrics, writer=writer)
    metrics.attach(pipeline.source, pipeline.quarantine)
    if not settings.confirm:
        log.warning("storage confirmations are off: gateways that wait for them keep and resend every reading")
    server = None
    ready: dict[str, object] = {"ready": True}
    if config.metrics.enabled:
        try:
            server, _ = serve_metrics(metrics, config.metrics.host, config.metrics.port)
            ready["metrics_port"] = server.server_port
            log.info("metrics on http://%s:%d/metrics", config.metrics.host, server.server_port)
        except OSError as exc:  # keep ingesting: losing data over a busy metrics port would be worse
            log.error("cannot serve metrics on %s:%d: %s", config.metrics.host, config.metrics.port, exc)

    async def report() -> None:
        while not stop.is_set():
            await asyncio.sleep(10)
            log.info("progress", extra={"fields": stats.as_dict()})

    async def announce_ready() -> None:
        await pipeline.source.subscribed.wait()
        ready["subscribed_at"] = time.time()  # Unix time: what a benchmark times the drain of a backlog from
        log.info("subscribed", extra={"fields": {"topics": list(settings.mqtt.topics)}})
        if ready_file is not None:
            tmp = ready_file.with_name(ready_file.name + ".tmp")
            await asyncio.to_thread(tmp.write_text, json.dumps(ready) + "\n")
            await asyncio.to_thread(tmp.replace, ready_file)

    reporter = asyncio.create_task(report())
    announcer = asyncio.create_task(announce_ready())
    try:
        await pipeline.run(stop)
    finally:
        reporter.cancel()
        announcer.cancel()
        if server is not None:
            server.shutdown()
            server.server_close()
    log.info("stopped", extra={"fields": stats.as_dict()})
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args)
        registry = Registry.load(config.registry)
    except (ValidationError, RegistryError, FileNotFoundError, ValueError) as exc:
        print(f"ingest: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(json.dumps({"ok": True, "devices": len(registry), "config": config.summary()}))
        return 0
    _tune_gc()
    try:
        return asyncio.run(_main(config, registry, args.ready_file))
    except QuarantineUnusable as exc:
        print(f"ingest: {exc}", file=sys.stderr)
        return 2


def _tune_gc() -> None:
    """Every parsed payload is a few hundred small dicts, freed by reference counting as soon as its lines are
    built; with the default threshold (700) they set off a young collection every few messages, which also
    walks the registry and the modules (about 4 % of ingest's CPU). Freeze what startup made (it lives as long as
    the process) and collect the young generation less often: cycles are rare here, and a collection still
    runs every 50,000 net allocations, so the memory bound is unchanged."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def main(argv: list[str]) -> int:
    """`python -m ingest`: the same as `districtpulse ingest`."""
    from devices import logs

    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__)
    add_arguments(parser)
    logs.setup()
    return run(parser.parse_args(argv))

"""`districtpulse quarantine list|replay`: inspect quarantined readings, and store the ones that pass now.

`replay` re-validates every quarantined message against the *current* registry (and the current clock for
the future-timestamp check), writes the readings that now pass to InfluxDB and removes their rows; the
typical case is a device that reported before it was added to the registry (`unknown_device`). Readings
that still fail stay, and failures with a new reason are added as new rows. A payload truncated at the
quarantine's cap cannot be replayed and is reported, never guessed at. Replaying twice writes the same
points again (same tags and timestamps), so it is safe to repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import ValidationError

from devices import Registry, RegistryError, validate_message
from ingest.errors import SinkRejected, SinkUnavailable
from ingest.influx import Writer
from ingest.lineprotocol import encode_readings, series_key
from ingest.quarantine import Quarantine, QuarantineEntry, QuarantineRow, now_ms
from ingest.settings import IngestConfig
from ingest.writers import open_writer


@dataclass(slots=True)
class ReplayResult:
    rows_replayed: int = 0
    readings_written: int = 0
    rows_still_rejected: int = 0
    rows_truncated: int = 0
    rows_write_refused: int = 0


def _first_seq(payload: bytes) -> int:
    return int(json.loads(payload)["seq"][0])


async def replay(
    quarantine: Quarantine, registry: Registry, writer: Writer, *, reason: str | None = None, dry_run: bool = False
) -> ReplayResult:
    """Re-validate quarantined messages, write what passes now, remove the rows it resolves."""
    result = ReplayResult()
    groups: dict[tuple[str, bytes], list[QuarantineRow]] = defaultdict(list)
    for row in quarantine.rows(reason=reason):
        if row.payload_truncated:
            result.rows_truncated += 1
        else:
            groups[(row.topic, row.payload)].append(row)
    for (topic, payload), rows in groups.items():
        now = now_ms()
        checked = validate_message(topic, payload, registry, now_ms=now)
        device = checked.device
        if device is None or not checked.good:
            result.rows_still_rejected += len(rows)
            continue
        first = _first_seq(payload)
        good = {seq - first: (reading, seq) for reading, seq in zip(checked.good, checked.seqs, strict=True)}
        resolved = [r for r in rows if r.reading_index is None or r.reading_index in good]
        result.rows_still_rejected += len(rows) - len(resolved)
        if not resolved:
            continue
        wanted = sorted(
            good
            if any(r.reading_index is None for r in resolved)
            else {r.reading_index for r in resolved if r.reading_index is not None}
        )
        lines = encode_readings(series_key(device), [good[i][0] for i in wanted], [good[i][1] for i in wanted])
        if dry_run:
            result.rows_replayed += len(resolved)
            result.readings_written += len(lines)
            continue
        try:
            await writer.write("\n".join(lines).encode())
        except SinkRejected:
            result.rows_write_refused += len(resolved)
            continue
        if any(r.reading_index is None for r in resolved) and checked.rejected:
            # the message passes now except for some readings: those keep a row, under today's reason
            quarantine.add(QuarantineEntry.of(topic, device.id, r, payload, now) for r in checked.rejected)
        quarantine.delete(r.id for r in resolved)
        result.rows_replayed += len(resolved)
        result.readings_written += len(lines)
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_text in (
        ("list", "show quarantined readings, oldest first"),
        ("replay", "re-validate against the current registry and store what passes"),
    ):
        q = sub.add_parser(name, help=help_text, description=help_text)
        q.add_argument("--config", type=Path, help="the ingest TOML configuration")
        q.add_argument("--registry", type=Path)
        q.add_argument("--quarantine", type=Path)
        q.add_argument("--reason", help="only rows with this reason code")
        if name == "list":
            q.add_argument("--limit", type=int, default=50)
            q.add_argument("--json", action="store_true", help="one JSON object per row")
        else:
            q.add_argument("--influx-url")
            q.add_argument("--influx-db")
            q.add_argument("--influx-version", choices=["auto", "1", "2"])
            q.add_argument("--dry-run", action="store_true", help="count what would be stored, change nothing")


def _config(args: argparse.Namespace) -> IngestConfig:
    overrides: dict[str, object] = {}
    for flag, key in (("registry", "registry"), ("quarantine", "quarantine")):
        if getattr(args, flag, None) is not None:
            overrides[key] = getattr(args, flag)
    influx = {
        key: getattr(args, flag)
        for flag, key in (("influx_url", "url"), ("influx_db", "database"), ("influx_version", "version"))
        if getattr(args, flag, None) is not None
    }
    if influx:
        overrides["influx"] = influx
    return IngestConfig.load(args.config, **overrides)


def _list(quarantine: Quarantine, args: argparse.Namespace) -> int:
    rows = quarantine.rows(reason=args.reason, limit=args.limit)
    for row in rows:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row.received_ms / 1000))
        if args.json:
            doc = asdict(row) | {"payload": row.payload.decode(errors="replace")[:2000], "received": when}
            print(json.dumps(doc))
        else:
            index = "-" if row.reading_index is None else row.reading_index
            print(f"{row.id}\t{when}\t{row.reason}\t{row.readings}\t{index}\t{row.topic}\t{row.detail[:160]}")
    print(json.dumps({"rows": len(rows), "by_reason": quarantine.count_readings()}), file=sys.stderr)
    return 0


async def _replay(config: IngestConfig, quarantine: Quarantine, registry: Registry, args: argparse.Namespace) -> int:
    writer = await open_writer(config.runtime().influx)
    try:
        if not args.dry_run:
            await writer.prepare()
        result = await replay(quarantine, registry, writer, reason=args.reason, dry_run=args.dry_run)
    except SinkUnavailable as exc:
        print(f"quarantine replay: InfluxDB unavailable: {exc}", file=sys.stderr)
        return 1
    finally:
        await writer.aclose()
    print(json.dumps(asdict(result)))
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
        registry = Registry.load(config.registry) if args.action == "replay" else None
    except (ValidationError, RegistryError, FileNotFoundError, ValueError) as exc:
        print(f"quarantine: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if not config.quarantine.exists():
        print(f"quarantine: no quarantine at {config.quarantine}", file=sys.stderr)
        return 2
    quarantine = Quarantine(config.quarantine)
    try:
        if registry is None:
            return _list(quarantine, args)
        return asyncio.run(_replay(config, quarantine, registry, args))
    finally:
        quarantine.close()

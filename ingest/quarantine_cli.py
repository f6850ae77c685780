"""`districtpulse quarantine list|replay`: inspect quarantined readings, and store the ones that pass now.

`replay` re-validates every quarantined message against the *current* registry (and the current clock for
the future-timestamp check), writes the readings that now pass to InfluxDB and removes their rows; the
typical cases are a device that reported before it was added to the registry (`unknown_device`) and points
InfluxDB refused until its schema or retention policy was fixed (`write_rejected`). Readings that still fail
stay, and failures with a new reason are added as new rows. A payload truncated by the first quarantine
schema (8 KiB) cannot be replayed and is reported, never guessed at. Replaying twice writes the same points
again (same tags and timestamps), so it is safe to repeat.

It runs with ingest's own settings (`--config ingest.toml`, `DP_INGEST_*`, then the flags): the InfluxDB
target (version, URL, database, retention policy, credentials, timeout), `batch_readings` per write request,
the retry backoff, and the quarantine's `quarantine_max_rows` / `quarantine_max_bytes`. Messages are
validated one at a time (one payload in memory) and their rows removed only after their readings are stored.
A write InfluxDB cannot take now (unreachable, 5xx) is retried `--attempts` times; one it refuses outright
(401/403/404) stops the replay at once: both leave every row not yet stored where it is (`aborted` says why,
exit status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydantic import ValidationError

from devices import Registry, RegistryError, validate_message
from devices.backoff import FULL, Backoff
from ingest.settings import IngestConfig
from storage.errors import QuarantineUnusable, SinkRefused, SinkRejected, SinkUnavailable
from storage.influx import Writer
from storage.lineprotocol import encode_readings, series_key
from storage.quarantine import PayloadGroup, Quarantine, QuarantineEntry, now_ms
from storage.writers import open_writer


@dataclass(slots=True)
class ReplayResult:
    rows_replayed: int = 0
    readings_written: int = 0
    rows_still_rejected: int = 0
    rows_truncated: int = 0
    rows_write_refused: int = 0
    write_requests: int = 0
    #: why the replay stopped early (InfluxDB unavailable or refusing), None if it went through
    aborted: str | None = None


@dataclass(slots=True)
class _Resolved:
    """One message's rows that pass now, with the lines to write for them."""

    ids: list[int]
    lines: list[str]
    #: today's rejections of the readings of a whole-message row that still fail: added once the rest is stored
    requeue: list[QuarantineEntry] = field(default_factory=list)


def _first_seq(payload: bytes) -> int:
    return int(json.loads(payload)["seq"][0])


class _Replay:
    def __init__(
        self,
        quarantine: Quarantine,
        registry: Registry,
        writer: Writer,
        *,
        batch_readings: int,
        backoff: Backoff,
        attempts: int,
        sleep: Callable[[float], Awaitable[None]],
        dry_run: bool,
    ) -> None:
        self.quarantine, self.registry, self.writer = quarantine, registry, writer
        self.batch_readings, self.backoff, self.attempts, self.sleep = batch_readings, backoff, attempts, sleep
        self.dry_run = dry_run
        self.result = ReplayResult()
        self._pending: list[_Resolved] = []
        self._pending_lines = 0

    def resolve(self, group: PayloadGroup) -> _Resolved | None:
        """Validate one message again; what of its rows passes now (counting the rows that do not)."""
        result = self.result
        if group.truncated:
            result.rows_truncated += len(group.rows)
            return None
        payload = self.quarantine.payload(group.digest)
        if payload is None:  # removed meanwhile (another replay)
            return None
        now = now_ms()
        checked = validate_message(group.topic, payload, self.registry, now_ms=now)
        device = checked.device
        if device is None or not checked.good:
            result.rows_still_rejected += len(group.rows)
            return None
        first = _first_seq(payload)
        good = {seq - first: (reading, seq) for reading, seq in zip(checked.good, checked.seqs, strict=True)}
        resolved = [(row_id, index) for row_id, index in group.rows if index is None or index in good]
        result.rows_still_rejected += len(group.rows) - len(resolved)
        if not resolved:
            return None
        whole = any(index is None for _, index in resolved)
        wanted = sorted(good if whole else {index for _, index in resolved if index is not None})
        lines = encode_readings(series_key(device), [good[i][0] for i in wanted], [good[i][1] for i in wanted])
        requeue = []
        if whole and checked.rejected:
            # the message passes now except for some readings: those keep a row, under today's reason
            requeue = [QuarantineEntry.of(group.topic, device.id, r, payload, now) for r in checked.rejected]
        return _Resolved([row_id for row_id, _ in resolved], lines, requeue)

    async def add(self, resolved: _Resolved) -> None:
        self._pending.append(resolved)
        self._pending_lines += len(resolved.lines)
        if self._pending_lines >= self.batch_readings:
            await self.flush()

    async def flush(self) -> None:
        """Write the pending messages in requests of at most `batch_readings` lines; if InfluxDB refuses some
        points, each message again on its own, so that one bad message keeps only its own rows."""
        pending, self._pending, self._pending_lines = self._pending, [], 0
        if not pending:
            return
        if self.dry_run:
            for resolved in pending:
                self._done(resolved, store=False)
            return
        try:
            await self._write_lines([line for resolved in pending for line in resolved.lines])
        except SinkRejected:
            for resolved in pending:
                try:
                    await self._write_lines(resolved.lines)
                except SinkRejected:
                    self.result.rows_write_refused += len(resolved.ids)  # its rows stay
                    continue
                self._done(resolved, store=True)
            return
        for resolved in pending:
            self._done(resolved, store=True)

    def _done(self, resolved: _Resolved, *, store: bool) -> None:
        if store:
            if resolved.requeue:
                self.quarantine.add(resolved.requeue)
            self.quarantine.delete(resolved.ids)
        self.result.rows_replayed += len(resolved.ids)
        self.result.readings_written += len(resolved.lines)

    async def _write_lines(self, lines: list[str]) -> None:
        for start in range(0, len(lines), self.batch_readings):
            await self._write("\n".join(lines[start : start + self.batch_readings]).encode())

    async def _write(self, body: bytes) -> None:
        """One request, retried while InfluxDB is unavailable (not when it refuses: that needs an operator)."""
        attempt = 0
        while True:
            self.result.write_requests += 1
            try:
                await self.writer.write(body)
                return
            except SinkRefused:
                raise
            except SinkUnavailable as exc:
                attempt += 1
                if attempt >= self.attempts:
                    raise
                await self.sleep(self.backoff.delay(attempt, retry_after=exc.retry_after))


async def replay(
    quarantine: Quarantine,
    registry: Registry,
    writer: Writer,
    *,
    reason: str | None = None,
    dry_run: bool = False,
    batch_readings: int = 5000,
    backoff: Backoff | None = None,
    attempts: int = 5,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ReplayResult:
    """Re-validate quarantined messages, write what passes now, remove the rows it resolves.

    Stops at the first write InfluxDB refuses (401/403/404) or cannot take after `attempts` tries; the
    result says so in `aborted`, and every row whose readings were not stored is still there."""
    run = _Replay(
        quarantine,
        registry,
        writer,
        batch_readings=batch_readings,
        backoff=backoff or Backoff(0.5, 30.0, FULL),
        attempts=max(1, attempts),
        sleep=sleep,
        dry_run=dry_run,
    )
    try:
        for group in quarantine.groups(reason=reason):
            resolved = run.resolve(group)
            if resolved is not None:
                await run.add(resolved)
        await run.flush()
    except SinkUnavailable as exc:
        run.result.aborted = str(exc)
    return run.result


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
            q.add_argument(
                "--attempts", type=int, default=5, help="tries per write while InfluxDB is unavailable (default 5)"
            )


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
    usage = quarantine.usage
    summary = {
        "rows": len(rows),
        "by_reason": quarantine.count_readings(),
        "stored": {"rows": usage.rows, "payloads": usage.payloads, "bytes": usage.bytes},
        "limits": {"rows": quarantine.max_rows, "bytes": quarantine.max_bytes},
    }
    print(json.dumps(summary), file=sys.stderr)
    return 0


async def _replay(config: IngestConfig, quarantine: Quarantine, registry: Registry, args: argparse.Namespace) -> int:
    settings = config.runtime()
    writer = await open_writer(settings.influx)
    try:
        if not args.dry_run:
            await writer.prepare()
        result = await replay(
            quarantine,
            registry,
            writer,
            reason=args.reason,
            dry_run=args.dry_run,
            batch_readings=settings.batch_readings,
            backoff=Backoff(settings.retry_base_s, settings.retry_max_s, FULL),
            attempts=args.attempts,
        )
    except SinkUnavailable as exc:  # while preparing: nothing was replayed
        print(f"quarantine replay: InfluxDB unavailable: {exc}", file=sys.stderr)
        return 1
    finally:
        await writer.aclose()
    print(json.dumps(asdict(result)))
    if result.aborted is not None:
        print(f"quarantine replay: stopped, the rest stays quarantined: {result.aborted}", file=sys.stderr)
        return 1
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
    try:
        quarantine = Quarantine(
            config.quarantine, max_rows=config.quarantine_max_rows, max_bytes=config.quarantine_max_bytes
        )
    except QuarantineUnusable as exc:
        print(f"quarantine: {exc}", file=sys.stderr)
        return 2
    try:
        if registry is None:
            return _list(quarantine, args)
        return asyncio.run(_replay(config, quarantine, registry, args))
    finally:
        quarantine.close()

"""Replay recorded meter data through gateway publishing.

The long CSV format (the canonical one; every reader below produces its rows):

    timestamp,device,metric,value
    2020-04-01T01:00:00+00:00,uk0-em,energy_import,1234.567
    2020-04-01T01:00:00+00:00,uk0-ws,outdoor_temperature,5.18
    1585706400000,uk0-em,energy_import,1234.645

- `timestamp`: ISO 8601 (`T` or a space; `Z` or an offset; a naive time is read in `--tz`) or integer epoch
  milliseconds. Rows must be in non-decreasing time order (a reader fails loudly otherwise).
- `device`: a device id of the registry; `metric`: one of its kind's metrics (devices/kinds.py), in its unit.
- `value`: a number, or text for text metrics (EV connector status). Empty or `nan` = missing: skipped.
- Cumulative metrics (energy_import, energy, ...) are register values, as the meter shows them.

Readers for the usual shapes of recorded data:
- `read_wide`: one timestamp column and one column per meter (`--map COLUMN=DEVICE:METRIC`);
- `read_files`: one file per meter with timestamp,value columns (`--map FILENAME=DEVICE:METRIC`).
Interval data (energy per period, as billing and AMI exports give it) is turned into a register with
`:interval`: each row is a period start, and the register reading at the period's end is the running sum
(starting at 0 at the first period start). A missing period leaves the register where it was (no reading);
a trailing row with a missing value only marks the end of the last period (as eemeter's samples do).

Readings of one device are batched per publish interval of recorded time and published in time order,
at real time (`--speed 1`), N times faster, or flat out (`--speed 0`).
"""

from __future__ import annotations

import argparse
import csv
import heapq
import math
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from devices import KINDS, Registry, encode_batch, units_for
from simulators.engine import Message
from simulators.progress import ProgressBar

LONG_HEADER = ("timestamp", "device", "metric", "value")
_TIMESTAMP_NAMES = ("timestamp", "start", "dt", "time", "datetime", "date")


class ReplayError(ValueError):
    """Recorded data that cannot be replayed as it is (with the file and line)."""


@dataclass(frozen=True, slots=True)
class Row:
    ts_ms: int
    device: str
    metric: str
    value: float | str


@dataclass(frozen=True, slots=True)
class Target:
    """Where a column or file goes: a device's metric, optionally accumulating interval energy."""

    device: str
    metric: str
    interval: bool = False

    @classmethod
    def parse(cls, spec: str) -> tuple[str, Target]:
        """`COLUMN=DEVICE:METRIC[:interval]` -> (column, target)."""
        column, sep, rest = spec.rpartition("=")
        parts = rest.split(":")
        if not sep or len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "interval"):
            raise ReplayError(f"--map {spec!r}: expected COLUMN=DEVICE:METRIC[:interval]")
        return column, cls(parts[0], parts[1], len(parts) == 3)


def parse_timestamp(text: str, tz: ZoneInfo) -> int:
    """Epoch milliseconds from ISO 8601 or an integer of epoch milliseconds."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ReplayError(f"not a timestamp: {text[:40]!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return int(dt.timestamp() * 1000)


def _value(text: str) -> float | str | None:
    text = text.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return None if math.isnan(number) else number


def _raw_value(text: str) -> float:
    """A number, NaN for missing: interval data keeps its missing rows (they still end the previous period)."""
    text = text.strip()
    try:
        return float(text) if text else math.nan
    except ValueError:
        return math.nan


def read_long(path: Path, tz: ZoneInfo) -> Iterator[Row]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = tuple(h.strip() for h in next(reader, ()))
        if header != LONG_HEADER:
            raise ReplayError(f"{path}: header must be {','.join(LONG_HEADER)}, got {','.join(header)[:80]}")
        last = -(2**62)
        for line, record in enumerate(reader, 2):
            if not record:
                continue
            if len(record) != 4:
                raise ReplayError(f"{path}:{line}: expected 4 columns, got {len(record)}")
            try:
                ts = parse_timestamp(record[0], tz)
            except ReplayError as exc:
                raise ReplayError(f"{path}:{line}: {exc}") from None
            if ts < last:
                raise ReplayError(f"{path}:{line}: rows must be in time order")
            last = ts
            value = _value(record[3])
            if value is not None:
                yield Row(ts, record[1].strip(), record[2].strip(), value)


def _columns(header: list[str], timestamp_column: str | None, path: Path) -> int:
    names = [h.strip() for h in header]
    if timestamp_column is not None:
        if timestamp_column not in names:
            raise ReplayError(f"{path}: no column {timestamp_column!r}")
        return names.index(timestamp_column)
    for name in _TIMESTAMP_NAMES:
        if name in names:
            return names.index(name)
    return 0


def _series(path: Path, ts_index: int, value_index: int, tz: ZoneInfo) -> Iterator[tuple[int, float]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader, None)
        last = -(2**62)
        for line, record in enumerate(reader, 2):
            if not record:
                continue
            try:
                ts = parse_timestamp(record[ts_index], tz)
            except (ReplayError, IndexError) as exc:
                raise ReplayError(f"{path}:{line}: {exc}") from None
            if ts < last:
                raise ReplayError(f"{path}:{line}: rows must be in time order")
            last = ts
            yield ts, _raw_value(record[value_index]) if value_index < len(record) else math.nan


def accumulate(points: Iterable[tuple[int, float]]) -> Iterator[tuple[int, float]]:
    """Interval values at period starts -> register readings at period ends (see the module docstring)."""
    register = 0.0
    previous: tuple[int, float] | None = None
    period = 0
    for ts, value in points:
        if previous is None:
            yield ts, 0.0
        else:
            period = ts - previous[0]
            if math.isfinite(previous[1]):
                register += previous[1]
                yield ts, register
        previous = (ts, value)
    if previous is not None and math.isfinite(previous[1]) and period > 0:
        yield previous[0] + period, register + previous[1]


def _target_rows(points: Iterable[tuple[int, float]], target: Target) -> Iterator[Row]:
    source = accumulate(points) if target.interval else points
    for ts, value in source:
        if math.isfinite(value):
            yield Row(ts, target.device, target.metric, value)


def read_wide(
    path: Path, mapping: dict[str, Target], tz: ZoneInfo, timestamp_column: str | None = None
) -> Iterator[Row]:
    """One column per meter. Each mapped column is read as its own series, then merged in time order."""
    with path.open(newline="", encoding="utf-8") as f:
        header = [h.strip() for h in next(csv.reader(f), [])]
    ts_index = _columns(header, timestamp_column, path)
    missing = sorted(set(mapping) - set(header))
    if missing:
        raise ReplayError(f"{path}: no column(s) {missing} (columns: {header[:20]})")
    streams = [_target_rows(_series(path, ts_index, header.index(col), tz), t) for col, t in mapping.items()]
    return heapq.merge(*streams, key=lambda r: r.ts_ms)


def read_files(paths: list[Path], mapping: dict[str, Target], tz: ZoneInfo) -> Iterator[Row]:
    """One file per meter (timestamp,value); `mapping` keys are file names (or stems)."""
    streams = []
    for path in paths:
        target = mapping.get(path.name) or mapping.get(path.stem) or mapping.get(path.name.split(".")[0])
        if target is None:
            raise ReplayError(f"{path}: no --map for this file (use {path.name}=DEVICE:METRIC)")
        with path.open(newline="", encoding="utf-8") as f:
            header = [h.strip() for h in next(csv.reader(f), [])]
        ts_index = _columns(header, None, path)
        value_index = header.index("value") if "value" in header else len(header) - 1
        streams.append(_target_rows(_series(path, ts_index, value_index, tz), target))
    return heapq.merge(*streams, key=lambda r: r.ts_ms)


def write_long(rows: Iterable[Row], path: Path) -> int:
    """Write rows in the long format (the converter from any reader's shape); returns the row count."""
    n = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(LONG_HEADER)
        for row in rows:
            writer.writerow([row.ts_ms, row.device, row.metric, row.value])
            n += 1
    return n


def to_messages(rows: Iterable[Row], registry: Registry, publish_interval_s: int = 900) -> Iterator[Message]:
    """Batch rows per device and publish interval of recorded time; messages come out in time order."""
    window_ms = publish_interval_s * 1000
    pending: dict[str, list[tuple[int, dict[str, float | str]]]] = {}
    current: int | None = None
    seq: dict[str, int] = {}

    def flush() -> Iterator[Message]:
        assert current is not None
        for device_id in sorted(pending):
            readings = pending[device_id]
            device = registry.devices[device_id]
            first = seq.get(device_id, 0)
            seq[device_id] = first + len(readings)
            payload = encode_batch(device_id, first, units_for(device.kind), readings)
            yield Message(device.topic, payload, device_id, len(readings), current + window_ms, device.gateway)
        pending.clear()

    for row in rows:
        device = registry.devices.get(row.device)
        if device is None:
            raise ReplayError(f"device {row.device!r} is not in the registry")
        if row.metric not in KINDS[device.kind].metrics:
            raise ReplayError(f"{row.metric!r} is not a metric of {device.kind} (device {row.device})")
        window = row.ts_ms - row.ts_ms % window_ms
        if current is not None and window > current:
            yield from flush()
        current = window if current is None else max(current, window)
        readings = pending.setdefault(row.device, [])
        if readings and readings[-1][0] == row.ts_ms:
            readings[-1][1][row.metric] = row.value
        else:
            readings.append((row.ts_ms, {row.metric: row.value}))
    if pending:
        yield from flush()


def rows_from_args(args: argparse.Namespace) -> Iterator[Row]:
    tz = ZoneInfo(args.tz)
    mapping = dict(Target.parse(spec) for spec in args.map)
    if args.format == "long":
        return heapq.merge(*(read_long(p, tz) for p in args.replay), key=lambda r: r.ts_ms)
    if args.format == "wide":
        return heapq.merge(*(read_wide(p, mapping, tz) for p in args.replay), key=lambda r: r.ts_ms)
    return read_files(args.replay, mapping, tz)


def replay_cli(args: argparse.Namespace, registry: Registry) -> int:
    """`districtpulse simulate --replay ...`: dry-run to a file or publish, with an optional progress bar."""
    from simulators.publish import publish, write_jsonl

    try:
        first = last = None
        for row in rows_from_args(args):  # a first pass for the time span (progress) and to fail early
            first = row.ts_ms if first is None else first
            last = row.ts_ms
        if first is None or last is None:
            print("replay: no readings in the input", file=sys.stderr)
            return 2
        bar = ProgressBar(last - first, label="replay") if args.progress else None
        messages = to_messages(rows_from_args(args), registry, args.publish_interval or 900)

        def shown() -> Iterator[Message]:
            for count, msg in enumerate(messages, 1):
                if bar is not None:
                    bar.update(min(msg.deliver_ms, last) - first, count)
                yield msg

        if args.dry_run:
            n_msg, n_read = write_jsonl(shown(), args.out)
        else:
            report = publish(
                shown(),
                host=args.mqtt_host,
                port=args.mqtt_port,
                connections=args.connections,
                client_prefix="dp-replay",
                speed=args.speed,
                topic_root=args.topic_root,
                time_limit_s=args.time_limit,
            )
            n_msg, n_read = report.messages, report.readings
        if bar is not None:
            bar.close()
    except (ReplayError, OSError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    print(f"replay: messages={n_msg} readings={n_read}")
    return 0

"""Replay of recorded meter data no one here wrote (eemeter's samples, see data/README.md)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from devices import Registry, validate_message
from simulators import Message
from simulators.publish import paced
from simulators.replay import (
    ReplayError,
    Row,
    Target,
    parse_timestamp,
    read_files,
    read_long,
    read_wide,
    to_messages,
    write_long,
)
from tests.support import registries

DATA = Path(__file__).parent / "data"
UTC_ZONE = ZoneInfo("UTC")
ROOT = Path(__file__).resolve().parents[2]

REGISTRY = registries.text("replay_uk")


def csv_values(path: Path, column: str) -> list[str]:
    with path.open(newline="") as f:
        return [row[column] for row in csv.DictReader(f)]


def test_timestamps_in_iso_with_offsets_naive_in_a_zone_or_epoch_milliseconds() -> None:
    utc = int(datetime(2020, 4, 1, 1, tzinfo=UTC).timestamp() * 1000)
    assert parse_timestamp("2020-04-01 01:00:00+00:00", UTC_ZONE) == utc
    assert parse_timestamp("2020-04-01T01:00:00Z", UTC_ZONE) == utc
    assert parse_timestamp("2020-04-01T04:00:00", ZoneInfo("Europe/Helsinki")) == utc  # EEST, +3
    assert parse_timestamp("2020-03-31T19:00:00-06:00", UTC_ZONE) == utc
    assert parse_timestamp(str(utc), UTC_ZONE) == utc
    with pytest.raises(ReplayError):
        parse_timestamp("yesterday", UTC_ZONE)


def test_interval_energy_becomes_a_register_whose_increase_is_the_recorded_energy() -> None:
    path = DATA / "uk-electricity-hourly-sample-0.csv"
    values = [float(v) for v in csv_values(path, "value")]
    rows = list(read_files([path], {path.name: Target("uk0-em", "energy_import", interval=True)}, UTC_ZONE))
    assert len(rows) == len(values) + 1  # a 0 at the first period start, then one reading per period end
    assert rows[0].value == 0.0
    assert [r.ts_ms - rows[0].ts_ms for r in rows[:3]] == [0, 3_600_000, 7_200_000]
    running = 0.0
    for row, value in zip(rows[1:], values, strict=True):
        running += value
        assert row.value == running
    assert rows[-1].value == pytest.approx(math.fsum(values), abs=1e-9)


def test_a_missing_period_leaves_a_gap_and_an_end_marker_closes_the_last_period(tmp_path: Path) -> None:
    path = tmp_path / "meter.csv"
    path.write_text(
        "start,value\n2020-01-01T00:00:00Z,1.5\n2020-01-01T01:00:00Z,nan\n2020-01-01T02:00:00Z,2.0\n2020-01-01T03:00:00Z,\n"
    )
    rows = list(read_files([path], {"meter": Target("uk0-em", "energy_import", interval=True)}, UTC_ZONE))
    hours = [(r.ts_ms - rows[0].ts_ms) // 3_600_000 for r in rows]
    assert hours == [0, 1, 3] and [r.value for r in rows] == [0.0, 1.5, 3.5]


def test_one_column_per_meter_and_one_file_per_meter_give_the_same_rows() -> None:
    wide = list(
        read_wide(
            DATA / "uk-wide-sample-0.csv",
            {
                "electricity_kwh": Target("uk0-em", "energy_import", True),
                "temp_c": Target("uk0-ws", "outdoor_temperature"),
            },
            UTC_ZONE,
        )
    )
    files = list(
        read_files(
            [DATA / "uk-electricity-hourly-sample-0.csv", DATA / "uk-tempC-sample-0.csv"],
            {
                "uk-electricity-hourly-sample-0": Target("uk0-em", "energy_import", True),
                "uk-tempC-sample-0.csv": Target("uk0-ws", "outdoor_temperature"),
            },
            UTC_ZONE,
        )
    )
    assert sorted(wide, key=lambda r: (r.ts_ms, r.device)) == sorted(files, key=lambda r: (r.ts_ms, r.device))
    assert [r.ts_ms for r in wide] == sorted(r.ts_ms for r in wide)
    temps = [float(v) for v in csv_values(DATA / "uk-tempC-sample-0.csv", "tempC")]
    assert [r.value for r in wide if r.device == "uk0-ws"] == temps


def test_the_long_format_round_trips_and_rejects_disorder(tmp_path: Path) -> None:
    path = DATA / "il-electricity-hourly.csv"
    rows = list(read_files([path], {path.name: Target("uk0-em", "energy_import", True)}, UTC_ZONE))
    long = tmp_path / "long.csv"
    assert write_long(rows, long) == len(rows)
    assert list(read_long(long, UTC_ZONE)) == rows
    lines = long.read_text().splitlines()
    (tmp_path / "bad.csv").write_text("\n".join([lines[0], lines[2], lines[1]]) + "\n")
    with pytest.raises(ReplayError, match="time order"):
        list(read_long(tmp_path / "bad.csv", UTC_ZONE))
    (tmp_path / "header.csv").write_text("time,meter,value\n")
    with pytest.raises(ReplayError, match="header"):
        list(read_long(tmp_path / "header.csv", UTC_ZONE))


def test_replayed_batches_are_valid_payloads_in_time_order_with_contiguous_sequence_numbers() -> None:
    registry = Registry.from_toml(REGISTRY)
    half_hourly = DATA / "uk-electricity-halfhourly-sample-1.csv"
    rows = list(
        read_files(
            [DATA / "uk-electricity-hourly-sample-0.csv", half_hourly, DATA / "uk-tempC-sample-0.csv"],
            {
                "uk-electricity-hourly-sample-0": Target("uk0-em", "energy_import", True),
                half_hourly.name: Target("uk1-em", "energy_import", True),
                "uk-tempC-sample-0": Target("uk0-ws", "outdoor_temperature"),
            },
            UTC_ZONE,
        )
    )
    messages = list(to_messages(rows, registry, publish_interval_s=3600))
    assert sum(m.readings for m in messages) == len(rows) == 337 + 337 + 336
    assert [m.deliver_ms for m in messages] == sorted(m.deliver_ms for m in messages)
    next_seq: dict[str, int] = {}
    for m in messages:
        result = validate_message(m.topic, m.payload, registry, now_ms=2_000_000_000_000)
        assert not result.rejected and len(result.good) == m.readings
        doc = json.loads(m.payload)
        assert doc["seq"][0] == next_seq.get(m.device, 0)
        next_seq[m.device] = doc["seq"][1] + 1
        assert all(m.deliver_ms - 3_600_000 <= r["ts"] < m.deliver_ms for r in doc["readings"])
    with pytest.raises(ReplayError, match="not in the registry"):
        list(to_messages([Row(0, "nobody", "energy_import", 1.0)], registry))


def test_pacing_follows_recorded_time_divided_by_speed(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    slept: list[float] = []
    monkeypatch.setattr("simulators.publish.time.monotonic", lambda: clock[0])

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr("simulators.publish.time.sleep", sleep)
    items = [Message("t", b"", "d", 1, deliver_ms=h * 3_600_000) for h in range(5)]
    assert list(paced(items, speed=3600)) == items  # an hour of recorded time per second
    assert slept == [1.0, 1.0, 1.0, 1.0]
    slept.clear()
    list(paced(items, speed=0))
    assert slept == []


def test_the_cli_replays_files_to_a_message_file_with_a_progress_bar(tmp_path: Path) -> None:
    registry = tmp_path / "uk.toml"
    registry.write_text(REGISTRY)
    out = tmp_path / "replay.jsonl"
    proc = subprocess.run(
        [
            sys.executable, "-m", "districtpulse", "simulate", "--registry", str(registry),
            "--replay", str(DATA / "uk-electricity-hourly-sample-0.csv"), str(DATA / "uk-tempC-sample-0.csv"),
            "--format", "files", "--map", "uk-electricity-hourly-sample-0=uk0-em:energy_import:interval",
            "--map", "uk-tempC-sample-0=uk0-ws:outdoor_temperature", "--progress", "--dry-run", "--out", str(out),
        ],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"replay: messages={len(out.read_text().splitlines())} readings=673"
    assert "100.0%" in proc.stderr and "replay [" in proc.stderr

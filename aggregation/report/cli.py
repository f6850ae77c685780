"""`districtpulse report`: a district's KPI report for a programme, from the KPIs in InfluxDB.

    districtpulse report --district D --from 2026-09-01 --to 2026-11-30 [--out DIR] [--format html,pdf,json]
    districtpulse report --verify DIR/report-D-2026-09-01-2026-11-30.json

The report reads the daily KPIs `districtpulse aggregate` wrote (run it over the period first). `--verify`
reads the same period again and exits 0 when the document would be identical (the generation time and the
code version aside), 1 with the list of what changed otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import subprocess
import sys
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from aggregation.co2 import load_factors
from aggregation.report.collect import Period, collect
from aggregation.report.document import assemble, differences
from aggregation.report.render import RenderError, html, json_text, pdf
from devices import Registry, demo_registry_path
from devices.endpoints import Endpoints
from devices.secrets import SecretFileError, read_secret
from storage.errors import StorageError
from storage.influx import InfluxConfig, InfluxV1

FORMATS = ("html", "pdf", "json")


def _formats(text: str) -> tuple[str, ...]:
    chosen = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = sorted(set(chosen) - set(FORMATS))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"formats are {', '.join(FORMATS)} (comma-separated), not {text!r}")
    return chosen


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = Endpoints.from_env()
    p.add_argument("--district", help="the district's id in the registry")
    p.add_argument("--from", dest="first", type=date.fromisoformat, help="first local day (YYYY-MM-DD)")
    p.add_argument("--to", dest="last", type=date.fromisoformat, help="last local day, included (YYYY-MM-DD)")
    p.add_argument("--out", type=Path, default=Path("."), help="folder for the files (default: here)")
    p.add_argument("--format", type=_formats, default=FORMATS, help="html,pdf,json (default: all three)")
    p.add_argument("--verify", type=Path, metavar="REPORT_JSON", help="recompute a report and compare")
    p.add_argument("--registry", type=Path, default=demo_registry_path())
    p.add_argument("--influx-url", default=env.influx_url)
    p.add_argument("--influx-db", default=env.influx_db)
    p.add_argument("--influx-user", default=env.influx_username, help="default: DP_INFLUX_USERNAME")
    p.add_argument(
        "--influx-password-file", type=Path, default=env.influx_password_file, help="default: DP_INFLUX_PASSWORD_FILE"
    )
    p.add_argument("--influx-timeout", type=float, default=300.0, help="seconds per query (a district-year is big)")


def code_version() -> str:
    """The package version, and the git commit when it runs from a checkout ("+dirty" with local changes)."""
    version = metadata.version("districtpulse")
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty=+dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version} ({commit.stdout.strip()})" if commit.returncode == 0 and commit.stdout.strip() else version


async def build(args: argparse.Namespace, district: str, first: date, last: date) -> dict[str, Any]:
    registry = Registry.load(args.registry)
    if district not in registry.districts:
        raise ValueError(f"district {district!r} is not in {args.registry}")
    period = Period.of(first, last, registry.districts[district].timezone)
    password = read_secret(args.influx_password_file, "--influx-password-file") if args.influx_password_file else None
    config = InfluxConfig(
        url=args.influx_url,
        database=args.influx_db,
        username=args.influx_user,
        password=password,
        timeout=args.influx_timeout,
    )
    async with InfluxV1(config) as influx:
        data = await collect(influx, registry, district, period)
    return assemble(
        data,
        registry,
        district,
        load_factors(),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        code_version=code_version(),
        registry_sha256=hashlib.sha256(args.registry.read_bytes()).hexdigest(),
    )


def _write(doc: dict[str, Any], out: Path, formats: tuple[str, ...]) -> list[Path]:
    r = doc["report"]
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"report-{r['district']}-{r['from']}-{r['to']}"
    written = []
    if "json" in formats:
        stem.with_suffix(".json").write_text(json_text(doc), encoding="utf-8")
        written.append(stem.with_suffix(".json"))
    if "html" in formats or "pdf" in formats:
        stem.with_suffix(".html").write_text(html(doc), encoding="utf-8")
        if "html" in formats:
            written.append(stem.with_suffix(".html"))
    if "pdf" in formats:
        pdf(stem.with_suffix(".html"), stem.with_suffix(".pdf"))
        written.append(stem.with_suffix(".pdf"))
        if "html" not in formats:
            stem.with_suffix(".html").unlink()
    return written


def _verify(args: argparse.Namespace) -> int:
    try:
        old = json.loads(args.verify.read_text(encoding="utf-8"))
        r = old["report"]
        district, first, last = r["district"], date.fromisoformat(r["from"]), date.fromisoformat(r["to"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"report --verify: {args.verify} is not a report document: {exc}", file=sys.stderr)
        return 2
    new = asyncio.run(build(args, district, first, last))
    changed = differences(old, new)
    if not changed:
        print(f"report --verify: identical ({args.verify}: inputs {new['provenance']['input_sha256'][:16]})")
        return 0
    print(f"report --verify: {len(changed)} differences from {args.verify}:")
    for line in changed[:50]:
        print(f"  {line}")
    if len(changed) > 50:
        print(f"  ... and {len(changed) - 50} more")
    return 1


def run(args: argparse.Namespace) -> int:
    try:
        if args.verify is not None:
            return _verify(args)
        if args.district is None or args.first is None or args.last is None:
            print("report: --district, --from and --to are needed (or --verify REPORT_JSON)", file=sys.stderr)
            return 2
        doc = asyncio.run(build(args, args.district, args.first, args.last))
        for path in _write(doc, args.out, args.format):
            print(f"report: wrote {path}")
    except (ValueError, SecretFileError, RenderError, StorageError, OSError) as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    return 0

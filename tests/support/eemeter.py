"""The eemeter 3.2.0 sample meters and the results eemeter gave for them (recorded by scripts/verify_caltrack.py),
and one way to run a case through `districtpulse savings`: shared by the daily and hourly comparisons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aggregation import savings_cli

DATA = Path(__file__).parents[1] / "aggregation" / "data"
FIXTURE: dict[str, Any] = json.loads((DATA / "eemeter-3.2.0-results.json").read_text())


def cases(method: str) -> dict[str, Any]:
    return {name: entry for name, entry in FIXTURE.items() if entry["case"]["method"] == method}


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """The case through the CLI's own parsing and computation; the `--json` document."""
    args = savings_cli.parse(
        [
            "--usage", str(DATA / case["usage"]),
            "--temperature", str(DATA / case["temperature"]),
            "--baseline", *case["baseline"],
            "--reporting", *case["reporting"],
            "--method", case["method"],
            "--fuel", case["fuel"],
        ]
    )  # fmt: skip
    result: dict[str, Any] = savings_cli.compute(args).to_json()
    return result

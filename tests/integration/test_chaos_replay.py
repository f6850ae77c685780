"""Chaos with invalid readings, short: `scripts/chaos_long.py` at a small size (one gateway, 14 devices, a day
of 20,160 readings with 40 invalid ones, more than a gateway's unconfirmed bound of 20,000), on its own
private services: gateways before ingest ever subscribed, InfluxDB killed while the day arrives, ingest, a
gateway and Mosquitto killed during the outage, InfluxDB frozen and killed during the drain. The script
checks against the simulator's truth; this test holds it to exact figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_short_chaos_run_stores_and_quarantines_exactly_the_truth(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "scripts" / "chaos_long.py"), "--buildings", "1", "--apartments", "10"]
    command += ["--outage-s", "15", "--speed", "2880", "--timeout", "240", "--keep", str(tmp_path)]
    done = subprocess.run(
        command,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    assert done.stdout.strip(), done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    figures = {k: summary[k] for k in ("readings", "stored", "missing", "wrong", "extra", "duplicated")}
    assert figures == {"readings": 20_160, "stored": 20_120, "missing": 0, "wrong": 0, "extra": 0, "duplicated": 0}
    assert summary["quarantined"] == summary["expected_quarantined"] == {"non_finite": 20, "out_of_range": 20}
    assert summary["left_in_spools"] == summary["evicted"] == 0
    assert summary["readings_arrived_during_outage"] > 10_000  # the day's readings came while InfluxDB was down
    assert summary["ok"] is True and done.returncode == 0

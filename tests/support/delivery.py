"""Shared by the delivery and chaos tests: a `districtpulse gateway` process with simulated registry devices,
and the check that every reading its spool ever held is in InfluxDB exactly once, with nothing left spooled."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from districtpulse.config import Endpoints
from tests.support.gateway_mqtt import spooled_counters
from tests.support.services import influx_query

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[gateway]
id = "{district}-gw1"
registry = "registry.toml"
publish_interval_s = 0.2
heartbeat_interval_s = 0.5

[mqtt]
host = "127.0.0.1"
port = {port}
keepalive = 5
reconnect_min_s = 0.1
reconnect_max_s = 0.5

[spool]
path = "spool.sqlite"
commit_interval_ms = 50

[delivery]
confirm_timeout_s = 1
confirm_timeout_max_s = 2
retry_min_s = 0.2

[[adapter]]
type = "simulated"
interval_s = 0.01
ticks = {ticks}
"""

MEASUREMENTS = ("electricity", "indoor", "ev_charging")


def gateway_process(
    tmp_path: Path, endpoints: Endpoints, district: str, ticks: int, *extra: str, spool_bytes: int | None = None
) -> subprocess.Popen[bytes]:
    config = tmp_path / "gateway.toml"
    text = CONFIG.format(district=district, port=endpoints.mqtt_port, ticks=ticks)
    if spool_bytes is not None:
        text = text.replace("[spool]\n", f"[spool]\nmax_bytes = {spool_bytes}\n")
    config.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DP_LOG_FORMAT": "text"}
    with (tmp_path / "gateway.log").open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config), *extra],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def stored(endpoints: Endpoints, database: str) -> dict[str, list[int]]:
    """device -> the sorted seq of every point InfluxDB holds for it."""
    out: dict[str, list[int]] = {}
    for measurement in MEASUREMENTS:
        for series in influx_query(endpoints, database, f'SELECT "seq" FROM "{measurement}" GROUP BY "device"'):
            out[series["tags"]["device"]] = sorted(int(v[1]) for v in series["values"])
    return out


def check_all_stored(tmp_path: Path, endpoints: Endpoints, database: str) -> int:
    next_seq, left, counters = spooled_counters(tmp_path / "spool.sqlite")
    assert left == 0, "the spool still holds readings"
    assert not any(name.startswith("evicted") for name in counters), f"evictions: {counters}"
    got = stored(endpoints, database)
    report = {}
    for device, n in next_seq.items():
        seqs = got.get(device, [])
        missing = sorted(set(range(n)) - set(seqs))
        if missing or len(seqs) != n:  # (a duplicate point shows as len > n with nothing missing)
            report[device] = {"spooled": n, "stored": len(seqs), "missing": missing[:20], "n_missing": len(missing)}
    assert not report, f"InfluxDB does not hold each spooled reading exactly once: {report}"
    assert set(got) <= set(next_seq), f"points of devices never spooled: {sorted(set(got) - set(next_seq))}"
    return sum(next_seq.values())


def wait_for_spool(tmp_path: Path, readings: int, timeout: float = 60) -> None:
    """Until the gateway has committed `readings` readings (its adapter's ticks are done)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            next_seq, _, _ = spooled_counters(tmp_path / "spool.sqlite")
            if sum(next_seq.values()) >= readings:
                return
        except Exception:
            pass
        assert time.monotonic() < deadline, "the gateway did not spool its readings"
        time.sleep(0.05)


def last_status(tmp_path: Path) -> str:
    return (tmp_path / "gateway.log").read_text()[-3000:]

"""Catch-up after a long InfluxDB outage: how fast the gateways' backlog drains, and what it costs them in memory.

    PYTHONPATH=. python benchmarks/catch_up.py                       # 1 h at 2,000 readings/s: 7.2M, ~12 min
    PYTHONPATH=. python benchmarks/catch_up.py --outage-s 120        # smoke, ~1 minute

A district of `--gateways` gateways (4) with `--rate` readings/s between them (2,000: 500 simulated
electricity meters per gateway, one reading a second each) on private Mosquitto + InfluxDB 1.x, one
`python -m ingest`. The outage is compressed: what an hour of InfluxDB being down leaves behind is each
gateway's spool holding its hour of readings (the broker and ingest hold one bounded window of it, which the
confirmations' timeout sends again anyway), so each spool is filled with `--outage-s` seconds of its devices'
readings, stamped over the hour before the run, through the gateway's own `Spool` (the values are the
simulated adapter's). Then InfluxDB is up, ingest running, and the real `districtpulse gateway` processes start
with their live devices on (the simulated adapter, `stagger`): they publish the backlog and the live readings,
deleting only what ingest confirms.

Figures:
- `drain_readings_per_s`: backlog readings / seconds from the gateways' start until no reading older than the
  start is left in any spool (the gateways' heartbeats, every second: `ts - oldest_age_s`); target >= 5 x
  `live_readings_per_s`, the live rate measured in the same run (readings the live adapters spooled, per
  second). `ratio_drain_to_live` is the figure.
- `gateway_peak_rss_mb`: the largest peak RSS (VmHWM) of the gateway processes, read just before they stop;
  target <= 40 (the systemd unit's MALLOC_ARENA_MAX=2, as here).
- `stored`: points InfluxDB holds at the end, at least the backlog (a check that the drain stored them).

Bounded: services up (~30 s), the fill (450 s here for the 7.2M readings, 970 MB accounted, two spools at a
time), the drain (at most `--cap-s`, 900 s: it fails past it), the stop (~30 s). The last line is one JSON
object. Measured here: the 7.2M backlog drained in 267 s (26,987 readings/s against 1,960 live, ratio 13.8),
gateway peak RSS 35.1 MB, 722 s in all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from confirm_latency import Statuses, registry_toml, stop_all  # noqa: E402  (this folder is on sys.path: it holds the script)
from ingest_throughput import free_port  # noqa: E402

from districtpulse import services  # noqa: E402
from districtpulse.config import Endpoints  # noqa: E402

DISTRICT = "latency"  # (confirm_latency's registry and status listener)
SPOOL_MAX_BYTES = 2 * 1024**3

GATEWAY = """
[gateway]
id = "{gateway}"
registry = "{registry}"
publish_interval_s = 1
heartbeat_interval_s = 1

[mqtt]
host = "127.0.0.1"
port = {port}

[spool]
path = "spool-{gateway}.sqlite"
max_bytes = {max_bytes}

[[adapter]]
type = "simulated"
interval_s = {interval_s}
stagger = true
"""


def fill(spool_path: str, devices: list[str], start_ms: int, seconds: int, step_ms: int) -> tuple[int, int]:
    """`seconds` of readings of `devices`, one every `step_ms` each, into the spool (a child process)."""
    from devices import DeviceKind
    from gateway.adapters.base import DeviceRef
    from gateway.adapters.simulated import values_fn
    from gateway.spool import Spool, SpoolLimits

    spool = Spool(spool_path, limits=SpoolLimits(max_bytes=SPOOL_MAX_BYTES), synchronous="NORMAL")
    kind = DeviceKind.ELECTRICITY_METER
    spool.add_devices((d, kind) for d in devices)
    fns = {d: values_fn(DeviceRef(d, kind), 0) for d in devices}
    chunk = max(1, 1000 // max(1, len(devices)))  # timestamps per device per commit: ~1,000 readings a commit
    steps = seconds * 1000 // step_ms
    for first in range(0, steps, chunk):
        stamps = [start_ms + i * step_ms for i in range(first, min(steps, first + chunk))]
        for d in devices:
            fn = fns[d]
            spool.append_many(d, [(ts, fn(ts)) for ts in stamps])
            if spool.buffered >= spool.max_buffered // 2:
                spool.commit()
        spool.commit()
    readings, size = spool.readings, spool.bytes
    spool.close()
    return readings, size


def rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--outage-s", type=int, default=3600)
    p.add_argument("--rate", type=int, default=2000, help="live readings/s of the district")
    p.add_argument("--gateways", type=int, default=4)
    p.add_argument("--devices-per-gateway", type=int, default=500)
    p.add_argument("--cap-s", type=float, default=900.0)
    a = p.parse_args()
    started = time.monotonic()
    devices = a.gateways * a.devices_per_gateway
    interval_s = devices / a.rate
    step_ms = round(interval_s * 1000)
    with tempfile.TemporaryDirectory(prefix="dp-catchup-") as tmp:
        work = Path(tmp)
        registry = work / "registry.toml"
        registry.write_text(registry_toml(devices, a.gateways))
        endpoints = Endpoints.from_env(
            {
                "DP_MQTT_PORT": str(free_port()),
                "DP_INFLUX_PORT": str(free_port(pair=True)),
                "DP_STATE_DIR": tmp,
                "DP_INFLUX_DB": "catchup",
            }
        )
        gateway_ids = [f"lgw{g}" for g in range(a.gateways)]
        members = {gw: [f"lm{d}" for d in range(g, devices, a.gateways)] for g, gw in enumerate(gateway_ids)}
        outage_start_ms = int(time.time() * 1000) - a.outage_s * 1000 - 60_000
        t_fill = time.monotonic()
        ctx = mp.get_context("spawn")
        with ctx.Pool(2) as pool:
            filled = pool.starmap(
                fill,
                [
                    (str(work / f"spool-{gw}.sqlite"), members[gw], outage_start_ms, a.outage_s, step_ms)
                    for gw in gateway_ids
                ],
            )
        backlog = sum(r for r, _ in filled)
        fill_s = time.monotonic() - t_fill
        print(
            f"catch_up: {backlog:,} readings of a {a.outage_s} s outage in {a.gateways} spools "
            f"({sum(b for _, b in filled) / 1e6:.0f} MB accounted) in {fill_s:.0f} s",
            flush=True,
        )
        services.up(endpoints, log=lambda _: None)
        env = os.environ | {
            "PYTHONPATH": str(ROOT),
            "DP_MQTT_PORT": str(endpoints.mqtt_port),
            "DP_INFLUX_PORT": str(endpoints.influx_port),
            "DP_INFLUX_DB": "catchup",
            "DP_STATE_DIR": tmp,
            "DP_LOG_LEVEL": "WARNING",
            "MALLOC_ARENA_MAX": "2",
        }
        procs: list[subprocess.Popen[bytes]] = []
        statuses = Statuses(endpoints.mqtt_port)
        try:
            ready = work / "ingest.ready"
            command = [sys.executable, "-m", "ingest", "--registry", str(registry)]
            command += ["--topic", f"dp/v1/{DISTRICT}/+/+/+", "--quarantine", str(work / "q.sqlite")]
            command += ["--ready-file", str(ready), "--metrics-port", "0"]
            with (work / "ingest.log").open("ab") as log:
                procs.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
            deadline = time.monotonic() + 60
            while not ready.exists():
                if procs[0].poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"ingest did not start: {(work / 'ingest.log').read_text()[-2000:]}")
                time.sleep(0.05)
            live_start_ms = int(time.time() * 1000)
            t_live = time.monotonic()
            for gw in gateway_ids:
                config = work / f"{gw}.toml"
                config.write_text(
                    GATEWAY.format(
                        gateway=gw,
                        registry=registry,
                        port=endpoints.mqtt_port,
                        max_bytes=SPOOL_MAX_BYTES,
                        interval_s=interval_s,
                    )
                )
                with (work / f"{gw}.log").open("ab") as log:
                    procs.append(
                        subprocess.Popen(
                            [sys.executable, "-m", "gateway", "--config", str(config)],
                            cwd=work,
                            env=env,
                            stdout=subprocess.DEVNULL,
                            stderr=log,
                        )
                    )
            drained_at: dict[str, int] = {}
            next_report = time.monotonic() + 15
            while len(drained_at) < a.gateways:
                if time.monotonic() - t_live > a.cap_s:
                    raise SystemExit(f"the backlog did not drain within {a.cap_s:.0f} s: {drained_at}")
                if any(proc.poll() is not None for proc in procs):
                    raise SystemExit("a gateway or ingest exited early; see the logs in " + tmp)
                for gw, doc in statuses.snapshot().items():
                    spool = doc.get("spool") or {}
                    if gw in drained_at or doc.get("state") != "online" or doc["ts"] < live_start_ms:
                        continue
                    oldest = spool.get("oldest_age_s")
                    if oldest is None or doc["ts"] - oldest * 1000 >= live_start_ms:
                        drained_at[gw] = doc["ts"]
                if time.monotonic() > next_report:
                    left = {g: (d.get("spool") or {}).get("readings") for g, d in statuses.snapshot().items()}
                    print(f"catch_up: draining, spooled {left}", flush=True)
                    next_report += 15
                time.sleep(0.2)
            drain_s = (max(drained_at.values()) - live_start_ms) / 1000
            peak_rss = max(rss_peak_mb(proc.pid) for proc in procs[1:])
            live_s = time.monotonic() - t_live
            for proc in procs[1:]:
                proc.send_signal(signal.SIGTERM)
            for proc in procs[1:]:
                proc.wait(60)
        finally:
            statuses.close()
            stop_all(procs)
        spooled = held = evicted = 0
        for gw in gateway_ids:
            with contextlib.closing(sqlite3.connect(work / f"spool-{gw}.sqlite")) as db:
                spooled += db.execute("SELECT sum(next_seq) FROM devices").fetchone()[0]
                held += db.execute("SELECT count(*) FROM readings").fetchone()[0]
                evicted_sql = "SELECT coalesce(sum(value), 0) FROM counters WHERE name LIKE 'evicted%'"
                evicted += db.execute(evicted_sql).fetchone()[0]
        r = httpx.post(
            f"{endpoints.influx_url}/query",
            params={"db": "catchup"},
            data={"q": 'SELECT count("seq") FROM "electricity"'},
            timeout=300,
        )
        series = r.json()["results"][0].get("series", [])
        stored = int(series[0]["values"][0][1]) if series else 0
        services.down(endpoints, log=lambda _: None)

    live = spooled - backlog
    live_rate = live / live_s
    drain_rate = backlog / drain_s
    result = {
        "outage_s": a.outage_s,
        "gateways": a.gateways,
        "devices": devices,
        "backlog_readings": backlog,
        "fill_s": round(fill_s, 1),
        "drain_s": round(drain_s, 1),
        "drain_readings_per_s": round(drain_rate, 1),
        "live_readings_per_s": round(live_rate, 1),
        "ratio_drain_to_live": round(drain_rate / live_rate, 2),
        "gateway_peak_rss_mb": round(peak_rss, 1),
        "stored": stored,
        "left_in_spools_at_stop": held,
        "evicted": evicted,
        "targets": {"ratio_drain_to_live": 5.0, "gateway_peak_rss_mb": 40.0},
        "meets_targets": drain_rate >= 5 * live_rate and peak_rss <= 40 and evicted == 0 and stored >= backlog,
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

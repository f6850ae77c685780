"""Chaos, long: a compressed long outage of InfluxDB with every other part killed on top, exact counts at the end.

    PYTHONPATH=. python scripts/chaos_long.py                     # 545,760 readings, ~3 minutes here
    PYTHONPATH=. python scripts/chaos_long.py --buildings 1 --apartments 10 --timeout 300   # smoke, ~1 min

A simulated district day (`--buildings` x (`--apartments` electricity meters + heat meter + building sensor
+ an EV charger), one reading a minute, `--bad-readings` NaN and out-of-range readings injected) is recorded
per gateway and replayed by one real `districtpulse gateway` process per building (replay adapter paced at
`--speed` times real time, its own spool, QoS 1, deleting only what ingest confirms) through a private
Mosquitto to one real `python -m ingest` and a private InfluxDB 1.x, on free ports with a temporary state dir:

1. the gateways start before ingest ever subscribed (Mosquitto answers "no matching subscribers"), then ingest
   subscribes;
2. InfluxDB is killed (kill -9) and stays down while every reading of the day arrives at the gateways and at
   least `--outage-s`; meanwhile ingest is killed and restarted (it subscribes again only once InfluxDB
   answers), a gateway is killed and restarted (its replay resumes at its committed cursor), and Mosquitto is
   killed with a backlog and restarted;
3. InfluxDB comes back; then it is frozen (SIGSTOP, 3 s), ingest is killed again, and InfluxDB is killed and
   restarted mid-drain;
4. every gateway exits by itself (`--exit-when-idle`) once ingest has confirmed all its readings.

Then, against the simulator's truth (`SimConfig.truth_points`): every expected point is in InfluxDB with the
truth's values (0 missing, 0 wrong), no other point is (0 extra), each device's stored sequence numbers are
distinct (0 duplicated), the quarantine holds exactly the truth's invalid readings by reason, and every spool
is empty with nothing evicted. The last line is one JSON summary; exit 0 only when all of that holds.
Bounded: each wait has a deadline (`--timeout` for the whole drain) and the script fails past it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devices import KINDS  # noqa: E402
from districtpulse import services  # noqa: E402
from districtpulse.config import Endpoints  # noqa: E402
from districtpulse.demo import DemoGateway, write_replays  # noqa: E402
from simulators import Cadence, FaultConfig, SimConfig, Simulation, yesterday  # noqa: E402
from simulators.fleets import registry_toml, scalable_cities  # noqa: E402
from storage.quarantine import Quarantine  # noqa: E402

DATABASE = "chaos"

#: The demo's gateway, with the confirmation timeouts compressed like the outage (30 s / 600 s in production:
#: a message whose copy died with the broker is published again after 5 s, then 10, 20, 30 s).
GATEWAY = """\
[gateway]
id = "{gateway}"
district = "{district}"
publish_interval_s = 0.5
heartbeat_interval_s = 2

[mqtt]
host = "{host}"
port = {port}
client_id = "dp-chaos-{gateway}"
reconnect_min_s = 0.2
reconnect_max_s = 2

[spool]
path = "spool.sqlite"
commit_interval_ms = 100

[delivery]
confirm_timeout_s = 5
confirm_timeout_max_s = 30
retry_min_s = 1

[[adapter]]
type = "replay"
file = "replay.jsonl"
speed = SPEED
"""


def free_port() -> int:
    """A free TCP port whose successor is free too (InfluxDB binds both)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port + 1))
            return port
    raise RuntimeError("no free port pair")


def log(msg: str) -> None:
    print(f"chaos: {msg}", flush=True)


class Run:
    def __init__(self, work: Path, endpoints: Endpoints, district: str, gateways: list[DemoGateway]) -> None:
        self.work, self.endpoints, self.district, self.gateways = work, endpoints, district, gateways
        self.env = os.environ | {
            "PYTHONPATH": str(ROOT),
            "DP_MQTT_PORT": str(endpoints.mqtt_port),
            "DP_INFLUX_PORT": str(endpoints.influx_port),
            "DP_INFLUX_DB": DATABASE,
            "DP_STATE_DIR": str(endpoints.state_dir),
            "DP_LOG_LEVEL": os.environ.get("DP_LOG_LEVEL", "WARNING"),
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.faults: list[dict[str, Any]] = []
        self.t0 = time.monotonic()

    def fault(self, name: str, **detail: Any) -> None:
        self.faults.append({"at_s": round(time.monotonic() - self.t0, 1), "fault": name, **detail})
        log(f"{name} {detail or ''} (spooled {self.spooled():,}, left {self.left():,})")

    # --- processes ---------------------------------------------------------------------------------------
    def start_gateway(self, g: DemoGateway) -> None:
        with (g.folder / "gateway.log").open("ab") as err:
            self.procs[g.id] = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--config", "gateway.toml", "--exit-when-idle"],
                cwd=g.folder,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def start_ingest(self, wait: bool = True) -> None:
        ready = self.work / "ingest.ready"
        ready.unlink(missing_ok=True)
        command = [sys.executable, "-m", "ingest", "--registry", str(self.work / "registry.toml")]
        command += ["--topic", f"dp/v1/{self.district}/+/+/+", "--client-id", "dp-chaos-ingest"]
        command += ["--quarantine", str(self.work / "quarantine.sqlite"), "--ready-file", str(ready)]
        command += ["--metrics-port", "0"]
        with (self.work / "ingest.log").open("ab") as err:
            self.procs["ingest"] = subprocess.Popen(command, env=self.env, stdout=err, stderr=err)
        deadline = time.monotonic() + 60
        while wait and not ready.exists():
            if self.procs["ingest"].poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"ingest did not subscribe: {(self.work / 'ingest.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def service_pid(self, name: str) -> int:
        pid = next(s.pid for s in services.status(self.endpoints) if s.name == name)
        if pid is None:
            raise SystemExit(f"{name} is not running")
        return pid

    def kill_service(self, name: str) -> None:
        pid = self.service_pid(name)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid):
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not die")
            time.sleep(0.02)

    def restart(self, name: str) -> None:
        services.up(self.endpoints, log=lambda _: None, only={name})

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None and not (name != "ingest" and code == 0):
                where = self.work / ("ingest.log" if name == "ingest" else f"gateways/{name}/gateway.log")
                raise SystemExit(f"{name} exited {code} early: {where.read_text()[-2000:]}")

    # --- the gateways' own record ---------------------------------------------------------------------
    def _spool(self, g: DemoGateway, sql: str) -> int:
        path = g.folder / "spool.sqlite"
        if not path.exists():
            return 0
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
                return int(db.execute(sql).fetchone()[0] or 0)
        except sqlite3.OperationalError:  # (not created yet)
            return 0

    def spooled(self) -> int:
        return sum(self._spool(g, "SELECT sum(next_seq) FROM devices") for g in self.gateways)

    def left(self) -> int:
        return sum(self._spool(g, "SELECT count(*) FROM readings") for g in self.gateways)

    def wait(self, what: str, done: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        next_report = time.monotonic() + 10
        while not done():
            self.check_alive()
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
            if time.monotonic() > next_report:
                log(f"waiting for {what}: spooled {self.spooled():,}, left in spools {self.left():,}")
                next_report += 10
            time.sleep(0.5)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"


def influx_query(endpoints: Endpoints, q: str) -> list[dict[str, Any]]:
    r = httpx.post(f"{endpoints.influx_url}/query", params={"db": DATABASE, "epoch": "ms"}, data={"q": q}, timeout=300)
    r.raise_for_status()
    result = r.json()["results"][0]
    if "error" in result:
        raise RuntimeError(result["error"])
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def verify(run: Run, truth: Any, buildings: list[str]) -> dict[str, Any]:
    """Everything InfluxDB, the quarantine and the spools hold, against the truth."""
    assert truth.points is not None
    expected = {(d, ts): v for d, points in truth.points.items() for ts, v in points.items()}
    stored: dict[tuple[str, int], dict[str, Any]] = {}
    seqs: dict[str, list[int]] = {}
    for kind in KINDS.values():
        for building in buildings:
            q = f'SELECT * FROM "{kind.measurement}" WHERE "building" = \'{building}\''
            for s in influx_query(run.endpoints, q):
                for row in s["values"]:
                    doc = dict(zip(s["columns"], row, strict=True))
                    key = (doc.pop("device"), doc.pop("time"))
                    seqs.setdefault(key[0], []).append(int(doc.pop("seq")))
                    for tag in ("district", "building"):
                        doc.pop(tag, None)
                    stored[key] = {k: v for k, v in doc.items() if v is not None and k != "clock_unsynced"}
    missing = expected.keys() - stored.keys()
    extra = stored.keys() - expected.keys()
    wrong = [k for k in expected.keys() & stored.keys() if stored[k] != expected[k]]
    duplicated = sum(len(v) - len(set(v)) for v in seqs.values())
    quarantine = Quarantine(run.work / "quarantine.sqlite")
    try:
        quarantined = quarantine.count_readings(topic_prefix=f"dp/v1/{run.district}/")
    finally:
        quarantine.close()
    evicted = sum(
        run._spool(g, "SELECT coalesce(sum(value), 0) FROM counters WHERE name LIKE 'evicted%'") for g in run.gateways
    )
    return {
        "expected_stored": len(expected),
        "stored": len(stored),
        "missing": len(missing),
        "wrong": len(wrong),
        "extra": len(extra),
        "duplicated": duplicated,
        "quarantined": dict(sorted(quarantined.items())),
        "expected_quarantined": dict(sorted(truth.expected_quarantined.items())),
        "left_in_spools": run.left(),
        "evicted": evicted,
        "examples": {
            "missing": sorted(missing)[:5],
            "wrong": [(k, stored[k], expected[k]) for k in sorted(wrong)[:3]],
            "extra": sorted(extra)[:5],
        },
    }


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--buildings", type=int, default=6, help="buildings, one gateway each")
    p.add_argument("--apartments", type=int, default=60, help="electricity meters per building")
    p.add_argument("--bad-readings", type=int, default=40, help="NaN and out-of-range readings injected")
    p.add_argument("--outage-s", type=float, default=60.0, help="InfluxDB stays down at least this long")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds for the drain after the outage")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--speed", type=float, default=1440.0, help="replay pace, x real time (1440: the day in a minute; 0: at once)"
    )
    p.add_argument("--keep", type=Path, help="work in this folder and keep it (logs, spools, quarantine)")
    a = p.parse_args()
    started = time.monotonic()
    district = "chaos"
    registry = scalable_cities(district, buildings=a.buildings, apartments=a.apartments, chargers=a.buildings)
    # Yesterday, local: older instantaneous readings would be shed by the spool's age bound (2 days).
    day = yesterday(next(iter(registry.districts.values())).timezone)
    faults = {"nan": (a.bad_readings + 1) // 2, "out_of_range": a.bad_readings // 2}
    sim = Simulation(
        registry,
        SimConfig(start=day, seed=a.seed, cadence=Cadence(60, 900), faults=FaultConfig(faults), truth_points=True),
    )
    with contextlib.ExitStack() as stack:
        if a.keep:
            a.keep.mkdir(parents=True, exist_ok=True)
            work = a.keep
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dp-chaos-")))
        (work / "registry.toml").write_text(registry_toml(registry))
        endpoints = Endpoints.from_env(
            {
                "DP_MQTT_PORT": str(free_port()),
                "DP_INFLUX_PORT": str(free_port()),
                "DP_INFLUX_DB": DATABASE,
                "DP_STATE_DIR": str(work / "state"),
            }
        )
        template = GATEWAY.replace("SPEED", str(a.speed))
        gateways = write_replays(sim.messages(), work / "gateways", district, endpoints, template)
        readings = sum(g.readings for g in gateways)
        log(
            f"{len(registry)} devices on {len(gateways)} gateways, {readings:,} readings "
            f"({sum(g.messages for g in gateways):,} messages) recorded for {day} in {time.monotonic() - started:.0f} s"
        )
        run = Run(work, endpoints, district, gateways)
        services.up(endpoints, log=lambda _: None)
        stack.callback(services.down, endpoints, log=lambda _: None)
        stack.callback(_stop_all, run)
        httpx.post(f"{endpoints.influx_url}/query", data={"q": f'CREATE DATABASE "{DATABASE}"'}).raise_for_status()

        for g in gateways:
            run.start_gateway(g)
        run.fault("gateways start before ingest ever subscribed")
        time.sleep(3)
        run.start_ingest()
        run.fault("ingest subscribed")
        run.kill_service("influxdb")
        outage_started = time.monotonic()
        spooled_before = run.spooled()
        run.fault("influxdb killed: the outage begins")
        run.wait("a third of the day to be spooled", lambda: run.spooled() >= readings // 3, 300)
        run.kill("ingest")
        run.fault("ingest killed")
        time.sleep(2)
        run.start_ingest(wait=False)  # (it subscribes once its sink answers: it takes nothing it cannot store)
        run.fault("ingest restarted")
        run.wait("two thirds of the day to be spooled", lambda: run.spooled() >= 2 * readings // 3, 300)
        victim = gateways[len(gateways) // 2]
        run.kill(victim.id)
        run.fault("gateway killed", gateway=victim.id)
        time.sleep(1)
        run.start_gateway(victim)
        run.fault("gateway restarted", gateway=victim.id)
        run.wait("every reading of the day to be spooled", lambda: run.spooled() >= readings, 600)
        run.kill_service("mosquitto")
        run.fault("mosquitto killed with a backlog")
        time.sleep(1)
        run.restart("mosquitto")  # (InfluxDB stays down)
        run.fault("mosquitto restarted")
        remaining = a.outage_s - (time.monotonic() - outage_started)
        if remaining > 0:
            time.sleep(remaining)
        outage_s = time.monotonic() - outage_started
        held = run.left()
        arrived = run.spooled() - spooled_before
        run.restart("influxdb")
        run.fault("influxdb back: the outage ends", outage_s=round(outage_s, 1), readings_held=held, arrived=arrived)
        drain_started = time.monotonic()
        time.sleep(5)
        pid = run.service_pid("influxdb")
        os.kill(pid, signal.SIGSTOP)
        run.fault("influxdb frozen")
        time.sleep(3)
        os.kill(pid, signal.SIGCONT)
        run.fault("influxdb thawed")
        time.sleep(3)
        run.kill("ingest")
        run.fault("ingest killed mid-drain")
        time.sleep(1)
        run.start_ingest()
        run.fault("ingest restarted")
        time.sleep(3)
        run.kill_service("influxdb")
        run.fault("influxdb killed mid-drain")
        time.sleep(1)
        run.restart("influxdb")
        run.fault("influxdb restarted")
        deadline = drain_started + a.timeout
        for g in gateways:
            proc = run.procs[g.id]
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the gateways did not deliver everything within {a.timeout:.0f} s")
                time.sleep(0.5)
            if proc.returncode != 0:
                tail = (g.folder / "gateway.log").read_text()[-2000:]
                raise SystemExit(f"gateway {g.id} exited {proc.returncode}: {tail}")
        drain_s = time.monotonic() - drain_started
        run.fault("every gateway exited: all confirmed", drain_s=round(drain_s, 1))
        result = verify(run, sim.truth, list(registry.buildings))
    ok = (
        result["missing"] == result["wrong"] == result["extra"] == result["duplicated"] == 0
        and result["stored"] == result["expected_stored"]
        and result["quarantined"] == result["expected_quarantined"]
        and result["left_in_spools"] == result["evicted"] == 0
    )
    summary = {
        "ok": ok,
        "readings": readings,
        "devices": len(registry),
        "gateways": len(gateways),
        **result,
        "outage_s": round(outage_s, 1),
        "readings_arrived_during_outage": arrived,
        "readings_held_at_end_of_outage": held,
        "drain_s": round(drain_s, 1),
        "drain_readings_per_s": round(held / drain_s, 1),
        "faults": run.faults,
        "wall_s": round(time.monotonic() - started, 1),
    }
    if ok:
        del summary["examples"]
    print(json.dumps(summary))
    return 0 if ok else 1


def _stop_all(run: Run) -> None:
    for proc in run.procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in run.procs.values():
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    raise SystemExit(main())

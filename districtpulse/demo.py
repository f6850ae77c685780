"""`districtpulse demo`: one simulated district day through the whole real chain.

    services up -> ingest (its own process) -> simulate one day, recorded per gateway -> one `districtpulse
    gateway` process per gateway replays its day through its own spool (QoS 1) and exits once ingest has
    confirmed every reading -> wait until InfluxDB + quarantine account for every reading -> energy per
    building from InfluxDB through the numba interval-energy kernel ->
    `demo: published=N stored=S quarantined=Q confirmed=C`

Exits 0 only when stored + quarantined == published == confirmed, where stored is counted in InfluxDB itself
and confirmed in the gateways' spools (what left them, which only a confirmation lets happen).
The demo owns its simulated day: it first deletes the demo district's raw points of that day, so the
counts describe this run alone (a run of an older version with other data would otherwise leave points).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TextIO

import numpy as np

from aggregation import interval_energy
from devices import KINDS, Registry, demo_registry_path
from devices.carriers import CARRIERS
from devices.endpoints import Endpoints
from districtpulse import demo_savings, services
from simulators import DistrictSimulator, Message, yesterday
from storage.influx import InfluxConfig, InfluxV1
from storage.quarantine import Quarantine, now_ms


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry", type=Path, default=demo_registry_path())
    p.add_argument("--day", type=date.fromisoformat, help="local day to simulate (default: yesterday)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--bad-readings", type=int, default=5, help="readings made invalid on purpose")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for ingest to catch up")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install missing services")
    p.add_argument(
        "--no-dashboard",
        dest="dashboard",
        action="store_false",
        help="do not leave the operators' dashboard running on the demo day (default: it runs and its URL is printed)",
    )
    p.add_argument("--dashboard-port", type=int, default=8050)
    p.add_argument(
        "--no-savings",
        dest="savings",
        action="store_false",
        help="skip the savings history (a baseline year and 90 reporting days, hourly, written to InfluxDB)",
    )


@dataclass(frozen=True, slots=True)
class Counts:
    published: int
    stored: int
    quarantined: int


async def _clear_day(endpoints: Endpoints, district: str, start_ms: int, end_ms: int) -> None:
    async with InfluxV1(InfluxConfig(url=endpoints.influx_url, database=endpoints.influx_db)) as influx:
        await influx.create_database()
        for kind in KINDS.values():
            await influx.query(
                f'DELETE FROM "{kind.measurement}" WHERE "district" = \'{district}\''
                f" AND time >= {start_ms}ms AND time < {end_ms}ms"
            )


async def count_stored(influx: InfluxV1, district: str, start_ms: int, end_ms: int) -> int:
    """Points of the district in [start, end), counted by InfluxDB (every point has the integer field seq)."""
    total = 0
    for kind in KINDS.values():
        series = await influx.query(
            f'SELECT count("seq") FROM "{kind.measurement}" WHERE "district" = \'{district}\''
            f" AND time >= {start_ms}ms AND time < {end_ms}ms"
        )
        total += sum(int(row[1]) for s in series for row in s["values"])
    return total


async def energy_by_building(
    influx: InfluxV1, registry: Registry, start_ms: int, end_ms: int
) -> dict[str, dict[str, float]]:
    """kWh per building and energy carrier (devices.carriers) for the day, from the registers stored in InfluxDB."""
    out: dict[str, dict[str, float]] = {b: dict.fromkeys(CARRIERS, 0.0) for b in registry.buildings}
    for carrier in CARRIERS.values():
        measurement = KINDS[carrier.kind].measurement
        series = await influx.query(
            f'SELECT "{carrier.register}" FROM "{measurement}" WHERE time >= {start_ms}ms AND time < {end_ms}ms'
            ' GROUP BY "device"'
        )
        for s in series:
            device = registry.devices.get(s["tags"]["device"])
            if device is None or device.submeter_of is not None:
                continue  # sub-meters are inside their main meter's total
            ts = np.array([row[0] for row in s["values"]], dtype=np.int64)
            reg = np.array([np.nan if row[1] is None else row[1] for row in s["values"]], dtype=np.float64)
            result = interval_energy(ts, reg, max_power_w=device.max_power_w)
            out[device.building][carrier.name] += result.total()
    return out


def _start_ingest(
    endpoints: Endpoints, registry_path: Path, district: str, quarantine: Path, log_path: Path
) -> subprocess.Popen[bytes]:
    ready = log_path.parent / f"ingest-{district}.ready"
    ready.unlink(missing_ok=True)
    env = os.environ | {
        "DP_MQTT_HOST": endpoints.mqtt_host,
        "DP_MQTT_PORT": str(endpoints.mqtt_port),
        "DP_INFLUX_HOST": endpoints.influx_host,
        "DP_INFLUX_PORT": str(endpoints.influx_port),
        "DP_INFLUX_DB": endpoints.influx_db,
    }
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ingest",
                "--registry",
                str(registry_path),
                "--client-id",
                "districtpulse-demo-ingest",
                "--quarantine",
                str(quarantine),
                "--ready-file",
                str(ready),
                "--topic",
                f"dp/v1/{district}/+/+/+",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"ingest did not start (see {log_path})")
        time.sleep(0.05)
    return proc


def _start_dashboard(endpoints: Endpoints, registry_path: Path, quarantine: Path, as_of_ms: int, port: int) -> str:
    """`districtpulse dashboard` in its own session, left running, showing the demo day as of its end.

    A random operator password goes to a 0600 file; the PID to `dashboard.pid` (stop: kill $(cat ...)).
    """
    state = endpoints.state_dir / "demo"
    pid_file = state / "dashboard.pid"
    if pid_file.exists():  # a dashboard of an earlier demo run: replace it
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
    password_file = state / "dashboard-password"
    password_file.touch(mode=0o600)
    password = secrets.token_urlsafe(12)
    password_file.write_text(password + "\n")
    as_of = datetime.fromtimestamp(as_of_ms / 1000, UTC).isoformat()
    config = state / "dashboard.toml"
    config.write_text(
        f"[dashboard]\nport = {port}\nregistry = {json.dumps(str(registry_path.resolve()))}\n"
        f"quarantine = {json.dumps(str(quarantine))}\nas_of = {as_of}\n"
        '[[auth.user]]\nname = "operator"\nrole = "operator"\npassword_env = "DP_DASHBOARD_PASSWORD"\n'
    )
    log_path = state / "dashboard.log"
    env = os.environ | {"DP_DASHBOARD_PASSWORD": password, "DP_INFLUX_DB": endpoints.influx_db}
    with log_path.open("wb") as log_file:  # this run's lines only: the URL is read back from it
        proc = subprocess.Popen(
            [sys.executable, "-m", "districtpulse", "dashboard", "--config", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # outlives the demo, and a Ctrl-C of the demo
        )
    pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        for line in log_path.read_text(errors="replace").splitlines()[::-1]:
            if line.startswith("dashboard: http"):
                return line.split(" ", 1)[1]
        time.sleep(0.1)
    raise RuntimeError(f"the dashboard did not start (see {log_path})")


def run(args: argparse.Namespace) -> int:
    endpoints = Endpoints.from_env()
    services.up(endpoints, install=not args.no_install)
    registry = Registry.load(args.registry)
    district = next(iter(registry.districts.values()))
    day = args.day or yesterday(district.timezone)
    quarantine_path = endpoints.state_dir / "demo" / "quarantine.sqlite"
    quarantine_path.parent.mkdir(parents=True, exist_ok=True)
    for stale in quarantine_path.parent.glob(quarantine_path.name + "*"):
        stale.unlink()  # the demo's own scratch quarantine: this run's rejections only
    started_ms = now_ms()
    # The day with the retrofit the savings history has had since REPORTING_DAYS before it (demo_savings).
    retrofit = demo_savings.retrofits(registry, day - timedelta(days=demo_savings.REPORTING_DAYS))
    window = DistrictSimulator(
        registry, day, seed=args.seed, inject_bad_readings=args.bad_readings, interventions=retrofit
    )
    asyncio.run(_clear_day(endpoints, district.id, window.start_ms, window.end_ms))
    ingest = _start_ingest(
        endpoints, args.registry, district.id, quarantine_path, endpoints.state_dir / "demo" / "ingest.log"
    )
    try:
        sim = DistrictSimulator(
            registry, day, seed=args.seed, inject_bad_readings=args.bad_readings, interventions=retrofit
        )
        print(
            f"demo: simulating {day} for district {district.id!r}: {len(registry)} devices in "
            f"{len(registry.buildings)} buildings, publishing through {len(registry.gateways)} gateway connections"
        )
        t0 = time.monotonic()
        gateways = write_replays(sim.messages(), endpoints.state_dir / "demo" / "gateways", district.id, endpoints)
        published = sum(g.readings for g in gateways)
        messages = sum(g.messages for g in gateways)
        confirmed = _run_gateways(gateways, args.timeout)
        print(
            f"demo: {len(gateways)} gateways published {published} readings ({messages} recorded messages) "
            f"through their spools in {time.monotonic() - t0:.1f} s"
        )
        counts, energy = asyncio.run(
            _settle(
                endpoints,
                registry,
                district.id,
                sim.start_ms,
                sim.end_ms,
                published,
                quarantine_path,
                started_ms,
                args.timeout,
            )
        )
    finally:
        ingest.send_signal(signal.SIGTERM)
        try:
            ingest.wait(30)
        except subprocess.TimeoutExpired:
            ingest.kill()
    _print_energy(registry, energy)
    if args.savings:
        s = asyncio.run(_savings(endpoints, registry, district.id, day, args.seed))
        print(
            f"demo: savings history: {s.readings} hourly readings, {len(s.report.backfilled)} days of KPIs,"
            f" retrofit {demo_savings.REPORTING_DAYS} days before {day}, in {s.seconds:.1f} s"
        )
        if s.savings_kwh is not None and s.avoided_kg is not None:
            print(f"demo: savings to date {s.savings_kwh:,.0f} kWh, CO2 avoided {s.avoided_kg:,.0f} kg")
    if args.dashboard:
        url = _start_dashboard(endpoints, args.registry, quarantine_path, sim.end_ms - 1, args.dashboard_port)
        password_file = endpoints.state_dir / "demo" / "dashboard-password"
        print(f"demo: dashboard {url} (user operator, password in {password_file})")
    print(
        f"demo: published={counts.published} stored={counts.stored} quarantined={counts.quarantined}"
        f" confirmed={confirmed}"
    )
    return 0 if counts.stored + counts.quarantined == counts.published == confirmed else 1


GATEWAY_CONFIG = """\
# Written by `districtpulse demo`: one of the demo district's gateways, replaying its recorded day.
[gateway]
id = "{gateway}"
district = "{district}"
publish_interval_s = 0.5
heartbeat_interval_s = 5

[mqtt]
host = "{host}"
port = {port}
client_id = "dp-demo-{gateway}"

[spool]
path = "spool.sqlite"
commit_interval_ms = 100

[[adapter]]
type = "replay"
file = "replay.jsonl"
"""


@dataclass
class DemoGateway:
    id: str
    folder: Path
    messages: int = 0
    readings: int = 0


def write_replays(
    messages: Iterable[Message], root: Path, district: str, endpoints: Endpoints, template: str = GATEWAY_CONFIG
) -> list[DemoGateway]:
    """Each gateway's messages as a replay file and a gateway.toml with a fresh spool, in its own folder; the
    `template` (`GATEWAY_CONFIG`'s placeholders) is the gateway's configuration."""
    gateways: dict[str, DemoGateway] = {}
    files: dict[str, TextIO] = {}
    try:
        for msg in messages:
            gateway_id = msg.topic.split("/")[3]
            gateway = gateways.get(gateway_id)
            if gateway is None:
                folder = root / gateway_id
                folder.mkdir(parents=True, exist_ok=True)
                for stale in folder.glob("spool.sqlite*"):
                    stale.unlink()  # this run's readings only
                (folder / "gateway.toml").write_text(
                    template.format(
                        gateway=gateway_id, district=district, host=endpoints.mqtt_host, port=endpoints.mqtt_port
                    )
                )
                gateway = gateways[gateway_id] = DemoGateway(gateway_id, folder)
                files[gateway_id] = (folder / "replay.jsonl").open("w", encoding="utf-8")
            files[gateway_id].write(json.dumps({"topic": msg.topic, "payload": msg.payload.decode()}) + "\n")
            gateway.messages += 1
            gateway.readings += msg.readings
    finally:
        for f in files.values():
            f.close()
    return sorted(gateways.values(), key=lambda g: g.id)


def _run_gateways(gateways: list[DemoGateway], timeout: float) -> int:
    """Run every gateway (`python -m gateway --exit-when-idle`) until its spool is empty, that is until ingest
    confirmed every reading; returns the readings confirmed, from the spools themselves (spooled - left -
    evicted)."""
    env = os.environ | {"DP_LOG_LEVEL": "WARNING"}
    procs = []
    for g in gateways:
        with (g.folder / "gateway.log").open("ab") as log_file:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "gateway", "--config", "gateway.toml", "--exit-when-idle"],
                    cwd=g.folder,
                    stdout=subprocess.DEVNULL,
                    stderr=log_file,
                    env=env,
                )
            )
    deadline = time.monotonic() + timeout
    try:
        for g, proc in zip(gateways, procs, strict=True):
            code = proc.wait(max(1.0, deadline - time.monotonic()))
            if code != 0:
                raise RuntimeError(f"gateway {g.id} exited {code} (see {g.folder / 'gateway.log'})")
    except subprocess.TimeoutExpired:
        print(f"demo: the gateways did not deliver everything within {timeout:.0f} s", file=sys.stderr)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    confirmed = 0
    for g in gateways:
        with contextlib.closing(sqlite3.connect(g.folder / "spool.sqlite")) as db:
            spooled = db.execute("SELECT coalesce(sum(next_seq), 0) FROM devices").fetchone()[0]
            left = db.execute("SELECT count(*) FROM readings").fetchone()[0]
            evicted = db.execute("SELECT coalesce(sum(value), 0) FROM counters WHERE name LIKE 'evicted%'").fetchone()
        confirmed += int(spooled) - int(left) - int(evicted[0])
    return confirmed


async def _savings(
    endpoints: Endpoints, registry: Registry, district: str, day: date, seed: int
) -> demo_savings.Summary:
    async with InfluxV1(InfluxConfig(url=endpoints.influx_url, database=endpoints.influx_db)) as influx:
        return await demo_savings.run(influx, registry, district, day, seed=seed)


async def _settle(
    endpoints: Endpoints,
    registry: Registry,
    district: str,
    start_ms: int,
    end_ms: int,
    published: int,
    quarantine_path: Path,
    since_ms: int,
    wait_s: float,
) -> tuple[Counts, dict[str, dict[str, float]]]:
    quarantine = Quarantine(quarantine_path)
    try:
        async with InfluxV1(InfluxConfig(url=endpoints.influx_url, database=endpoints.influx_db)) as influx:
            deadline = time.monotonic() + wait_s
            while True:
                stored = await count_stored(influx, district, start_ms, end_ms)
                quarantined = sum(
                    quarantine.count_readings(since_ms=since_ms, topic_prefix=f"dp/v1/{district}/").values()
                )
                if stored + quarantined >= published or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            energy = await energy_by_building(influx, registry, start_ms, end_ms)
    finally:
        quarantine.close()
    return Counts(published, stored, quarantined), energy


def _print_energy(registry: Registry, energy: dict[str, dict[str, float]]) -> None:
    print()
    print(
        f"{'building':<22} {'use':<12} {'m2':>7} {'electricity kWh':>16} {'kWh/m2':>7} {'heat kWh':>9} "
        f"{'PV kWh':>7} {'EV kWh':>7}"
    )
    for building_id, (_district, building) in registry.buildings.items():
        e = energy[building_id]
        print(
            f"{building.name[:22]:<22} {building.use:<12} {building.floor_area_m2:>7.0f} {e['electricity']:>16.1f} "
            f"{e['electricity'] / building.floor_area_m2:>7.3f} {e['heat']:>9.1f} {e['pv']:>7.1f} "
            f"{e['ev']:>7.1f}"
        )
    print()

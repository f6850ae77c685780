"""Ingest throughput against its two limits, measured in the same run on a private Mosquitto + InfluxDB.

    python benchmarks/ingest_throughput.py [--readings N] [--devices D] [--publishers P] [--per-message 100]
                                           [--repeat 3]

Modes (each stores the same N points into a fresh database):
- raw InfluxDB: the N points as line protocol, 5,000 lines a request, posted by 2 concurrent writers: the
  database's own limit, which no consumer can beat.
- batched: N readings in messages of `--per-message` readings through Mosquitto -> `python -m ingest` ->
  InfluxDB. Target: ratio_batched_to_raw >= 0.8. Raw and batched run as `--repeat` pairs (each run lasts
  2-3 s, and the raw rate alone varies by 15 % between runs); the pair with the median ratio is reported.
- bare subscriber: a paho client that only acknowledges the same stream of N single-reading QoS 1 messages:
  the broker + paho limit, which no Python consumer can beat.
- single: N single-reading QoS 1 messages through ingest. Target: ratio_single_to_bare >= 0.5.

So that the publishers are never the bottleneck (a Python QoS 1 publisher manages ~8k messages/s per
connection, and this machine has 2 cores), every stream is published first, by `--publishers` processes
with a connection each, into the consumer's persistent session while the consumer is away; the clock
runs from the moment the consumer is subscribed until the last message is acknowledged, both as ingest
itself records them (`subscribed_at` in its ready file, `dp_ingest_last_ack_timestamp_seconds` on /metrics,
read once `dp_ingest_messages_acked_total` shows every message acknowledged). The broker of this private instance
queues without a message limit (`max_queued_messages 0`; the byte limit stays) so that it holds a whole
stream of N single-reading messages; the project's template keeps its 200,000.

The last line is one JSON object: batched_readings_per_s, raw_influx_points_per_s, ratio_batched_to_raw,
single_readings_per_s, bare_subscriber_msgs_per_s, ratio_single_to_bare (plus the details).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devices import encode_batch, readings_topic, units_for  # noqa: E402
from districtpulse import services  # noqa: E402
from districtpulse.config import Endpoints  # noqa: E402

T0 = 1_788_000_000_000  # 2026-08-29: in the past, after commissioning
STEP_MS = 60_000
DISTRICT = "bench"
UNITS = units_for("electricity_meter")


# --- the data set -------------------------------------------------------------------------------------------


def registry_toml(devices: int, gateways: int) -> str:
    lines = [f'[[district]]\nid = "{DISTRICT}"\n  [[district.building]]\n  id = "b1"\n  floor_area_m2 = 1000']
    for g in range(gateways):
        lines.append(f'    [[district.building.gateway]]\n    id = "gw{g}"')
        lines.extend(
            f'      [[district.building.gateway.device]]\n      id = "em{d}"\n      kind = "electricity_meter"\n'
            "      commissioned = 2024-01-01T00:00:00Z"
            for d in range(g, devices, gateways)
        )
    return "\n".join(lines) + "\n"


def values(device: int, k: int) -> dict[str, float | str]:
    return {"energy_import": 1000.0 + k * 0.25, "power": 500.0 + (k + device) % 1000, "voltage": 230.0}


def messages(
    devices: int, gateways: int, per_device: int, per_message: int, part: int = 0, parts: int = 1
) -> Iterator[tuple[str, bytes]]:
    """The stream (or every `parts`-th device of it, for one publisher): device by device, in time order."""
    for d in range(part, devices, parts):
        topic = readings_topic(DISTRICT, f"gw{d % gateways}", f"em{d}", "electricity_meter")
        for first in range(0, per_device, per_message):
            n = min(per_message, per_device - first)
            batch = [(T0 + (first + k) * STEP_MS, values(d, first + k)) for k in range(n)]
            yield topic, encode_batch(f"em{d}", first, UNITS, batch)


def line_protocol(devices: int, per_device: int, chunk: int = 5000) -> list[bytes]:
    """The same points as ingest writes them (tags from the registry, the seq field), 5,000 lines a body."""
    bodies, lines = [], []
    for d in range(devices):
        key = f"electricity,district={DISTRICT},building=b1,device=em{d}"
        for k in range(per_device):
            v = values(d, k)
            lines.append(
                f"{key} energy_import={v['energy_import']!r},power={v['power']!r},voltage={v['voltage']!r},seq={k}i "
                f"{T0 + k * STEP_MS}"
            )
            if len(lines) == chunk:
                bodies.append("\n".join(lines).encode())
                lines = []
    if lines:
        bodies.append("\n".join(lines).encode())
    return bodies


# --- helpers ------------------------------------------------------------------------------------------------


def free_port(pair: bool = False) -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if not pair:
            return port
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def influx(endpoints: Endpoints, q: str, db: str | None = None) -> dict[str, object]:
    params = {"db": db} if db else {}
    r = httpx.post(f"{endpoints.influx_url}/query", params=params, data={"q": q}, timeout=120)
    r.raise_for_status()
    result: dict[str, object] = r.json()["results"][0]
    return result


def count(endpoints: Endpoints, db: str) -> int:
    result = influx(endpoints, 'SELECT count("seq") FROM "electricity"', db)
    series = result.get("series")
    return int(series[0]["values"][0][1]) if isinstance(series, list) and series else 0


def fresh_db(endpoints: Endpoints, db: str) -> None:
    influx(endpoints, f'DROP DATABASE "{db}"')
    influx(endpoints, f'CREATE DATABASE "{db}"')


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_pids(endpoints: Endpoints) -> dict[str, int]:
    return {s.name: s.pid for s in services.status(endpoints) if s.pid is not None}


def make_session(endpoints: Endpoints, client_id: str, topic: str) -> None:
    """Create a persistent session subscribed to `topic`, then leave: the broker queues for it from now on."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    done = threading.Event()
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.on_connect = lambda cl, *_: cl.subscribe(topic, qos=1)
    c.on_subscribe = lambda *_: done.set()
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    c.connect(endpoints.mqtt_host, endpoints.mqtt_port, clean_start=True, properties=props)
    c.loop_start()
    if not done.wait(10):
        raise RuntimeError("could not subscribe")
    c.disconnect()
    c.loop_stop()


def _publish_part(args: tuple[str, int, int, int, int, int, int, int]) -> int:
    host, port, devices, gateways, per_device, per_message, part, parts = args
    from gateway import BrokerConfig, Publisher

    sent = 0
    with Publisher(BrokerConfig(host, port, client_id=f"bench-pub-{part}-{os.getpid()}"), max_inflight=2000) as pub:
        for topic, payload in messages(devices, gateways, per_device, per_message, part, parts):
            pub.publish(topic, payload, timeout=300)
            sent += 1
        if not pub.wait_acked(300):
            raise RuntimeError("publisher: not every message acknowledged")
    return sent


def publish(endpoints: Endpoints, a: argparse.Namespace, per_message: int) -> tuple[int, float]:
    """Publish the whole stream from `a.publishers` processes; returns (messages, seconds)."""
    jobs = [
        (endpoints.mqtt_host, endpoints.mqtt_port, a.devices, a.gateways, a.per_device, per_message, p, a.publishers)
        for p in range(a.publishers)
    ]
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(a.publishers) as pool:
        sent = sum(pool.map(_publish_part, jobs))
    return sent, time.perf_counter() - t0


# --- the modes ----------------------------------------------------------------------------------------------


def raw_influx(endpoints: Endpoints, a: argparse.Namespace) -> float:
    db = "bench_raw"
    fresh_db(endpoints, db)
    bodies = line_protocol(a.devices, a.per_device)
    queue = list(reversed(bodies))
    lock = threading.Lock()

    def writer() -> None:
        with httpx.Client(base_url=endpoints.influx_url, timeout=120) as http:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                r = http.post("/write", params={"db": db, "precision": "ms"}, content=body)
                if r.status_code != 204:
                    raise RuntimeError(r.text)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    influxd = service_pids(endpoints)["influxdb"]
    cpu0 = cpu_seconds(influxd)
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    print(f"  raw: {elapsed:.1f} s; CPU-us per point in influxd {(cpu_seconds(influxd) - cpu0) / a.readings * 1e6:.2f}")
    stored = count(endpoints, db)
    if stored != a.readings:
        raise RuntimeError(f"raw: stored {stored} of {a.readings}")
    influx(endpoints, f'DROP DATABASE "{db}"')
    return a.readings / elapsed


def _metric(port: int, name: str) -> float:
    """One counter from ingest's /metrics. urllib, not `httpx.get`: that builds a client and its TLS context per
    call, 18 CPU-ms here, which polled every 0.05 s would take a third of a core from the run it measures."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def run_ingest(
    endpoints: Endpoints, a: argparse.Namespace, work: Path, per_message: int, label: str
) -> dict[str, float]:
    """Fill the session of a fresh ingest client, then time `python -m ingest` draining it into InfluxDB."""
    db, client = f"bench_{label}", f"bench-ingest-{label}"
    topic = f"dp/v1/{DISTRICT}/+/+/+"
    fresh_db(endpoints, db)
    make_session(endpoints, client, topic)
    sent, pub_s = publish(endpoints, a, per_message)
    print(f"  {label}: published {sent} messages in {pub_s:.1f} s ({sent / pub_s:,.0f} msgs/s, not timed)", flush=True)
    ready = work / f"{label}.ready"
    ready.unlink(missing_ok=True)  # a repeated run must not read the previous run's port
    env = os.environ | {
        "DP_MQTT_PORT": str(endpoints.mqtt_port),
        "DP_INFLUX_PORT": str(endpoints.influx_port),
        "DP_LOG_LEVEL": "WARNING",
    }
    cmd = [sys.executable, "-m", "ingest", "--registry", str(work / "registry.toml"), "--client-id", client]
    cmd += ["--topic", topic, "--influx-db", db, "--influx-version", "1", "--quarantine", str(work / f"{label}.q")]
    cmd += ["--metrics-port", "0", "--ready-file", str(ready), "--session-expiry", "3600", *a.ingest_arg]
    log = (work / f"{label}.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        while not ready.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"ingest exited: {(work / f'{label}.log').read_text()[-2000:]}")
            time.sleep(0.01)
        cpu0 = cpu_seconds(proc.pid)
        services0 = {n: cpu_seconds(pid) for n, pid in service_pids(endpoints).items()}
        announced = json.loads(ready.read_text())
        port = int(announced["metrics_port"])
        # The drain is timed by ingest's own clock, from its subscription to its last PUBACK: polling only says
        # when it is over, so the poll's period adds nothing to the figure and can be slow (each scrape costs
        # ingest 0.65 CPU-ms).
        while _metric(port, "dp_ingest_messages_acked_total") < sent:
            if proc.poll() is not None:
                raise RuntimeError(f"ingest exited: {(work / f'{label}.log').read_text()[-2000:]}")
            time.sleep(0.2)
        elapsed = _metric(port, "dp_ingest_last_ack_timestamp_seconds") - float(announced["subscribed_at"])
        cpu = cpu_seconds(proc.pid) - cpu0
        requests = _metric(port, "dp_ingest_write_requests_total")
        others = {n: cpu_seconds(pid) - services0[n] for n, pid in service_pids(endpoints).items()}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
    stored = count(endpoints, db)
    if stored != a.readings:
        raise RuntimeError(f"{label}: stored {stored} of {a.readings}")
    influx(endpoints, f'DROP DATABASE "{db}"')
    print(
        f"  {label}: {elapsed:.1f} s; CPU-us per reading: ingest {cpu / a.readings * 1e6:.2f}, "
        + ", ".join(f"{n} {v / a.readings * 1e6:.2f}" for n, v in others.items())
        + f"; {requests:.0f} write requests ({a.readings / max(requests, 1):,.0f} readings each)",
        flush=True,
    )
    return {"per_s": a.readings / elapsed, "seconds": elapsed, "cpu_us_per_reading": cpu / a.readings * 1e6}


def _bare_subscriber(host: str, port: int, client: str, topic: str, expected: int, out: Path) -> None:
    """Acknowledge every message as it arrives; write the elapsed time from subscription to the last one."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    state = {"n": 0, "t0": 0.0}
    done = threading.Event()

    def on_message(c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        c.ack(msg.mid, msg.qos)
        state["n"] += 1
        if state["n"] == expected:
            done.set()

    def on_connect(c: mqtt.Client, *_: object) -> None:
        state["t0"] = time.perf_counter()
        c.subscribe(topic, qos=1)

    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client, protocol=mqtt.MQTTv5, manual_ack=True
    )
    c.on_message = on_message
    c.on_connect = on_connect
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 1000
    c.connect(host, port, clean_start=False, properties=props)
    c.loop_start()
    done.wait(3600)
    elapsed = time.perf_counter() - state["t0"]
    c.disconnect()
    c.loop_stop()
    out.write_text(json.dumps({"n": state["n"], "seconds": elapsed}))


def bare_subscriber(endpoints: Endpoints, a: argparse.Namespace, work: Path) -> float:
    client, topic = "bench-bare", f"dp/v1/{DISTRICT}/+/+/+"
    make_session(endpoints, client, topic)
    sent, pub_s = publish(endpoints, a, 1)
    print(f"  bare: published {sent} messages in {pub_s:.1f} s ({sent / pub_s:,.0f} msgs/s, not timed)", flush=True)
    out = work / "bare.json"
    proc = mp.get_context("fork").Process(
        target=_bare_subscriber, args=(endpoints.mqtt_host, endpoints.mqtt_port, client, topic, sent, out)
    )
    proc.start()
    proc.join(3600)
    result = json.loads(out.read_text())
    if result["n"] != sent:
        raise RuntimeError(f"bare subscriber got {result['n']} of {sent}")
    return float(sent / result["seconds"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readings", type=int, default=1_000_000)
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--gateways", type=int, default=10)
    p.add_argument("--publishers", type=int, default=4)
    p.add_argument("--per-message", type=int, default=100)
    p.add_argument("--ingest-arg", action="append", default=[], help="extra argument for `python -m ingest`")
    p.add_argument("--only", choices=["batched", "single"], help="run one pair of modes (no JSON line)")
    p.add_argument("--repeat", type=int, default=3, help="raw + batched pairs; the median ratio is reported")
    a = p.parse_args()
    if a.readings % a.devices:
        p.error("--readings must be a multiple of --devices")
    a.per_device = a.readings // a.devices

    with tempfile.TemporaryDirectory(prefix="dp-bench-") as tmp:
        work = Path(tmp)
        (work / "registry.toml").write_text(registry_toml(a.devices, a.gateways))
        endpoints = Endpoints.from_env(
            {"DP_MQTT_PORT": str(free_port()), "DP_INFLUX_PORT": str(free_port(pair=True)), "DP_STATE_DIR": tmp}
        )
        real_render: Callable[[Endpoints], str] = services.render_mosquitto_conf
        services.render_mosquitto_conf = lambda ep: real_render(ep) + "\nmax_queued_messages 0\n"  # type: ignore[assignment]
        services.up(endpoints, log=lambda _: None)
        try:
            print(f"ingest_throughput: {a.readings:,} readings from {a.devices} devices, {a.publishers} publishers")
            if a.only != "single":
                pairs = []
                for _ in range(a.repeat):
                    raw = raw_influx(endpoints, a)
                    print(f"raw InfluxDB, 2 writers:        {raw:12,.0f} points/s", flush=True)
                    batched = run_ingest(endpoints, a, work, a.per_message, "batched")
                    print(
                        f"ingest, {a.per_message} readings/message:  {batched['per_s']:12,.0f} readings/s"
                        f"  ratio {batched['per_s'] / raw:.3f}",
                        flush=True,
                    )
                    pairs.append((batched["per_s"] / raw, raw, batched))
                # a 1M-point run lasts 2-3 s, and the raw rate alone varied 440-515k points/s between runs here:
                # the pair with the median ratio is reported, every pair's ratio beside it
                pairs.sort(key=lambda pair: pair[0])
                _, raw, batched = pairs[len(pairs) // 2]
                ratios = [round(pair[0], 3) for pair in pairs]
            if a.only != "batched":
                bare = bare_subscriber(endpoints, a, work)
                print(f"bare paho subscriber (QoS 1):   {bare:12,.0f} msgs/s", flush=True)
                single = run_ingest(endpoints, a, work, 1, "single")
                print(
                    f"ingest, 1 reading/message:      {single['per_s']:12,.0f} readings/s"
                    f"  ratio {single['per_s'] / bare:.3f}",
                    flush=True,
                )
        finally:
            services.down(endpoints, log=lambda _: None)
    if a.only:
        return 0
    result = {
        "batched_readings_per_s": round(batched["per_s"]),
        "raw_influx_points_per_s": round(raw),
        "ratio_batched_to_raw": round(batched["per_s"] / raw, 3),
        "ratio_batched_to_raw_each_run": ratios,
        "single_readings_per_s": round(single["per_s"]),
        "bare_subscriber_msgs_per_s": round(bare),
        "ratio_single_to_bare": round(single["per_s"] / bare, 3),
        "readings": a.readings,
        "devices": a.devices,
        "per_message": a.per_message,
        "ingest_cpu_us_per_reading_batched": round(batched["cpu_us_per_reading"], 2),
        "ingest_cpu_us_per_reading_single": round(single["cpu_us_per_reading"], 2),
    }
    print(
        f"ratio batched/raw = {result['ratio_batched_to_raw']} (target >= 0.8), "
        f"single/bare = {result['ratio_single_to_bare']} (target >= 0.5)"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

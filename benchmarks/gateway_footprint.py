"""Gateway footprint: 500 simulated devices through the durable spool to the real Mosquitto.

Each phase runs the real gateway (`gateway.cli.build_gateway` + `Gateway.run`, exactly what `districtpulse
gateway --config` runs) in a child process of its own, which measures itself (wall time, CPU time and peak
RSS from getrusage), so the figures are the gateway process's and nothing else's:

1. spool: the simulated adapter produces as fast as it can (500 devices, `--ticks` ticks) while the broker
   is unreachable; `spool_readings_per_s` = readings committed (group commit, synchronous=FULL) per second.
   Baseline in the same run: one commit per reading (what a spool without group commit does).
2. drain: the broker is reachable and the spool of phase 1 drains; `publish_readings_per_s` = readings
   acknowledged by Mosquitto (PUBACK) per second, each deleted once a stand-in for ingest (`StandIn`, in the
   parent process) has confirmed it. Baseline in the same run: the skeleton's
   publisher sending the same number of readings from memory (no spool), in messages of the same size.
3. steady: 500 devices at `--steady-rate` readings/s each for `--steady-s` seconds, published every second;
   `cpu_s_per_1000_readings` is the gateway's CPU time (user + system) over the readings it delivered.

`peak_rss_mb` is the largest peak RSS of the three gateway processes (run with the systemd unit's
MALLOC_ARENA_MAX=2); about 28 MiB of it is the interpreter with its imports and the built gateway
(no pydantic since issue 4: the gateway's config and registry reader are plain dataclasses). Targets (issue 4):
spool_readings_per_s >= 20,000 and peak_rss_mb <= 40. The last line is one JSON object.

    PYTHONPATH=. python benchmarks/gateway_footprint.py                   # ~1 minute
    PYTHONPATH=. python benchmarks/gateway_footprint.py --ticks 40 --steady-s 5   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
[gateway]
id = "{gateway}"
district = "{district}"
publish_interval_s = {publish_interval_s}
heartbeat_interval_s = 60
max_batch_readings = 500

[mqtt]
host = "127.0.0.1"
port = {port}
reconnect_min_s = 0.2
reconnect_max_s = 1

[spool]
path = "spool.sqlite"
commit_interval_ms = 200
synchronous = "FULL"

[[adapter]]
type = "{adapter}"
{adapter_body}
"""


def _peak_rss_mb() -> float:
    """This program's peak RSS: VmHWM, the high-water mark of the memory of the program exec'd. Not getrusage's
    ru_maxrss, which Linux carries over an exec from the process that forked it: a child of a big parent
    would report the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rusage() -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, _peak_rss_mb()


# -- child: one gateway process per phase ---------------------------------------------------------------------
def child(phase: str, config_path: Path, total: int) -> None:
    from gateway.cli import build_gateway
    from gateway.config import GatewayConfig

    gateway = build_gateway(GatewayConfig.load(config_path))
    spool = gateway.spool
    cpu0, _ = _rusage()  # startup (imports, config) is not per-reading work
    stop = threading.Event()
    done = threading.Event()
    t0 = time.perf_counter()
    elapsed: list[float] = []

    def committed() -> int:
        return sum(spool.committed_upto(d) + 1 for d in list(spool.device_ids))

    def watch_spool() -> None:  # phase 1: stop once every reading is committed
        while not stop.is_set():
            if committed() >= total:
                elapsed.append(time.perf_counter() - t0)
                stop.set()
            time.sleep(0.005)

    def watch_acks() -> None:  # phase 2: until the broker has acknowledged every reading spooled at start
        while gateway.counts.acked_readings < total and not done.is_set():
            time.sleep(0.002)
        elapsed.append(time.perf_counter() - t0)

    if phase == "spool":
        threading.Thread(target=watch_spool, daemon=True).start()
        code = gateway.run(stop)
    elif phase == "drain":
        watcher = threading.Thread(target=watch_acks, daemon=True)
        watcher.start()
        code = gateway.run(stop, exit_when_idle=True)
        done.set()
        watcher.join()
    else:
        code = gateway.run(stop, exit_when_idle=True)
        elapsed.append(time.perf_counter() - t0)
    done.set()
    cpu1, rss = _rusage()
    print(
        json.dumps(
            {
                "phase": phase,
                "exit": code,
                "elapsed_s": elapsed[0],
                "committed": committed(),
                "acked_readings": gateway.counts.acked_readings,
                "messages": gateway.counts.messages,
                "cpu_s": cpu1 - cpu0,
                "peak_rss_mb": rss,
                "left_in_spool": spool.readings,
            }
        )
    )


def run_child(phase: str, config: Path, total: int) -> dict[str, Any]:
    # The environment of deploy/systemd/districtpulse-gateway.service (MALLOC_ARENA_MAX=2).
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DP_LOG_LEVEL": "WARNING", "MALLOC_ARENA_MAX": "2"}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", phase, "--config", str(config), "--total", str(total)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{phase} child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- baselines (in this process) -------------------------------------------------------------------------------
def per_reading_commit_rate(folder: Path, n: int) -> float:
    """Readings/s into the same spool with a commit (and fsync) per reading: no group commit."""
    from gateway.adapters.base import DeviceRef
    from gateway.adapters.simulated import values_fn
    from gateway.spool import Spool

    spool = Spool(folder / "baseline.sqlite", synchronous="FULL")
    devices = [DeviceRef(f"b{i:04d}", kind) for i, kind in enumerate(_kinds() * 100)][:500]
    for d in devices:
        spool.add_device(d.id, d.kind)
    fns = [(d.id, values_fn(d, 0)) for d in devices]
    t0 = time.perf_counter()
    now = time.time_ns() // 1_000_000
    for i in range(n):
        device, fn = fns[i % len(fns)]
        spool.append(device, fn(now))
        spool.commit()
    rate = n / (time.perf_counter() - t0)
    spool.close()
    return rate


def direct_publish_rate(port: int, devices: int, batch: int) -> float:
    """Readings/s through the skeleton's publisher alone: one message of `batch` readings per device, as the
    drain phase sends, built beforehand."""
    from devices import encode_batch, units_for
    from gateway.adapters.base import DeviceRef
    from gateway.adapters.simulated import values_fn
    from gateway.publisher import BrokerConfig, Publisher

    district = f"benchdirect{uuid.uuid4().hex[:6]}"
    now = time.time_ns() // 1_000_000
    messages = []
    for i, kind in enumerate((_kinds() * devices)[:devices]):
        device = DeviceRef(f"direct-{i:04d}", kind)
        fn = values_fn(device, 0)
        rows = [(now + k, dict(fn(now + k))) for k in range(batch)]
        payload = encode_batch(device.id, 0, units_for(kind), rows)  # type: ignore[arg-type]
        messages.append((f"dp/v1/{district}/gw/{device.id}/{kind.value}", payload))
    with Publisher(BrokerConfig("127.0.0.1", port, client_id=f"bench-{district}"), max_inflight=100) as pub:
        t0 = time.perf_counter()
        for topic, payload in messages:
            pub.publish(topic, payload)
        if not pub.wait_acked(120):
            raise SystemExit("direct publish: not acknowledged within 120 s")
        return devices * batch / (time.perf_counter() - t0)


class StandIn:
    """Stands in for ingest's last step: confirms every readings message of the district as it arrives (at
    QoS 1, on the gateway's confirmation topic), so that the gateway deletes it. It runs in this process, not
    the gateway's, so the gateway's figures stay its own; there is no subscriber without it, and a gateway
    keeps what the broker answers "no matching subscribers" for."""

    def __init__(self, port: int, district: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from devices.topics import confirm_topic
        from devices.wire import encode_confirms

        def on_message(client: Any, _u: Any, msg: Any) -> None:
            levels = msg.topic.split("/")
            doc = json.loads(msg.payload)
            for payload in encode_confirms({doc["device"]: [tuple(doc["seq"])]}, by="bench", ts_ms=0):
                client.publish(confirm_topic(levels[2], levels[3]), payload, qos=1)

        subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"bench-confirm-{district}"
        )
        self.client.on_message = on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(f"dp/v1/{district}/+/+/+", qos=1)
        if not subscribed.wait(10):
            raise SystemExit("the confirming stand-in could not subscribe")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def clear_status(port: int, district: str, gateway: str) -> None:
    """Remove the gateway's retained status (a real gateway leaves its last one; a benchmark must not)."""
    from devices.topics import status_topic
    from gateway.publisher import BrokerConfig, Publisher

    with Publisher(BrokerConfig("127.0.0.1", port, client_id=f"bench-clear-{district}")) as pub:
        pub.publish(status_topic(district, gateway), b"", retain=True)
        if not pub.wait_acked(30):
            raise SystemExit("could not clear the retained status")


def _kinds() -> list[Any]:
    from devices.kinds import DeviceKind

    return list(DeviceKind)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens there once the socket is closed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--ticks", type=int, default=200, help="phase 1: readings per device")
    parser.add_argument("--steady-s", type=float, default=20.0)
    parser.add_argument("--steady-rate", type=float, default=2.0, help="phase 3: readings/s per device")
    parser.add_argument("--baseline-readings", type=int, default=1000)
    parser.add_argument("--child", choices=["spool", "drain", "steady"])
    parser.add_argument("--config", type=Path)
    parser.add_argument("--total", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.config, args.total)
        return

    from devices.endpoints import Endpoints
    from districtpulse.services import up

    endpoints = Endpoints.from_env()
    up(endpoints, log=lambda _m: None)
    district = f"bench{uuid.uuid4().hex[:8]}"
    n = args.devices
    with tempfile.TemporaryDirectory(prefix="gw-footprint-") as tmp:
        folder = Path(tmp)
        (folder / "empty.jsonl").write_text("")
        sim = f"count = {n}\ninterval_s = 0.000001\nticks = {args.ticks}"

        def config(name: str, port: int, adapter: str, body: str, publish_interval_s: float) -> Path:
            path = folder / f"{name}.toml"
            path.write_text(
                CONFIG.format(
                    gateway=f"{district}-gw",
                    district=district,
                    port=port,
                    adapter=adapter,
                    adapter_body=body,
                    publish_interval_s=publish_interval_s,
                )
            )
            return path

        total = n * args.ticks
        confirmer = StandIn(endpoints.mqtt_port, district)  # ingest's last step, so the spool may drain
        spool = run_child("spool", config("spool", _closed_port(), "simulated", sim, 1.0), total)
        print(f"spool: {spool}")
        drain_config = config("drain", endpoints.mqtt_port, "replay", 'file = "empty.jsonl"', 0.2)
        drain = run_child("drain", drain_config, spool["committed"])
        print(f"drain: {drain}")
        if drain["acked_readings"] != spool["committed"] or drain["left_in_spool"] != 0:
            raise SystemExit(f"drain did not deliver the spool: {drain}")
        (folder / "spool.sqlite").unlink()
        ticks = max(1, round(args.steady_s * args.steady_rate))
        steady_body = f"count = {n}\ninterval_s = {1 / args.steady_rate}\nticks = {ticks}"
        steady = run_child("steady", config("steady", endpoints.mqtt_port, "simulated", steady_body, 1.0), 0)
        print(f"steady: {steady}")
        if steady["acked_readings"] != n * ticks:
            raise SystemExit(f"steady phase lost readings: {steady}")
        baseline_spool = per_reading_commit_rate(folder, args.baseline_readings)
        baseline_publish = direct_publish_rate(endpoints.mqtt_port, n, min(args.ticks, 500))
        clear_status(endpoints.mqtt_port, district, f"{district}-gw")
        confirmer.close()

    spool_rate = spool["committed"] / spool["elapsed_s"]
    publish_rate = drain["acked_readings"] / drain["elapsed_s"]
    peak = max(spool["peak_rss_mb"], drain["peak_rss_mb"], steady["peak_rss_mb"])
    result = {
        "devices": n,
        "spool_readings_per_s": round(spool_rate),
        "spool_per_reading_commit_readings_per_s": round(baseline_spool),
        "group_commit_speedup": round(spool_rate / baseline_spool, 1),
        "publish_readings_per_s": round(publish_rate),
        "direct_publish_readings_per_s": round(baseline_publish),
        "publish_vs_direct": round(publish_rate / baseline_publish, 2),
        "peak_rss_mb": round(peak, 1),
        "peak_rss_mb_by_phase": {p["phase"]: round(p["peak_rss_mb"], 1) for p in (spool, drain, steady)},
        "cpu_s_per_1000_readings": round(steady["cpu_s"] / steady["acked_readings"] * 1000, 4),
        "cpu_s_per_1000_readings_spool_phase": round(spool["cpu_s"] / spool["committed"] * 1000, 4),
        "steady_readings_per_s": round(n * args.steady_rate),
        "targets": {"spool_readings_per_s": 20_000, "peak_rss_mb": 40},
        "meets_targets": spool_rate >= 20_000 and peak <= 40,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Claim: one process drives the Scalable Cities fleet (17,500 meters, 500 chargers, 700 sensors) far above
real time, and several publisher connections beat one.

Prints, measured in this run: the generation rate without a broker (the ceiling), the publish rate over one
connection (the baseline) and over N connections, and the ratio N/1. Publishes under a topic root no
consumer subscribes to (`bench/v1` by default), for a few seconds each: nothing queues anywhere.

    PYTHONPATH=. python benchmarks/simulator_scale.py [--connections 4] [--seconds 8]
"""

from __future__ import annotations

import argparse
import itertools
import time
from datetime import date

from devices.endpoints import Endpoints
from simulators import SimConfig, Simulation
from simulators.engine import Message
from simulators.fleets import SCALABLE_CITIES_CADENCES, scalable_cities
from simulators.publish import publish

DAY = date(2026, 11, 20)
REAL_TIME_MSGS_PER_S = 17_500 / 3600 + 500 / 300 + 700 / 900 + 700 / 3600 + 1 / 600


def simulation() -> Simulation:
    return Simulation(scalable_cities("bench"), SimConfig(start=DAY, cadences=SCALABLE_CITIES_CADENCES, stagger=True))


def generation_rate(seconds: float) -> tuple[float, float]:
    t0 = time.monotonic()
    n = r = 0
    for item in simulation().messages():
        n, r = n + 1, r + item.readings
        if n % 1000 == 0 and time.monotonic() - t0 > seconds:
            break
    elapsed = time.monotonic() - t0
    return n / elapsed, r / elapsed


def publish_rate(connections: int, seconds: float, root: str) -> tuple[float, float]:
    env = Endpoints.from_env()
    items = (m for m in simulation().messages() if isinstance(m, Message))
    report = publish(
        itertools.islice(items, 10_000_000),
        host=env.mqtt_host,
        port=env.mqtt_port,
        connections=connections,
        client_prefix=f"bench-{connections}",
        topic_root=root,
        time_limit_s=seconds,
    )
    return report.messages_per_s, report.readings_per_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--topic-root", default="bench/v1")
    args = p.parse_args()
    gen_msgs, gen_readings = generation_rate(args.seconds)
    print(f"generation only:       {gen_msgs:8,.0f} msgs/s {gen_readings:9,.0f} readings/s")
    one_msgs, one_readings = publish_rate(1, args.seconds, args.topic_root)
    print(f"publish, 1 connection: {one_msgs:8,.0f} msgs/s {one_readings:9,.0f} readings/s  (baseline)")
    n_msgs, n_readings = publish_rate(args.connections, args.seconds, args.topic_root)
    print(f"publish, {args.connections} connections: {n_msgs:8,.0f} msgs/s {n_readings:9,.0f} readings/s")
    print(f"ratio {args.connections} connections / 1: {n_msgs / one_msgs:.2f}")
    speedup = n_msgs / REAL_TIME_MSGS_PER_S
    print(f"real-time rate of the fleet: {REAL_TIME_MSGS_PER_S:.1f} msgs/s -> {speedup:,.0f}x real time")


if __name__ == "__main__":
    main()

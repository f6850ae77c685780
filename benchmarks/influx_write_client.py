"""CPU per InfluxDB write: storage.http1 (what the 1.x writer sends writes with) against httpx, same run, same bodies.

    PYTHONPATH=. python benchmarks/influx_write_client.py [--requests 200] [--lines 5000]

Both clients post the same line protocol bodies (5,000 lines of 4 fields, what ingest sends) one after the other
on one keep-alive connection to the real InfluxDB (`districtpulse services up`), in one database that is
dropped at the end. The figure is this process's CPU time (user + system) per request, which is what a
writer costs ingest; the server's time is the same for both. The last line is one JSON object with
`http1_cpu_ms_per_request`, `httpx_cpu_ms_per_request` and `httpx_over_http1`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devices.endpoints import Endpoints  # noqa: E402
from districtpulse.services import up  # noqa: E402
from storage.http1 import Http1Client  # noqa: E402

DB = "bench_write_client"


def bodies(requests: int, lines: int) -> list[bytes]:
    out = []
    for r in range(requests):
        device = f"em{r % 50}"
        key = f"electricity,district=bench,building=b1,device={device}"
        t0 = 1_788_000_000_000 + (r // 50) * lines * 60_000
        out.append(
            "\n".join(
                f"{key} energy_import={1000 + k * 0.25},power={500.0 + k % 1000},voltage=230.0,seq={k}i "
                f"{t0 + k * 60_000}"
                for k in range(lines)
            ).encode()
        )
    return out


async def timed(name: str, post: Callable[[bytes], Awaitable[int]], data: list[bytes]) -> float:
    for body in data[:3]:  # warm up: connection, first allocations
        await post(body)
    cpu0 = time.process_time()
    for body in data:
        status = await post(body)
        if status != 204:
            raise SystemExit(f"{name}: InfluxDB answered {status}")
    per_request_ms = (time.process_time() - cpu0) / len(data) * 1000
    print(f"{name:6s} {per_request_ms:7.3f} CPU-ms per request", flush=True)
    return per_request_ms


async def run(endpoints: Endpoints, data: list[bytes]) -> dict[str, float]:
    params = {"db": DB, "precision": "ms"}
    async with httpx.AsyncClient(base_url=endpoints.influx_url, timeout=60) as hx:
        await hx.post("/query", data={"q": f'CREATE DATABASE "{DB}"'})
        http1 = Http1Client(endpoints.influx_url, timeout=60)

        async def via_http1(body: bytes) -> int:
            return (await http1.post("/write", params, body)).status

        async def via_httpx(body: bytes) -> int:
            return (await hx.post("/write", params=params, content=body)).status_code

        try:
            # twice each, interleaved, so that neither profits from a warmer machine; the better run counts
            results: dict[str, list[float]] = {"http1": [], "httpx": []}
            for _ in range(2):
                results["http1"].append(await timed("http1", via_http1, data))
                results["httpx"].append(await timed("httpx", via_httpx, data))
        finally:
            await http1.aclose()
            await hx.post("/query", data={"q": f'DROP DATABASE "{DB}"'})
    return {name: min(values) for name, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--lines", type=int, default=5000)
    args = parser.parse_args()
    endpoints = Endpoints.from_env()
    up(endpoints, log=lambda _m: None)
    data = bodies(args.requests, args.lines)
    best = asyncio.run(run(endpoints, data))
    result = {
        "requests": args.requests,
        "lines_per_request": args.lines,
        "http1_cpu_ms_per_request": round(best["http1"], 3),
        "httpx_cpu_ms_per_request": round(best["httpx"], 3),
        "httpx_over_http1": round(best["httpx"] / best["http1"], 2),
        "http1_cpu_us_per_line": round(best["http1"] * 1000 / args.lines, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

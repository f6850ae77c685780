"""Aggregation speed: numba kernels against pandas doing the same work, in the same run.

Part (a), rollups (this file's owner: aggregation): a synthetic fleet of ``--devices`` meters with
``--readings`` register readings in total (default 100M), sorted by device then time as a query grouped by
device returns them, is turned into interval energy (``interval_energy_grouped``) and summed into 15-minute
Europe/Helsinki buckets per building (``rollup``, ``closed="right"`` because interval energy is stamped at the
end of its interval). pandas does the same in the same run, in chunks of whole devices to bound its memory:
the rollup with ``aggregation.reference.rollup`` (the very spec the tests compare against, via the comparison
table), the interval energy with a groupby-diff that handles resets and the power limit but no glitch look-ahead
(a lower bound for pandas). The rollup results of both are checked to agree before any figure is printed.

Compile time is reported on its own: a first call on a tiny input in a fresh process with an empty numba cache
(``compile_s``), and in this process with the on-disk cache (``first_call_cached_s``). Steady-state figures are
the best of ``--repeat`` runs of the public wrappers (argument checks included); kernel-only figures are printed
beside them.

Part (b), CalTRACK: see ``caltrack_figures`` (HOOK, filled in by the CalTRACK owner).

The last line is one JSON object with ``rollup_readings_per_s``, ``rollup_speedup_vs_pandas``,
``caltrack_daily_s_17500``, ``caltrack_hourly_s_17500``, ``speedup_vs_eemeter_daily`` (null until measured)
and the other figures.

    PYTHONPATH=. python benchmarks/aggregation_speed.py            # 100M readings: ~3.5 GB, a few minutes
    PYTHONPATH=. python benchmarks/aggregation_speed.py --readings 2000000 --devices 200   # smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aggregation import _bucket_kernels, _kernels, bin_edges, interval_energy_grouped, rollup
from aggregation.comparisons import COMPARISONS

T0 = 1_711_497_600_000  # 2024-03-27 00:00 UTC: the week crosses the EU spring DST change
MAX_POWER_W = 20_000.0


def make_fleet(n: int, n_devices: int, seed: int) -> dict[str, Any]:
    """Register readings 30-90 s apart (so 10,000 readings are about a week), ~1 % NaN, rare dips to 0 and
    spikes, generated a block of devices at a time into preallocated arrays (bounded temporaries)."""
    rng = np.random.default_rng(seed)
    sizes = np.full(n_devices, n // n_devices, dtype=np.int64)
    sizes[: n % n_devices] += 1
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    labels = np.repeat(np.arange(n_devices, dtype=np.int64), sizes)
    ts = np.empty(n, dtype=np.int64)
    register = np.empty(n, dtype=np.float64)
    block = max(1, 5_000_000 // max(int(sizes.max()), 1))
    for first in range(0, n_devices, block):
        last = min(first + block, n_devices)
        lo, hi = int(offsets[first]), int(offsets[last])
        gaps = rng.integers(30_000, 90_000, size=hi - lo)
        power_w = rng.uniform(0.0, 0.8 * MAX_POWER_W, size=hi - lo)
        energy = power_w * gaps / 3.6e9
        for d in range(first, last):  # cumulative per device
            a, b = int(offsets[d]) - lo, int(offsets[d + 1]) - lo
            ts[lo + a : lo + b] = T0 + np.cumsum(gaps[a:b])
            register[lo + a : lo + b] = rng.uniform(0.0, 1e5) + np.cumsum(energy[a:b])
        chunk = register[lo:hi]
        chunk[rng.random(hi - lo) < 0.01] = np.nan
        chunk[rng.random(hi - lo) < 1e-4] = 0.0
        chunk[rng.random(hi - lo) < 1e-4] += 1e4
    return {"offsets": offsets, "labels": labels, "ts": ts, "register": register}


def best_of(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    best, result = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def compile_times() -> dict[str, float]:
    """First call of each kernel on a tiny input: compilation, or loading from the on-disk cache."""
    ts = np.arange(4, dtype=np.int64)
    values = np.ones(4)
    offsets = np.array([0, 4], dtype=np.int64)
    out = np.empty(4)
    events = np.empty(4, dtype=np.int8)
    sums = np.zeros((1, 1))
    counts = np.zeros((1, 1), dtype=np.int64)
    times = {}
    start = time.perf_counter()
    _kernels.interval_energy_grouped(offsets, ts, values, np.full(1, np.nan), np.full(1, np.nan), 3, out, events)
    times["interval_energy_grouped"] = time.perf_counter() - start
    start = time.perf_counter()
    _bucket_kernels.bucket_sum(offsets, np.zeros(1, np.int64), ts, values, np.array([0, 10]), sums, counts)
    times["bucket_sum"] = time.perf_counter() - start
    return times


def cold_compile_times() -> dict[str, float]:
    """:func:`compile_times` in a fresh process with an empty numba cache: the real compilation cost."""
    with tempfile.TemporaryDirectory() as cache:
        done = subprocess.run(
            [sys.executable, __file__, "--compile-only"],
            env=os.environ | {"NUMBA_CACHE_DIR": cache},
            capture_output=True,
            text=True,
            check=True,
        )
    times: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return times


def pandas_interval_energy(labels: np.ndarray, ts: np.ndarray, register: np.ndarray) -> np.ndarray:
    """Interval energy the pandas way: NaN readings dropped, groupby-diff, a drop counts from zero, an increase
    above the power limit is NaN (no look-ahead, jumps not excluded: less work than the kernel)."""
    frame = pd.DataFrame({"device": labels, "ts": ts, "register": register}).dropna()
    by_device = frame.groupby("device", sort=False)
    delta = by_device["register"].diff()
    hours = by_device["ts"].diff() / 3.6e6
    energy = delta.where(delta >= 0, frame["register"])
    energy = energy.where(energy <= MAX_POWER_W * hours / 1000.0)
    out = np.full(register.shape[0], np.nan)
    out[frame.index.to_numpy()] = energy.to_numpy()
    return out


def in_chunks(offsets: np.ndarray, chunk: int) -> list[tuple[int, int, int, int]]:
    """(first device, last device, first reading, last reading) blocks of whole devices, ~``chunk`` readings."""
    blocks, first = [], 0
    n_devices = offsets.shape[0] - 1
    while first < n_devices:
        last = int(np.searchsorted(offsets, offsets[first] + chunk, side="right")) - 1
        last = min(max(last, first + 1), n_devices)
        blocks.append((first, last, int(offsets[first]), int(offsets[last])))
        first = last
    return blocks


def part_a(args: argparse.Namespace) -> dict[str, Any]:
    print(f"generating {args.readings:,} readings of {args.devices:,} devices ...", flush=True)
    start = time.perf_counter()
    fleet = make_fleet(args.readings, args.devices, args.seed)
    offsets, labels, ts, register = fleet["offsets"], fleet["labels"], fleet["ts"], fleet["register"]
    n = ts.shape[0]
    print(f"  generated in {time.perf_counter() - start:.1f} s", flush=True)

    cold_s = cold_compile_times()
    print(f"compile s (fresh process, empty cache): {cold_s}", flush=True)
    compile_s = compile_times()
    print(f"first call s (this process, on-disk cache): {compile_s}", flush=True)

    # ---- interval energy -------------------------------------------------------------------------------
    interval_s, result = best_of(
        args.repeat, lambda: interval_energy_grouped(labels, ts, register, max_power_w=MAX_POWER_W)
    )
    energy = result.energy_kwh
    out = np.empty(n)
    events = np.empty(n, dtype=np.int8)
    powers = np.full(args.devices, MAX_POWER_W)
    widths = np.full(args.devices, np.nan)
    interval_kernel_s, _ = best_of(
        args.repeat, lambda: _kernels.interval_energy_grouped(offsets, ts, register, widths, powers, 3, out, events)
    )
    print(
        f"interval energy numba: {n / interval_s / 1e6:.0f}M readings/s"
        f" (kernel only {n / interval_kernel_s / 1e6:.0f}M/s)"
    )
    print(f"  events: {result.event_counts()}", flush=True)
    start = time.perf_counter()
    for _, _, lo, hi in in_chunks(offsets, args.pandas_chunk):
        pandas_interval_energy(labels[lo:hi], ts[lo:hi], register[lo:hi])
    pandas_interval_s = time.perf_counter() - start
    print(f"interval energy pandas: {n / pandas_interval_s / 1e6:.1f}M readings/s", flush=True)

    # ---- rollup ------------------------------------------------------------------------------------------
    edges = bin_edges(int(ts.min()), int(ts.max()) + 1, "15min", "Europe/Helsinki")
    buildings = np.arange(args.devices, dtype=np.int64) % args.buildings
    rollup_s, rolled = best_of(
        args.repeat,
        lambda: rollup(ts, energy, edges, offsets=offsets, groups=buildings, n_groups=args.buildings, closed="right"),
    )
    sums = np.zeros((args.buildings, edges.shape[0] - 1))
    counts = np.zeros_like(sums, dtype=np.int64)
    right_edges = edges + 1

    def kernel_only() -> None:
        sums[:] = 0.0
        counts[:] = 0
        _bucket_kernels.bucket_sum(offsets, buildings, ts, energy, right_edges, sums, counts)

    rollup_kernel_s, _ = best_of(args.repeat, kernel_only)
    print(f"rollup numba: {n / rollup_s / 1e6:.0f}M readings/s (kernel only {n / rollup_kernel_s / 1e6:.0f}M/s)")

    reference = COMPARISONS["rollup_right"].reference  # the pandas spec the tests compare against
    ref_sums = np.zeros_like(rolled.sums)
    ref_counts = np.zeros_like(rolled.counts)
    start = time.perf_counter()
    for first, last, lo, hi in in_chunks(offsets, args.pandas_chunk):
        part_sums, part_counts = reference(
            ts_ms=ts[lo:hi],
            values=energy[lo:hi],
            edges=edges,
            offsets=offsets[first : last + 1] - lo,
            groups=buildings[first:last],
            n_groups=args.buildings,
        )
        ref_sums += part_sums
        ref_counts += part_counts
    pandas_rollup_s = time.perf_counter() - start
    print(f"rollup pandas: {n / pandas_rollup_s / 1e6:.1f}M readings/s", flush=True)
    np.testing.assert_array_equal(rolled.counts, ref_counts)
    np.testing.assert_allclose(rolled.sums, ref_sums, rtol=1e-9, atol=1e-9)
    print(f"  numba and pandas agree on {int(ref_counts.sum()):,} summed readings in {edges.shape[0] - 1} buckets")

    return {
        "readings": n,
        "devices": args.devices,
        "rollup_readings_per_s": n / rollup_s,
        "rollup_speedup_vs_pandas": pandas_rollup_s / rollup_s,
        "rollup_kernel_readings_per_s": n / rollup_kernel_s,
        "pandas_rollup_readings_per_s": n / pandas_rollup_s,
        "interval_readings_per_s": n / interval_s,
        "interval_kernel_readings_per_s": n / interval_kernel_s,
        "interval_speedup_vs_pandas": pandas_interval_s / interval_s,
        "pandas_interval_readings_per_s": n / pandas_interval_s,
        "compile_s": cold_s,
        "first_call_cached_s": compile_s,
    }


# ==== Part (b): CalTRACK =====================================================================================
# benchmarks/caltrack_speed.py measures it (a synthetic fleet of 17,500 meter-years, daily and hourly fits, and
# the speed-up against eemeter 3.2.0 on a sample of meters in the same run); it runs as its own process so its
# threads and memory do not mix with part (a), and its output is shown as it goes.


def caltrack_figures(args: argparse.Namespace) -> dict[str, float | None]:
    """Part (b): run benchmarks/caltrack_speed.py and return the figures of its last line."""
    del args
    script = Path(__file__).with_name("caltrack_speed.py")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    print(proc.stdout, end="")
    figures: dict[str, float | None] = json.loads(proc.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=100_000_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--buildings", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pandas-chunk", type=int, default=10_000_000, help="readings per pandas chunk")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-rollups", action="store_true", help="part (b) only")
    parser.add_argument("--skip-caltrack", action="store_true", help="part (a) only")
    parser.add_argument("--compile-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compile_only:
        print(json.dumps(compile_times()))
        return
    figures: dict[str, Any] = {"rollup_readings_per_s": None, "rollup_speedup_vs_pandas": None}
    if not args.skip_rollups:
        figures |= part_a(args)
    caltrack = caltrack_figures(args) if not args.skip_caltrack else {}
    figures |= {"caltrack_daily_s_17500": None, "caltrack_hourly_s_17500": None, "speedup_vs_eemeter_daily": None}
    figures |= caltrack
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()

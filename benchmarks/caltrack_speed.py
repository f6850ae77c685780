"""Benchmark (b) of issue 6: CalTRACK daily and hourly fits for a synthetic fleet of 17,500 meter-years.

    PYTHONPATH=. /tmp/probe-venv/bin/python benchmarks/caltrack_speed.py [--meters 17500] [--threads 2]
        [--eemeter-meters 3] [--eemeter-hourly-meters 1]

A fit is what a baseline needs: the degree-day temperature of every day and the 2014-candidate grid search
(daily), or occupancy, temperature bins and the 12 segment regressions over 8760 hours (hourly). Meters share
50 synthetic weather stations; each meter has its own balance points, slopes, schedule and noise. Data is
generated in chunks of 500 meters outside the timed region (bounded memory: about 40 MB per hourly chunk).
Compile time (or loading numba's on-disk cache) is measured on its own, before the steady-state figures.

The baseline in the same run is eemeter 3.2.0 from its own venv (``EEMETER_PYTHON``, default
``/tmp/eemeter-venv/bin/python``), timed on the first meters of the same fleet through
``create_caltrack_daily_design_matrix`` + ``fit_caltrack_usage_per_day_model`` (and the hourly pipeline);
it also reports whether its model type and balance points equal ours on those meters. Without that venv
the speed-up is skipped with a message (null in the JSON). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from aggregation import _caltrack_kernels as K

EEMETER_PYTHON = os.environ.get("EEMETER_PYTHON", "/tmp/eemeter-venv/bin/python")
N_STATIONS = 50
DAYS = 365
HOURS = DAYS * 24
CHUNK = 500
YEAR_START = np.datetime64("2019-01-01T00:00:00", "s")  # UTC, no daylight saving: a Tuesday


def station_temperatures(rng: np.random.Generator) -> np.ndarray:
    """(stations, hours) hourly degF: seasons, a daily swing, and weather that persists for days."""
    day = np.arange(HOURS) / 24.0
    hour = np.arange(HOURS) % 24
    base = 52 - 26 * np.cos(2 * np.pi * (day - 15) / 365) + 9 * np.sin(2 * np.pi * (hour - 9) / 24)
    weather = np.cumsum(rng.normal(0, 0.6, (N_STATIONS, HOURS)), axis=1)  # a random walk, kept bounded by
    weather = weather - np.array(  # removing its weekly moving average
        [np.convolve(w, np.ones(24 * 7) / (24 * 7), mode="same") for w in weather]
    )
    return base[None, :] + 3 * rng.normal(0, 1, (N_STATIONS, 1)) + 2.5 * weather


def daily_chunk(rng: np.random.Generator, temps: np.ndarray, first: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Usage per day (n, 365) and each meter's station."""
    station = (np.arange(first, first + n) * 7) % N_STATIONS
    td = temps[station].reshape(n, DAYS, 24).mean(axis=2)
    hbp = rng.integers(45, 66, (n, 1))
    cbp = np.maximum(hbp, rng.integers(60, 76, (n, 1)))
    kind = rng.integers(0, 4, (n, 1))  # flat, heating, cooling, both
    heat = np.where((kind == 1) | (kind == 3), rng.uniform(0.3, 2.0, (n, 1)), 0.0)
    cool = np.where((kind == 2) | (kind == 3), rng.uniform(0.3, 2.5, (n, 1)), 0.0)
    usage = rng.uniform(5, 30, (n, 1)) + heat * np.maximum(hbp - td, 0) + cool * np.maximum(td - cbp, 0)
    usage = usage * rng.lognormal(0, 0.12, (n, DAYS))
    usage[rng.random((n, DAYS)) < 0.03] = np.nan
    return usage, station


def hourly_chunk(rng: np.random.Generator, temps: np.ndarray, first: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Usage per hour (n, 8760) with an occupancy schedule, and each meter's station."""
    station = (np.arange(first, first + n) * 7) % N_STATIONS
    t = temps[station]
    hours = np.arange(HOURS)
    how = (((hours // 24) + 1) % 7) * 24 + hours % 24  # 2019-01-01 is a Tuesday
    open_h = rng.integers(6, 10, (n, 1))
    close_h = open_h + rng.integers(8, 12, (n, 1))
    hod = (how % 24)[None, :]
    busy = (how < 120)[None, :] & (hod >= open_h) & (hod < close_h)
    usage = (
        rng.uniform(0.5, 2, (n, 1))
        + busy * rng.uniform(1, 5, (n, 1))
        + rng.uniform(0, 0.1, (n, 1)) * np.maximum(50 - t, 0)
        + rng.uniform(0, 0.15, (n, 1)) * np.maximum(t - 68, 0) * (1 + busy)
    )
    usage = usage * rng.lognormal(0, 0.2, (n, HOURS))
    usage[rng.random((n, HOURS)) < 0.02] = np.nan
    return usage, station


def calendar() -> tuple[np.ndarray, np.ndarray]:
    hours = np.arange(HOURS, dtype=np.int64)
    how = ((((hours // 24) + 1) % 7) * 24 + hours % 24).astype(np.int64)
    month = (YEAR_START + hours * 3600).astype("datetime64[M]").astype(np.int64) % 12 + 1
    return how, month.astype(np.int64)


FIRST_HOUR = (np.arange(DAYS, dtype=np.int64) * 24).copy()
END_HOUR = FIRST_HOUR + 24


def fit_daily_meter(usage_day: np.ndarray, station_temps: np.ndarray, out: np.ndarray) -> None:
    """One daily fit: the day temperatures from the hourly series, then the grid search."""
    td = np.empty(DAYS)
    dd_days = np.empty(DAYS)
    K.daily_temperature_features(FIRST_HOUR, END_HOUR, station_temps, td, dd_days)
    K.daily_grid_search(usage_day, td, True, 10, 20.0, out)


def fit_hourly_meter(usage: np.ndarray, temp: np.ndarray, how: np.ndarray, month: np.ndarray) -> np.ndarray:
    occupied = np.zeros((12, 168), dtype=np.bool_)
    keep = np.zeros((12, 2, 6), dtype=np.bool_)
    coef = np.empty((12, K.N_COEF))
    K.hourly_fit(usage, temp, how, month, occupied, keep, coef)
    return coef


def run_fleet(kind: str, meters: int, threads: int, seed: int) -> tuple[float, np.ndarray | None]:
    """Total fit seconds for the fleet (generation excluded); the daily results of the first chunk."""
    rng = np.random.default_rng(seed)
    temps = station_temperatures(np.random.default_rng(seed + 1))
    how, month = calendar()
    elapsed = 0.0
    first_results = None
    with ThreadPoolExecutor(threads) as pool:
        for first in range(0, meters, CHUNK):
            n = min(CHUNK, meters - first)
            if kind == "daily":
                usage, station = daily_chunk(rng, temps, first, n)
                out = np.empty((n, K.OUT_WIDTH))

                def work(
                    rows: range, usage: np.ndarray = usage, station: np.ndarray = station, out: np.ndarray = out
                ) -> None:
                    for m in rows:
                        fit_daily_meter(usage[m], temps[station[m]], out[m])
            else:
                usage, station = hourly_chunk(rng, temps, first, n)
                out = np.empty(0)

                def work(
                    rows: range, usage: np.ndarray = usage, station: np.ndarray = station, out: np.ndarray = out
                ) -> None:
                    for m in rows:
                        fit_hourly_meter(usage[m], temps[station[m]], how, month)

            parts = [range(i, n, threads) for i in range(threads)]
            t0 = time.perf_counter()
            list(pool.map(work, parts))
            elapsed += time.perf_counter() - t0
            if first == 0 and kind == "daily":
                first_results = out.copy()
    return elapsed, first_results


def compile_seconds() -> float:
    """First calls (numba compiles, or loads its on-disk cache) on a tiny input."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    temps = station_temperatures(rng)
    usage, station = daily_chunk(rng, temps, 0, 1)
    fit_daily_meter(usage[0], temps[station[0]], np.empty(K.OUT_WIDTH))
    how, month = calendar()
    hourly, station = hourly_chunk(rng, temps, 0, 1)
    fit_hourly_meter(hourly[0], temps[station[0]], how, month)
    return time.perf_counter() - t0


def eemeter_baseline(seed: int, daily_meters: int, hourly_meters: int) -> dict[str, Any] | None:
    """Time eemeter 3.2.0 on the first meters of the same fleet, in its own venv."""
    if not Path(EEMETER_PYTHON).exists():
        return None
    rng = np.random.default_rng(seed)
    temps = station_temperatures(np.random.default_rng(seed + 1))
    daily, daily_station = daily_chunk(rng, temps, 0, CHUNK)
    rng_h = np.random.default_rng(seed)
    hourly, hourly_station = hourly_chunk(rng_h, temps, 0, max(hourly_meters, 1))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.npz"
        np.savez(
            path,
            temps=temps,
            daily=daily[:daily_meters],
            daily_station=daily_station[:daily_meters],
            hourly=hourly[:hourly_meters],
            hourly_station=hourly_station[:hourly_meters],
        )
        proc = subprocess.run(
            [EEMETER_PYTHON, "-c", EEMETER_WORKER, str(path)], capture_output=True, text=True, check=False
        )
    if proc.returncode:
        print(proc.stderr[-2000:], file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


EEMETER_WORKER = r"""
import json, sys, time, warnings
import numpy as np, pandas as pd, eemeter
warnings.filterwarnings("ignore")
data = np.load(sys.argv[1])
index_h = pd.date_range("2019-01-01", periods=8760, freq="H", tz="UTC")
index_d = pd.date_range("2019-01-01", periods=366, freq="D", tz="UTC")
out = {"daily": [], "hourly_s": []}
for m in range(data["daily"].shape[0]):
    temps = pd.Series(data["temps"][data["daily_station"][m]], index=index_h)
    meter = pd.DataFrame({"value": np.append(data["daily"][m], np.nan)}, index=index_d)
    t0 = time.perf_counter()
    design = eemeter.create_caltrack_daily_design_matrix(meter, temps)
    fit = eemeter.fit_caltrack_usage_per_day_model(design)
    seconds = time.perf_counter() - t0
    p = fit.model.model_params
    out["daily"].append({"s": seconds, "model_type": fit.model.model_type,
                         "hbp": p.get("heating_balance_point"), "cbp": p.get("cooling_balance_point")})
for m in range(data["hourly"].shape[0]):
    temps = pd.Series(data["temps"][data["hourly_station"][m]], index=index_h)
    meter = pd.DataFrame({"value": data["hourly"][m]}, index=index_h)
    t0 = time.perf_counter()
    design = eemeter.create_caltrack_hourly_preliminary_design_matrix(meter, temps)
    seg = eemeter.segment_time_series(design.index, "three_month_weighted")
    occ = eemeter.estimate_hour_of_week_occupancy(design, segmentation=seg)
    ob, ub = eemeter.fit_temperature_bins(design, segmentation=seg, occupancy_lookup=occ)
    mats = eemeter.create_caltrack_hourly_segmented_design_matrices(design, seg, occ, ob, ub)
    eemeter.fit_caltrack_hourly_model(mats, occ, ob, ub)
    out["hourly_s"].append(time.perf_counter() - t0)
print(json.dumps(out))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--meters", type=int, default=17_500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eemeter-meters", type=int, default=3)
    parser.add_argument("--eemeter-hourly-meters", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)

    compile_s = compile_seconds()
    print(f"compile (or cache load) of the CalTRACK kernels: {compile_s:.2f} s")
    daily_s, first = run_fleet("daily", args.meters, args.threads, args.seed)
    print(f"CalTRACK daily fits, {args.meters} meter-years, {args.threads} threads: {daily_s:.2f} s"
          f" ({daily_s / args.meters * 1e6:.0f} us per meter)")  # fmt: skip
    hourly_s, _ = run_fleet("hourly", args.meters, args.threads, args.seed)
    print(f"CalTRACK hourly fits, {args.meters} meter-years, {args.threads} threads: {hourly_s:.2f} s"
          f" ({hourly_s / args.meters * 1e3:.2f} ms per meter)")  # fmt: skip

    speedup_daily = speedup_hourly = None
    ee = None
    if args.eemeter_meters > 0:
        ee = eemeter_baseline(args.seed, args.eemeter_meters, args.eemeter_hourly_meters)
    if args.eemeter_meters <= 0:
        print("--eemeter-meters 0: speed-up vs eemeter skipped")
    elif ee is None:
        print(f"eemeter 3.2.0 not found at {EEMETER_PYTHON} (or it failed): speed-up vs eemeter skipped")
    else:
        assert first is not None
        ee_daily = float(np.mean([d["s"] for d in ee["daily"]]))
        agree = 0
        for m, d in enumerate(ee["daily"]):
            ours = first[m]
            code = {"intercept_only": 0, "hdd_only": 1, "cdd_only": 2, "cdd_hdd": 3}[d["model_type"]]
            same_bp = all(
                (b is None and np.isnan(ours[col])) or (b is not None and ours[col] == b)
                for b, col in ((d["hbp"], K.OUT_HBP), (d["cbp"], K.OUT_CBP))
            )
            agree += int(ours[K.OUT_MODEL] == code and same_bp)
        ours_daily = daily_s / args.meters * args.threads  # per meter on one thread
        speedup_daily = ee_daily / ours_daily
        print(f"eemeter 3.2.0 daily: {ee_daily:.2f} s per meter ({len(ee['daily'])} meters, same model and"
              f" balance points on {agree}); ours {ours_daily * 1e6:.0f} us per meter per thread:"
              f" speed-up {speedup_daily:,.0f}x per thread,"
              f" {speedup_daily * args.threads:,.0f}x for the fleet on {args.threads} threads")  # fmt: skip
        if ee["hourly_s"]:
            ee_hourly = float(np.mean(ee["hourly_s"]))
            ours_hourly = hourly_s / args.meters * args.threads
            speedup_hourly = ee_hourly / ours_hourly
            print(f"eemeter 3.2.0 hourly: {ee_hourly:.2f} s per meter; ours {ours_hourly * 1e3:.2f} ms per meter"
                  f" per thread: speed-up {speedup_hourly:,.0f}x per thread")  # fmt: skip
    print(
        json.dumps(
            {
                "caltrack_daily_s_17500": round(daily_s * 17_500 / args.meters, 3),
                "caltrack_hourly_s_17500": round(hourly_s * 17_500 / args.meters, 3),
                "speedup_vs_eemeter_daily": None if speedup_daily is None else round(speedup_daily, 1),
                "speedup_vs_eemeter_hourly": None if speedup_hourly is None else round(speedup_hourly, 1),
                "caltrack_compile_s": round(compile_s, 3),
                "meters": args.meters,
                "threads": args.threads,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The comparison table: each kernel-backed function beside its reference and a generator of realistic,
NaN-laced inputs. One table drives the tests against the references (``tests/aggregation/
test_vs_reference.py``) and the benchmark (``benchmarks/aggregation_speed.py``), as numbagg does, so that what
is benchmarked is what is verified.

``aggregation.reference`` (pandas) is imported lazily: production code never imports this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from aggregation.energy import interval_energy, interval_energy_grouped
from aggregation.resample import bin_edges, resample_energy, resample_mean
from aggregation.rollup import rollup

__all__ = ["COMPARISONS", "Comparison", "fleet_registers", "sorted_runs"]

Arrays = tuple[NDArray[Any], ...]
Inputs = dict[str, Any]
H = 3_600_000
T0 = 1_711_497_600_000  # 2024-03-27 00:00 UTC: the generated periods cross the EU spring DST change


@dataclass(frozen=True)
class Comparison:
    """``fast(**inputs)`` must equal ``reference(**inputs)`` (arrays, compared with ``rtol``; NaN == NaN)."""

    make: Callable[[np.random.Generator, int], Inputs]
    fast: Callable[..., Arrays]
    reference: Callable[..., Arrays]
    rtol: float = 1e-12
    atol: float = 0.0


def fleet_registers(rng: np.random.Generator, n: int, n_devices: int) -> Inputs:
    """``n`` register readings of ``n_devices`` meters, sorted by device then time: 1-15 min apart, NaNs,
    resets, single-reading dips to 0 and spikes, a 7 kW maximum power for half of the devices."""
    labels = np.sort(rng.integers(0, max(n_devices, 1), size=n))
    gaps = rng.integers(60_000, 900_000, size=n)
    ts = T0 + np.cumsum(gaps)
    starts = np.searchsorted(labels, labels, side="left")  # index of each device's first reading
    ts = ts - ts[starts] + T0 + gaps[starts]  # each device's clock starts near T0
    power_w = rng.uniform(0.0, 6_000.0, size=n)
    register = np.cumsum(power_w * gaps / H / 1000.0)
    register -= register[starts] - rng.uniform(0.0, 1e4, size=n)[starts]
    register[rng.random(n) < 0.002] = 0.0  # dips
    spikes = rng.random(n) < 0.002
    register[spikes] += 5e4
    register[rng.random(n) < 0.03] = np.nan
    max_power = np.where(rng.random(max(n_devices, 1)) < 0.5, 7_000.0, np.nan)
    return {"labels": labels, "ts_ms": ts, "register": register, "max_power_w": max_power}


def _fast_grouped(labels: Any, ts_ms: Any, register: Any, max_power_w: Any) -> Arrays:
    result = interval_energy_grouped(labels, ts_ms, register, max_power_w=max_power_w)
    return result.energy_kwh, result.events


def _ref_grouped(labels: Any, ts_ms: Any, register: Any, max_power_w: Any) -> Arrays:
    from aggregation import reference

    energy, events = [], []
    for d in np.unique(labels):
        mine = labels == d
        power = None if np.isnan(max_power_w[d]) else float(max_power_w[d])
        e, v = reference.interval_energy(ts_ms[mine], register[mine], max_power_w=power)
        energy.append(e)
        events.append(v)
    if not energy:
        return np.empty(0), np.empty(0, dtype=np.int8)
    return np.concatenate(energy), np.concatenate(events)


def _one_meter(rng: np.random.Generator, n: int) -> Inputs:
    inputs = fleet_registers(rng, n, 1)
    return {"ts_ms": inputs["ts_ms"], "register": inputs["register"]}


def _fast_one(ts_ms: Any, register: Any) -> Arrays:
    result = interval_energy(ts_ms, register, rollover=1e4, max_power_w=7_000.0)
    return result.energy_kwh, result.events


def _ref_one(ts_ms: Any, register: Any) -> Arrays:
    from aggregation import reference

    return reference.interval_energy(ts_ms, register, rollover=1e4, max_power_w=7_000.0)


def _intervals(rng: np.random.Generator, n: int) -> Inputs:
    """``n`` intervals of a few series: contiguous or with gaps, some of zero length, NaN-laced, across DST."""
    n_series = 3
    labels = np.sort(rng.integers(0, n_series, size=n))
    lengths = rng.integers(0, 3 * H, size=n)
    gaps = np.where(rng.random(n) < 0.2, rng.integers(0, 2 * H, size=n), 0)
    ends = np.cumsum(lengths + gaps)
    starts_of_runs = np.searchsorted(labels, labels, side="left")
    offset = ends[starts_of_runs] - lengths[starts_of_runs] - gaps[starts_of_runs]
    end = T0 + ends - offset
    start = end - lengths
    values = rng.uniform(0.0, 5.0, size=n)
    values[rng.random(n) < 0.05] = np.nan
    span_end = max(int(end.max()) if n else 0, T0 + 10 * H)
    edges = bin_edges(T0 + H // 2, span_end - H, "1h", "Europe/Helsinki")  # clips both ends
    return {"labels": labels, "start_ms": start, "end_ms": end, "values": values, "edges": edges}


def _fast_resample(labels: Any, start_ms: Any, end_ms: Any, values: Any, edges: Any) -> Arrays:
    result = resample_energy(start_ms, end_ms, values, edges, labels=labels, n_series=3)
    return result.values, result.coverage


def _ref_resample(labels: Any, start_ms: Any, end_ms: Any, values: Any, edges: Any) -> Arrays:
    from aggregation import reference

    rows = [
        reference.resample_energy(start_ms[labels == s], end_ms[labels == s], values[labels == s], edges)
        for s in range(3)
    ]
    return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])


def _readings(rng: np.random.Generator, n: int) -> Inputs:
    inputs = _intervals(rng, n)
    ts = inputs["start_ms"]
    keep = np.concatenate(([True], (ts[1:] > ts[:-1]) | (inputs["labels"][1:] != inputs["labels"][:-1])))[: ts.size]
    return {
        "labels": inputs["labels"][keep],
        "ts_ms": ts[keep],
        "values": inputs["values"][keep],
        "edges": inputs["edges"],
    }


def _fast_mean(labels: Any, ts_ms: Any, values: Any, edges: Any) -> Arrays:
    result = resample_mean(ts_ms, values, edges, max_gap_ms=2 * H, labels=labels, n_series=3)
    return result.values, result.coverage


def _ref_mean(labels: Any, ts_ms: Any, values: Any, edges: Any) -> Arrays:
    from aggregation import reference

    rows = [reference.resample_mean(ts_ms[labels == s], values[labels == s], edges, max_gap_ms=2 * H) for s in range(3)]
    return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])


def sorted_runs(rng: np.random.Generator, n: int, n_runs: int = 50, n_groups: int = 4) -> Inputs:
    """``n`` readings in ``n_runs`` time-sorted runs (some empty), NaN-laced, mapped onto ``n_groups`` rows
    (some runs left out with -1), with 15-minute edges that start after and end before the data."""
    sizes = rng.multinomial(n, rng.dirichlet(np.ones(n_runs))) if n else np.zeros(n_runs, dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    ts = np.empty(n, dtype=np.int64)
    for r in range(n_runs):
        lo, hi = offsets[r], offsets[r + 1]
        ts[lo:hi] = T0 + np.sort(rng.integers(0, 4 * 24 * H, size=hi - lo))  # duplicates happen
    values = rng.uniform(0.0, 2.0, size=n)
    values[rng.random(n) < 0.05] = np.nan
    groups = rng.integers(-1, n_groups, size=n_runs)
    edges = bin_edges(T0 + 7 * H, T0 + 90 * H, "15min", "Europe/Helsinki")
    return {"ts_ms": ts, "values": values, "edges": edges, "offsets": offsets, "groups": groups, "n_groups": n_groups}


def _fast_rollup(closed: str) -> Callable[..., Arrays]:
    def fast(**inputs: Any) -> Arrays:
        result = rollup(**inputs, closed="right" if closed == "right" else "left")
        return result.sums, result.counts

    return fast


def _ref_rollup(closed: str) -> Callable[..., Arrays]:
    def ref(**inputs: Any) -> Arrays:
        from aggregation import reference

        return reference.rollup(**inputs, closed=closed)

    return ref


COMPARISONS: dict[str, Comparison] = {
    "interval_energy": Comparison(_one_meter, _fast_one, _ref_one),
    "interval_energy_grouped": Comparison(lambda rng, n: fleet_registers(rng, n, 7), _fast_grouped, _ref_grouped),
    "resample_energy": Comparison(_intervals, _fast_resample, _ref_resample, rtol=1e-11, atol=1e-12),
    "resample_mean": Comparison(_readings, _fast_mean, _ref_mean, rtol=1e-11, atol=1e-12),
    "rollup_left": Comparison(sorted_runs, _fast_rollup("left"), _ref_rollup("left"), rtol=1e-11, atol=1e-12),
    "rollup_right": Comparison(sorted_runs, _fast_rollup("right"), _ref_rollup("right"), rtol=1e-11, atol=1e-12),
}

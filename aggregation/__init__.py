"""Aggregation: raw meter readings -> KPIs.

Numba kernels (``aggregation._kernels`` for registers, ``aggregation._bucket_kernels`` for time buckets; plain
loops, compiled lazily on first call and cached on disk) sit behind validating wrappers; ``aggregation.reference``
holds the independent numpy/pandas spec of each kernel that the tests compare against, and
``aggregation.comparisons`` pairs them for the tests and the benchmark.

The path: registers -> :func:`interval_energy` (events per reading) -> :func:`resample_interval_energy` into
:func:`bin_edges` (DST-correct local buckets, with coverage) -> :func:`rollup` per building, district or kind ->
``aggregation.kpis`` and ``aggregation.co2``.
"""

from aggregation.energy import (
    EnergyEvent,
    IntervalEnergy,
    interval_energy,
    interval_energy_grouped,
    interval_starts,
    offsets_from_labels,
)
from aggregation.resample import Resampled, bin_edges, resample_energy, resample_interval_energy, resample_mean
from aggregation.rollup import Rollup, load_factor, peak_demand_kw, registry_groups, rollup

__all__ = [
    "EnergyEvent",
    "IntervalEnergy",
    "Resampled",
    "Rollup",
    "bin_edges",
    "interval_energy",
    "interval_energy_grouped",
    "interval_starts",
    "load_factor",
    "offsets_from_labels",
    "peak_demand_kw",
    "registry_groups",
    "resample_energy",
    "resample_interval_energy",
    "resample_mean",
    "rollup",
]

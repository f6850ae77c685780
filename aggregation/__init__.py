"""Aggregation: raw meter readings -> KPIs.

Numba kernels (``aggregation._kernels``, plain loops, compiled lazily on first call and cached on disk) sit
behind validating wrappers; ``aggregation.reference`` holds the independent numpy/Python spec of each kernel
that the tests compare against.
"""

from aggregation.energy import EnergyEvent, IntervalEnergy, interval_energy

__all__ = ["EnergyEvent", "IntervalEnergy", "interval_energy"]

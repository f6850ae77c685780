"""District KPIs: pure functions over arrays of interval energy (kWh per interval, aligned, NaN = missing).

Every formula is from ``shared/reference/kpis.md`` §5 (SCIS / Smart Cities Marketplace KPI guide v2.0, CITYkeys,
PED frameworks of JPI Urban Europe / IEA EBC Annex 83); the number in each docstring is the row of its table.
Notation as there: L consumption, G local renewable generation, I/X grid import/export, f_p primary energy
factor. Interval-wise KPIs (min(G, L) per interval) need the series on the same buckets: resample them with
``aggregation.resample`` first. An interval where any input of a KPI is NaN is left out of every sum of that
KPI, so that numerator and denominator always describe the same intervals; the completeness KPI (#17) says how
much was left out. Ratios with a zero denominator are NaN, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from aggregation.rollup import load_factor, peak_demand_kw

__all__ = [
    "data_completeness",
    "ev_charging_energy",
    "ev_local_renewable_share",
    "final_energy",
    "load_factor",
    "peak_demand_kw",
    "peak_reduction",
    "primary_energy_balance",
    "primary_energy_demand",
    "savings_percent",
    "self_consumption",
    "self_sufficiency",
    "self_supply_by_renewables",
]


def _aligned(*series: ArrayLike) -> tuple[NDArray[np.float64], ...]:
    """The series as float arrays of one shape, restricted to the intervals where all of them are finite."""
    arrays = [np.asarray(s, dtype=np.float64) for s in series]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"the series must be aligned (same buckets), got shapes {sorted(shapes)}")
    known = np.logical_and.reduce([np.isfinite(a) for a in arrays])
    return tuple(a[known] for a in arrays)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator != 0 else float("nan")


def final_energy(load_kwh: ArrayLike, *, floor_area_m2: float | None = None) -> float:
    """#1 Final energy consumption (SCIS): E_c = Σ_t L_c(t) [kWh]; per m² when ``floor_area_m2`` is given."""
    (load,) = _aligned(load_kwh)
    total = float(load.sum())
    if floor_area_m2 is None:
        return total
    if not floor_area_m2 > 0:
        raise ValueError(f"floor_area_m2 must be positive, got {floor_area_m2}")
    return total / floor_area_m2


def savings_percent(counterfactual_kwh: ArrayLike, observed_kwh: ArrayLike) -> float:
    """#2 Energy savings (SCIS; IPMVP Option C) in %: 100 · Σ(ŷ − y) / Σ ŷ over intervals with both."""
    predicted, observed = _aligned(counterfactual_kwh, observed_kwh)
    return 100.0 * _ratio(float((predicted - observed).sum()), float(predicted.sum()))


def self_supply_by_renewables(generation_kwh: ArrayLike, load_kwh: ArrayLike) -> float:
    """#3 Degree of energetic self-supply by RES (SCIS): Σ G / Σ L (a fraction; may exceed 1)."""
    generation, load = _aligned(generation_kwh, load_kwh)
    return _ratio(float(generation.sum()), float(load.sum()))


def self_consumption(generation_kwh: ArrayLike, load_kwh: ArrayLike) -> float:
    """#4 Self-consumption ratio (PED): SCR = Σ_t min(G, L) / Σ_t G."""
    generation, load = _aligned(generation_kwh, load_kwh)
    return _ratio(float(np.minimum(generation, load).sum()), float(generation.sum()))


def self_sufficiency(generation_kwh: ArrayLike, load_kwh: ArrayLike) -> float:
    """#5 Self-sufficiency / autarky (PED): SSR = Σ_t min(G, L) / Σ_t L."""
    generation, load = _aligned(generation_kwh, load_kwh)
    return _ratio(float(np.minimum(generation, load).sum()), float(load.sum()))


def primary_energy_demand(import_kwh: Mapping[str, ArrayLike], factors: Mapping[str, float]) -> float:
    """#7 Primary energy demand (SCIS): Σ_c f_p,c · Σ_t I_c(t) [kWh_PE] (NaN intervals of a carrier left out)."""
    return float(sum(factors[c] * float(np.nansum(np.asarray(v, dtype=np.float64))) for c, v in import_kwh.items()))


def primary_energy_balance(
    import_kwh: Mapping[str, ArrayLike],
    export_kwh: Mapping[str, ArrayLike],
    import_factors: Mapping[str, float],
    export_factors: Mapping[str, float] | None = None,
) -> float:
    """#6 Annual primary-energy balance (PED): PEB = Σ_c f_p,exp,c·X_c − Σ_c f_p,del,c·I_c [kWh_PE].

    ``>= 0`` means a positive energy district. Keys are carriers; ``export_factors`` default to the import
    ones (the EPBD practice when no separate export factor is set). A carrier without a factor raises KeyError.
    """
    exported = primary_energy_demand(export_kwh, export_factors if export_factors is not None else import_factors)
    return exported - primary_energy_demand(import_kwh, import_factors)


def peak_reduction(reference_peak_kw: float, peak_kw: float) -> float:
    """#10 Peak load reduction (PED, SCIS ICT): (P_ref − P) / P_ref (a fraction; NaN when P_ref is 0)."""
    return _ratio(reference_peak_kw - peak_kw, reference_peak_kw)


def ev_charging_energy(ev_kwh: ArrayLike) -> float:
    """#13 EV charging energy (SCIS mobility): Σ E_EV [kWh]."""
    return final_energy(ev_kwh)


def ev_local_renewable_share(ev_kwh: ArrayLike, generation_kwh: ArrayLike, other_load_kwh: ArrayLike) -> float:
    """#14 Share of EV charging from local RES: Σ_t min(E_EV, max(G − L_other, 0)) / Σ_t E_EV (the surplus
    of local generation over the other loads is what the chargers can use)."""
    ev, generation, other = _aligned(ev_kwh, generation_kwh, other_load_kwh)
    local = np.minimum(ev, np.maximum(generation - other, 0.0))
    return _ratio(float(local.sum()), float(ev.sum()))


def data_completeness(received: ArrayLike, expected: ArrayLike) -> NDArray[np.float64]:
    """#17 Data completeness (ICT): readings received / expected per meter-period (a fraction, capped at 1:
    duplicates never make up for gaps). NaN where nothing was expected."""
    got = np.asarray(received, dtype=np.float64)
    want = np.asarray(expected, dtype=np.float64)
    if (got < 0).any() or (want < 0).any():
        raise ValueError("received and expected counts must not be negative")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(want > 0, np.minimum(got / want, 1.0), np.nan)

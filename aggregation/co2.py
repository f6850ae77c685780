"""Energy -> CO2: a versioned factor table as data, emissions, avoided emissions, EV CO2 avoided.

The factors live in ``aggregation/data/emission_factors.toml`` (values from ``shared/reference/kpis.md``
§4.2), one row per factor with its source, data year and how far it is checked, so that a KPI can always
name the number it used (GHG Protocol Scope 2: label the method next to the number; kpis.md §4.1 "Design
advice"). Annual factors are looked up by zone, carrier, method (``location`` / ``market``) and year;
hourly intensities are either supplied as a series (e.g. Fingrid dataset 265) or built from an hourly
production mix with the per-source factors of the table (:func:`hourly_intensity`).

Formulas (kpis.md §5): #8 GHG emissions = Σ_t E(t)·EF(t); #9 avoided = Σ_t savings(t)·EF(t);
#15 EV CO2 avoided = (E_EV / c_EV)·EF_ICE − E_EV·EF_grid (§4.1 "EV vs ICE").
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DEFAULT_TABLE",
    "Factor",
    "FactorTable",
    "avoided_emissions_kg",
    "emissions_kg",
    "ev_co2_avoided_kg",
    "hourly_intensity",
    "load_factors",
    "market_based_emissions_kg",
]

DEFAULT_TABLE = Path(__file__).with_name("data") / "emission_factors.toml"
STATUSES = frozenset({"published", "transcribed", "recall", "derived", "assumption"})


class FactorTableError(ValueError):
    """The factor table file is malformed (a row without source or data year, a duplicate id, ...)."""


@dataclass(frozen=True, slots=True)
class Factor:
    """One row of the factor table."""

    id: str
    quantity: str
    carrier: str
    zone: str
    method: str
    basis: str
    resolution: str
    data_year: int
    value: float
    unit: str
    source: str
    status: str
    note: str = ""

    def label(self) -> str:
        """How to cite the number next to a KPI: value, unit, method, data year and source."""
        return f"{self.value:g} {self.unit} ({self.method}, {self.zone}, {self.data_year}; {self.source})"


def _factor(row: Mapping[str, Any], index: int) -> Factor:
    names = {f.name for f in fields(Factor)}
    required = names - {"note"}
    missing = sorted(required - row.keys())
    if missing:
        raise FactorTableError(f"factor #{index} ({row.get('id', '?')}): missing {missing}")
    unknown = sorted(row.keys() - names)
    if unknown:
        raise FactorTableError(f"factor #{index} ({row['id']}): unknown keys {unknown}")
    if not isinstance(row["source"], str) or not row["source"].strip():
        raise FactorTableError(f"factor {row['id']}: every row needs a source")
    if (
        not isinstance(row["data_year"], int)
        or isinstance(row["data_year"], bool)
        or not 1900 <= row["data_year"] <= 2100
    ):
        raise FactorTableError(f"factor {row['id']}: data_year must be a year, got {row['data_year']!r}")
    value = row["value"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise FactorTableError(f"factor {row['id']}: value must be a finite non-negative number, got {value!r}")
    if row["status"] not in STATUSES:
        raise FactorTableError(f"factor {row['id']}: status must be one of {sorted(STATUSES)}, got {row['status']!r}")
    return Factor(**{**row, "value": float(value)})


@dataclass(frozen=True, slots=True)
class FactorTable:
    """The factors of one table version."""

    version: str
    factors: tuple[Factor, ...]

    @classmethod
    def from_toml(cls, text: str) -> FactorTable:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise FactorTableError(f"not valid TOML: {exc}") from exc
        version = data.get("version")
        if not isinstance(version, str) or not version:
            raise FactorTableError("the table needs a version string")
        rows = data.get("factor", [])
        factors = tuple(_factor(row, i) for i, row in enumerate(rows))
        ids = [f.id for f in factors]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise FactorTableError(f"duplicate factor ids: {duplicates}")
        return cls(version, factors)

    def find(
        self,
        *,
        carrier: str,
        zone: str,
        method: str = "location",
        quantity: str = "emission",
        year: int | None = None,
    ) -> Factor:
        """The factor for ``zone`` (or the zone ``*``) with the latest data year not after ``year`` (any year
        when None). Raises ``KeyError`` naming what the table has for that carrier."""
        rows = [
            f
            for f in self.factors
            if f.carrier == carrier
            and f.method == method
            and f.quantity == quantity
            and f.zone in (zone, "*")
            and (year is None or f.data_year <= year)
        ]
        if not rows:
            have = sorted({(f.zone, f.method, f.data_year) for f in self.factors if f.carrier == carrier})
            raise KeyError(f"no {quantity} factor for {carrier}/{zone}/{method} up to {year}; the table has {have}")
        return max(rows, key=lambda f: (f.zone == zone, f.data_year))

    def per_source(self, basis: str = "lifecycle") -> dict[str, float]:
        """Per production source factors (g CO2e/kWh) for :func:`hourly_intensity`."""
        found = {f.carrier: f.value for f in self.factors if f.method == "per_source" and f.basis == basis}
        if not found:
            raise KeyError(f"no per-source factors with basis {basis!r}")
        return found


@cache
def _default_table() -> FactorTable:
    return FactorTable.from_toml(DEFAULT_TABLE.read_text(encoding="utf-8"))


def load_factors(path: Path | None = None) -> FactorTable:
    """The packaged factor table (cached), or the table in ``path``."""
    if path is None:
        return _default_table()
    return FactorTable.from_toml(path.read_text(encoding="utf-8"))


def _pairs(energy_kwh: ArrayLike, factor_g_per_kwh: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    energy = np.asarray(energy_kwh, dtype=np.float64)
    factor = np.asarray(factor_g_per_kwh, dtype=np.float64)
    if factor.ndim and factor.shape != energy.shape:
        raise ValueError(f"an hourly factor needs one value per interval: {factor.shape} vs {energy.shape}")
    return energy, np.broadcast_to(factor, energy.shape)


def emissions_kg(energy_kwh: ArrayLike, factor_g_per_kwh: ArrayLike) -> float:
    """Σ_t E(t)·EF(t) / 1000 (kg) over the intervals where both are finite (kpis.md §5 #8).

    ``factor_g_per_kwh`` is one annual factor or a series aligned with ``energy_kwh`` (hourly factors).
    """
    energy, factor = _pairs(energy_kwh, factor_g_per_kwh)
    known = np.isfinite(energy) & np.isfinite(factor)
    return float(np.sum(energy[known] * factor[known]) / 1000.0)


def avoided_emissions_kg(savings_kwh: ArrayLike, factor_g_per_kwh: ArrayLike) -> float:
    """Σ_t savings(t)·EF(t) / 1000 (kg): CO2 avoided by energy savings, positive when saved (kpis.md §5 #9;
    ``savings`` = counterfactual − observed per interval, IPMVP "avoided energy use")."""
    return emissions_kg(savings_kwh, factor_g_per_kwh)


def market_based_emissions_kg(
    energy_kwh: float,
    residual_mix_g_per_kwh: float,
    *,
    certified_kwh: float = 0.0,
    certified_g_per_kwh: float = 0.0,
) -> float:
    """Market-based Scope 2 (GHG Protocol, kpis.md §4.1): energy covered by contractual instruments (guarantees
    of origin, PPAs) at their factor, the rest at the residual mix. ``certified_kwh`` is capped at the energy."""
    if energy_kwh < 0 or certified_kwh < 0:
        raise ValueError("energy_kwh and certified_kwh must not be negative")
    covered = min(certified_kwh, energy_kwh)
    return ((energy_kwh - covered) * residual_mix_g_per_kwh + covered * certified_g_per_kwh) / 1000.0


def hourly_intensity(generation: Mapping[str, ArrayLike], factors: Mapping[str, float]) -> NDArray[np.float64]:
    """Production-mix intensity per hour (g CO2e/kWh): Σ_s G_s(t)·EF_s / Σ_s G_s(t) (kpis.md §4.1, Electricity
    Maps method without flow tracing). NaN for an hour with no generation or a NaN in any source.

    ``generation``: energy per source and hour (any consistent unit); every source must be in ``factors``.
    """
    unknown = sorted(set(generation) - set(factors))
    if unknown:
        raise KeyError(f"no factor for sources {unknown}; map them onto {sorted(factors)}")
    if not generation:
        raise ValueError("generation needs at least one source")
    series = {name: np.asarray(values, dtype=np.float64) for name, values in generation.items()}
    shapes = {s.shape for s in series.values()}
    if len(shapes) != 1:
        raise ValueError(f"every source needs the same hours, got shapes {sorted(shapes)}")
    total = sum(series.values(), start=np.zeros(shapes.pop()))
    weighted = sum((s * factors[name] for name, s in series.items()), start=np.zeros_like(total))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weighted / total, np.nan)


def ev_co2_avoided_kg(
    ev_kwh: ArrayLike,
    grid_g_per_kwh: ArrayLike,
    *,
    ice_g_per_km: float = 160.0,
    ev_kwh_per_km: float = 0.18,
) -> float:
    """CO2 avoided by EV charging against a combustion car (kpis.md §5 #15, §4.1 "EV vs ICE"):
    Σ_t [ (E(t) / c_EV)·EF_ICE − E(t)·EF_grid(t) ] / 1000 (kg), over intervals where both are finite.

    Defaults from the factor table: ``ice_car/EU/ttw`` (160 g/km) and ``ev/EU/at_charger`` (0.18 kWh/km).
    Negative when the grid is dirtier than the counterfactual car.
    """
    if not (ice_g_per_km >= 0 and ev_kwh_per_km > 0):
        raise ValueError("ice_g_per_km must be >= 0 and ev_kwh_per_km > 0")
    energy, grid = _pairs(ev_kwh, grid_g_per_kwh)
    known = np.isfinite(energy) & np.isfinite(grid)
    avoided = energy[known] / ev_kwh_per_km * ice_g_per_km - energy[known] * grid[known]
    return float(np.sum(avoided) / 1000.0)

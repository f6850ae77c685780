"""The report as one JSON-able document, assembled from what `collect` read (pure: no I/O).

Every figure is traceable: energy sums the daily `kpi_energy` points; district ratios are recomputed from the
summed energies (a ratio of sums, never a mean of daily ratios); savings are the savings job's points at the
report's last day (CalTRACK 2.0 daily, savings to date since each building's retrofit) with their fit
statistics checked against the acceptance criteria below; CO2 names each factor's id, source and data year
from the factor table; the data-quality section counts from the gateways' sequence numbers.

Acceptance criteria of a savings model (`CRITERIA`): ASHRAE Guideline 14 whole-building regression path as
applied by the CPUC NMEC rulebook (v2.0, 2020): CV(RMSE) <= 25 %, |NMBE| <= 0.5 %, fractional savings
uncertainty <= 50 % at 90 % confidence (shared/reference/kpis.md, section 2).

The district's savings band combines the buildings' 90 % bands in quadrature (independent meters), per carrier
and in total; electricity and heat are kept apart everywhere (they are different carriers with different
factors, and a kWh of one is not a kWh of the other for a funder).

`provenance.input_sha256` digests everything read, so `--verify` can tell identical inputs from changed ones.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from aggregation.co2 import FactorTable
from aggregation.completeness import SeqAccount
from aggregation.report.collect import ReportData, Row
from devices import Registry

FORMAT_VERSION = 1
CARRIERS = ("electricity", "electricity_export", "heat", "pv", "ev")
SAVINGS_CARRIERS = ("electricity", "heat")
CRITERIA = {"cv_rmse_max": 0.25, "abs_nmbe_max": 0.005, "fsu_max": 0.5}
CRITERIA_SOURCE = (
    "ASHRAE Guideline 14 whole-building regression, as in the CPUC NMEC rulebook v2.0 (2020): "
    "CV(RMSE) <= 25 %, |NMBE| <= 0.5 %, FSU <= 50 % at 90 % confidence"
)
#: Fields that differ between two runs on the same data: left out of `--verify`'s comparison.
VOLATILE = (("report", "generated_at"), ("provenance", "code_version"))
LIMITS = [
    "Counter events (glitch, rollover, replacement) and clock-flagged readings are not in the KPI series: "
    "the daily energy already handles them (aggregation.energy); they are not counted here.",
    "EV figures are energy only: sessions and utilisation need the charger sessions, which the KPIs do not keep.",
]


def _num(value: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    if value is None or isinstance(value, bool | str):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def input_digest(data: ReportData) -> str:
    doc = {
        "energy": data.energy,
        "energy_days": data.energy_days,
        "district": data.district,
        "savings_buildings": data.savings_buildings,
        "savings_series": data.savings_series,
        "co2": data.co2,
        "unstored": sorted(data.unstored, key=lambda r: (str(r.get("stage")), str(r.get("reason")))),
        "accounts": {d: a.as_dict() for d, a in sorted(data.accounts.items())},
    }
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str, allow_nan=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _energy(data: ReportData, registry: Registry, district: str) -> dict[str, Any]:
    by_building: dict[str, dict[str, float]] = {}
    by_day: dict[str, dict[str, float]] = {}
    for row in data.energy:
        kwh = _num(row.get("energy_kwh")) or 0.0
        building = by_building.setdefault(str(row["building"]), dict.fromkeys(CARRIERS, 0.0))
        building[str(row["carrier"])] = building.get(str(row["carrier"]), 0.0) + kwh
    for row in data.energy_days:
        kwh = _num(row.get("energy_kwh")) or 0.0
        day = by_day.setdefault(row["day"], dict.fromkeys(CARRIERS, 0.0))
        day[str(row["carrier"])] = day.get(str(row["carrier"]), 0.0) + kwh
    totals = {c: sum(b.get(c, 0.0) for b in by_building.values()) for c in CARRIERS}
    area = sum(b.floor_area_m2 for d, b in registry.buildings.values() if d.id == district)
    imported, exported, pv = totals["electricity"], totals["electricity_export"], totals["pv"]
    self_used = max(0.0, pv - exported)
    return {
        "by_carrier_kwh": totals,
        "by_building_kwh": dict(sorted(by_building.items())),
        "per_m2_kwh": {c: _ratio(v, area) for c, v in totals.items()},
        "final_energy_kwh": imported + totals["heat"],
        "self_consumption": _ratio(self_used, pv),
        "self_sufficiency": _ratio(self_used, imported + self_used),
        "ev": {"energy_kwh": totals["ev"], "share_of_electricity": _ratio(totals["ev"], imported + self_used)},
        "days": [{"day": day, **values} for day, values in sorted(by_day.items())],
    }


def _ped(energy: Mapping[str, Any], factors: FactorTable, zone: str) -> dict[str, Any]:
    """Annual primary-energy balance (kpis.md PED 6): exported minus delivered primary energy, electricity and
    heat weighted by their primary-energy factors; only computed when the table has a factor for each."""
    totals = energy["by_carrier_kwh"]
    found: dict[str, Any] = {}
    missing = []
    for carrier in ("electricity", "district_heat"):
        try:
            f = factors.find(carrier=carrier, zone=zone, quantity="primary_energy")
        except KeyError:
            try:
                f = factors.find(carrier=carrier, zone="EU", quantity="primary_energy")
            except KeyError:
                missing.append(carrier)
                continue
        found[carrier] = {"id": f.id, "value": f.value, "unit": f.unit, "source": f.source, "data_year": f.data_year}
    doc: dict[str, Any] = {"boundary": "district (the registry's buildings)", "factors": found}
    if missing:
        doc |= {
            "balance_kwh_pe": None,
            "positive": None,
            "reason": f"no primary energy factor for {', '.join(missing)}",
        }
        return doc
    pef_el, pef_heat = found["electricity"]["value"], found["district_heat"]["value"]
    balance = pef_el * totals["electricity_export"] - pef_el * totals["electricity"] - pef_heat * totals["heat"]
    return doc | {"balance_kwh_pe": balance, "positive": balance >= 0, "reason": ""}


def _checks(row: Row) -> dict[str, Any]:
    cv, nmbe, fsu = _num(row.get("cv_rmse")), _num(row.get("nmbe")), _num(row.get("fsu"))
    checks = {
        "cv_rmse": None if cv is None else cv <= CRITERIA["cv_rmse_max"],
        "nmbe": None if nmbe is None else abs(nmbe) <= CRITERIA["abs_nmbe_max"],
        "fsu": None if fsu is None else fsu <= CRITERIA["fsu_max"],
    }
    return checks | {"passed": all(v is True for v in checks.values())}


def _band(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values))


def _savings(data: ReportData) -> dict[str, Any]:
    buildings = []
    per_carrier: dict[str, dict[str, float]] = {}
    bands: dict[str, list[float]] = {}
    for row in data.savings_buildings:
        qualified = bool(row.get("qualified"))
        entry = {
            "building": row["building"],
            "carrier": row["carrier"],
            "qualified": qualified,
            "reason": row.get("reason") or "",
            "retrofit": row.get("retrofit"),
            "model_type": row.get("model_type"),
            "savings_kwh": _num(row.get("savings_kwh")),
            "counterfactual_kwh": _num(row.get("counterfactual_kwh")),
            "observed_kwh": _num(row.get("observed_kwh")),
            "band_90_kwh": _num(row.get("fsu_error_band_kwh")),
            "cv_rmse": _num(row.get("cv_rmse")),
            "nmbe": _num(row.get("nmbe")),
            "r_squared": _num(row.get("r_squared")),
            "fsu": _num(row.get("fsu")),
            "baseline_days": _num(row.get("baseline_days")),
            "reporting_days": _num(row.get("reporting_days")),
            "status": row.get("status"),
            "criteria": _checks(row),
        }
        buildings.append(entry)
        if qualified and entry["savings_kwh"] is not None:
            carrier = per_carrier.setdefault(str(row["carrier"]), {"savings_kwh": 0.0, "counterfactual_kwh": 0.0})
            carrier["savings_kwh"] += entry["savings_kwh"]
            carrier["counterfactual_kwh"] += entry["counterfactual_kwh"] or 0.0
            bands.setdefault(str(row["carrier"]), []).append(entry["band_90_kwh"] or 0.0)
    district: dict[str, dict[str, float | None]] = {
        c: {**v, "band_90_kwh": _band(bands[c]), "percent": _ratio(v["savings_kwh"], v["counterfactual_kwh"])}
        for c, v in sorted(per_carrier.items())
    }
    total = sum(v["savings_kwh"] for v in per_carrier.values())
    series = [
        {"day": r["day"], "savings_kwh": _num(r.get("savings_kwh")), "band_90_kwh": _num(r.get("savings_band_kwh"))}
        for r in data.savings_series
    ]
    return {
        "as_of": data.period.last.isoformat(),
        "method": "CalTRACK 2.0 daily (IPMVP option C), baseline: the 365 days before each building's retrofit",
        "criteria": CRITERIA | {"source": CRITERIA_SOURCE},
        "buildings": buildings,
        "district": {
            "by_carrier": district,
            "total_kwh": total,
            "total_band_90_kwh": _band([b for v in bands.values() for b in v]),
        },
        "series": series,
    }


def _co2(data: ReportData, factors: FactorTable) -> dict[str, Any]:
    if not data.co2:
        return {"avoided_kg": None, "by_carrier": {}}
    row = data.co2[-1]
    by_carrier = {}
    ids = {f.id: f for f in factors.factors}
    for carrier in SAVINGS_CARRIERS:
        factor_id = row.get(f"{carrier}_factor_id")
        if factor_id is None:
            continue
        f = ids.get(str(factor_id))
        by_carrier[carrier] = {
            "avoided_kg": _num(row.get(f"{carrier}_avoided_kg")),
            "factor_id": factor_id,
            "factor_g_per_kwh": _num(row.get(f"{carrier}_factor_g_per_kwh")),
            "source": f.source if f else "not in this factor table",
            "data_year": f.data_year if f else None,
            "status": f.status if f else None,
        }
    return {"avoided_kg": _num(row.get("avoided_kg")), "by_carrier": by_carrier}


def _quality(data: ReportData) -> dict[str, Any]:
    days = {r["day"]: r for r in data.district}
    span = (data.period.last - data.period.first).days + 1
    names = [(data.period.first + timedelta(days=i)).isoformat() for i in range(span)]
    total = sum(data.accounts.values(), SeqAccount())
    devices = [
        {"device": d, **a.as_dict(), "completeness": a.completeness}
        for d, a in sorted(data.accounts.items(), key=lambda kv: (kv[1].completeness or 0.0, kv[0]))
    ]
    by_stage: dict[str, dict[str, int]] = {}
    for row in data.unstored:
        stage = by_stage.setdefault(str(row.get("stage")), {})
        stage[str(row.get("reason"))] = stage.get(str(row.get("reason")), 0) + int(row["readings"])
    return {
        "days": {
            "final": sorted(d for d in names if days.get(d, {}).get("status") == "final"),
            "provisional": sorted(d for d in names if days.get(d, {}).get("status") == "provisional"),
            "without_kpis": [d for d in names if d not in days],
            "revisions": {d: int(days[d]["revision"]) for d in names if d in days and days[d].get("revision")},
        },
        "readings": total.as_dict() | {"completeness": total.completeness},
        "devices": devices,
        "quarantined_by_reason": dict(sorted(by_stage.get("ingest", {}).items())),
        "evicted_at_edge_by_reason": dict(sorted(by_stage.get("edge", {}).items())),
    }


def assemble(
    data: ReportData,
    registry: Registry,
    district: str,
    factors: FactorTable,
    *,
    generated_at: str,
    code_version: str,
    registry_sha256: str,
) -> dict[str, Any]:
    entry = registry.districts[district]
    buildings = [
        {
            "id": b.id,
            "name": b.name,
            "use": b.use,
            "floor_area_m2": b.floor_area_m2,
            "retrofit": b.retrofit.isoformat() if b.retrofit else None,
            "devices": sum(1 for dev in registry if dev.building == b.id),
        }
        for d, b in registry.buildings.values()
        if d.id == district
    ]
    energy = _energy(data, registry, district)
    return {
        "report": {
            "format_version": FORMAT_VERSION,
            "district": district,
            "district_name": entry.name or district,
            "from": data.period.first.isoformat(),
            "to": data.period.last.isoformat(),
            "timezone": data.period.zone,
            "generated_at": generated_at,
        },
        "provenance": {
            "input_sha256": input_digest(data),
            "registry_sha256": registry_sha256,
            "factor_table_version": factors.version,
            "code_version": code_version,
        },
        "district": {"buildings": buildings, "floor_area_m2": sum(b["floor_area_m2"] for b in buildings)},
        "energy": energy,
        "ped": _ped(energy, factors, entry.grid_zone),
        "savings": _savings(data),
        "co2": _co2(data, factors),
        "data_quality": _quality(data),
        "limits": LIMITS,
    }


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Where two documents differ ("savings.district.total_kwh: 12.0 -> 13.5"), volatile fields left out."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            where = f"{path}.{key}" if path else str(key)
            if tuple(where.split(".")) in VOLATILE:
                continue
            if key not in old or key not in new:
                out.append(f"{where}: {'added' if key not in old else 'removed'}")
            else:
                out += differences(old[key], new[key], where)
        return out
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{path}: {len(old)} -> {len(new)} entries"]
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in differences(a, b, f"{path}[{i}]")]
    if isinstance(old, float) and isinstance(new, float) and math.isclose(old, new, rel_tol=1e-12, abs_tol=1e-9):
        return []
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]

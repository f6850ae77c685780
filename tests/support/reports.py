"""A report document from hand-made KPI rows (fleet registry, district "f"): savings of three buildings, one
not qualified, bad readings quarantined, an eviction, two days (one final, one revised)."""

from __future__ import annotations

from datetime import date
from typing import Any

from aggregation.co2 import load_factors
from aggregation.completeness import SeqAccount
from aggregation.report import Period, ReportData, assemble
from tests.support.registries import fleet_registry


def report_data() -> ReportData:
    period = Period.of(date(2026, 11, 1), date(2026, 11, 2), "Europe/Helsinki")
    data = ReportData(period)
    data.energy = [  # the period's sums per building and carrier, as InfluxDB gives them
        {"building": "f-b1", "carrier": "electricity", "energy_kwh": 200.0, "days": 2, "revisions": 2},
        {"building": "f-b1", "carrier": "pv", "energy_kwh": 80.0, "days": 2, "revisions": 2},
        {"building": "f-b1", "carrier": "electricity_export", "energy_kwh": 20.0, "days": 2, "revisions": 2},
        {"building": "f-b2", "carrier": "heat", "energy_kwh": 600.0, "days": 2, "revisions": 4},
        {"building": "f-b2", "carrier": "ev", "energy_kwh": float("nan"), "days": 0},  # NaN adds nothing
    ]
    for day in ("2026-11-01", "2026-11-02"):
        data.energy_days += [
            {"day": day, "carrier": "electricity", "energy_kwh": 100.0},
            {"day": day, "carrier": "pv", "energy_kwh": 40.0},
            {"day": day, "carrier": "electricity_export", "energy_kwh": 10.0},
            {"day": day, "carrier": "heat", "energy_kwh": 300.0},
        ]
    data.district = [
        {"day": "2026-11-01", "status": "final", "revision": 1},
        {"day": "2026-11-02", "status": "provisional", "revision": 3},
    ]
    good = {"qualified": True, "cv_rmse": 0.1, "nmbe": 0.0001, "fsu": 0.2, "model_type": "hdd_only"}
    data.savings_buildings = [
        {"building": "f-b1", "carrier": "electricity", "savings_kwh": 30.0, "counterfactual_kwh": 230.0,
         "fsu_error_band_kwh": 3.0, **good},
        {"building": "f-b2", "carrier": "electricity", "savings_kwh": 20.0, "counterfactual_kwh": 220.0,
         "fsu_error_band_kwh": 4.0, **good, "cv_rmse": 0.3},
        {"building": "f-b2", "carrier": "heat", "savings_kwh": 90.0, "counterfactual_kwh": 690.0,
         "fsu_error_band_kwh": 12.0, **good},
        {"building": "f-b3", "carrier": "heat", "savings_kwh": None, "qualified": False,
         "reason": "baseline data insufficient"},
    ]  # fmt: skip
    data.unstored = [
        {"stage": "ingest", "reason": "non_finite", "readings": 3},
        {"stage": "ingest", "reason": "out_of_range", "readings": 2},
        {"stage": "edge", "reason": "bytes_limit", "readings": 7},
    ]
    data.accounts = {"f-em": SeqAccount(100, 90, 3, 7, 0), "f-hm": SeqAccount(50, 48, 2, 0, 0)}
    return data


def report_doc(data: ReportData | None = None) -> dict[str, Any]:
    return assemble(
        data or report_data(),
        fleet_registry("f"),
        "f",
        load_factors(),
        generated_at="2026-12-03T00:00:00+00:00",
        code_version="test",
        registry_sha256="0" * 64,
    )

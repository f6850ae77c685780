"""The report document (aggregation.report.document), from hand-made KPI rows: sums, ratios of sums, the
savings band in quadrature per carrier, the acceptance criteria, missing factors said, `differences`."""

from __future__ import annotations

import math

import pytest

from aggregation.report import CRITERIA, differences
from tests.support.reports import report_data, report_doc


def test_energy_sums_the_days_and_ratios_are_ratios_of_sums() -> None:
    energy = report_doc()["energy"]
    assert energy["by_carrier_kwh"] == {"electricity": 200.0, "electricity_export": 20.0, "heat": 600.0,
                                        "pv": 80.0, "ev": 0.0}  # fmt: skip
    assert energy["final_energy_kwh"] == 800.0
    assert energy["self_consumption"] == pytest.approx(60 / 80)  # PV used on site / generated
    assert energy["self_sufficiency"] == pytest.approx(60 / 260)  # PV used on site / consumed
    assert [d["day"] for d in energy["days"]] == ["2026-11-01", "2026-11-02"]


def test_the_savings_band_adds_in_quadrature_per_carrier_and_carriers_stay_apart() -> None:
    savings = report_doc()["savings"]
    by_carrier = savings["district"]["by_carrier"]
    assert by_carrier["electricity"]["savings_kwh"] == 50.0
    assert by_carrier["electricity"]["band_90_kwh"] == pytest.approx(5.0)  # sqrt(3^2 + 4^2), not 7
    assert by_carrier["heat"]["savings_kwh"] == 90.0 and by_carrier["heat"]["band_90_kwh"] == 12.0
    assert savings["district"]["total_band_90_kwh"] == pytest.approx(13.0)  # sqrt(9 + 16 + 144)
    assert by_carrier["electricity"]["percent"] == pytest.approx(50 / 450)
    verdicts = {(b["building"], b["carrier"]): b["criteria"]["passed"] for b in savings["buildings"]}
    assert verdicts == {("f-b1", "electricity"): True, ("f-b2", "electricity"): False,
                        ("f-b2", "heat"): True, ("f-b3", "heat"): False}  # fmt: skip
    assert savings["criteria"]["cv_rmse_max"] == CRITERIA["cv_rmse_max"] == 0.25


def test_data_quality_counts_and_says_which_days_are_final() -> None:
    quality = report_doc()["data_quality"]
    assert quality["readings"] == {"issued": 150, "stored": 138, "quarantined": 5, "evicted": 7, "lost": 0,
                                   "completeness": 138 / 150}  # fmt: skip
    assert quality["quarantined_by_reason"] == {"non_finite": 3, "out_of_range": 2}
    assert quality["evicted_at_edge_by_reason"] == {"bytes_limit": 7}
    assert quality["days"]["final"] == ["2026-11-01"] and quality["days"]["provisional"] == ["2026-11-02"]
    assert quality["days"]["revisions"] == {"2026-11-01": 1, "2026-11-02": 3}
    assert [d["device"] for d in quality["devices"]] == ["f-em", "f-hm"]  # least complete first


def test_a_balance_without_every_factor_is_not_made_up() -> None:
    ped = report_doc()["ped"]
    assert ped["balance_kwh_pe"] is None and "district_heat" in ped["reason"]
    assert ped["factors"]["electricity"]["id"] == "pef/electricity/EU/2023"


def test_the_document_is_json_without_nan_and_differences_name_what_changed() -> None:
    import json

    doc = report_doc()
    json.dumps(doc, allow_nan=False)  # no NaN anywhere: JSON has none
    assert differences(doc, report_doc()) == []
    later = report_data()
    later.energy[0]["energy_kwh"] = 201.0
    changed = differences(doc, report_doc(later))
    assert "energy.by_carrier_kwh.electricity: 200.0 -> 201.0" in changed
    revised = report_data()
    revised.energy[3]["revisions"] = 5  # a day revised with the same energy: the inputs changed all the same
    assert [c.split(":")[0] for c in differences(doc, report_doc(revised))] == ["provenance.input_sha256"]
    assert any(c.startswith("provenance.input_sha256") for c in changed)
    regenerated = report_doc() | {"report": report_doc()["report"] | {"generated_at": "later"}}
    assert differences(doc, regenerated) == []  # the generation time is no difference
    assert not math.isnan(doc["energy"]["by_carrier_kwh"]["ev"])

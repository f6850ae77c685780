"""Verify CalTRACK daily/hourly against eemeter 3.2.0: run both on the shipped samples, print the differences.

    PYTHONPATH=. /tmp/probe-venv/bin/python scripts/verify_caltrack.py                 # compare, exit 1 on a miss
    PYTHONPATH=. /tmp/probe-venv/bin/python scripts/verify_caltrack.py --write-fixture # also record eemeter's numbers
    /tmp/eemeter-venv/bin/python scripts/verify_caltrack.py --extract-samples           # (re)write the sample CSVs

eemeter runs in its own venv (``EEMETER_PYTHON``, default ``/tmp/eemeter-venv/bin/python``; set it up with
``python3.11 -m venv /tmp/eemeter-venv && /tmp/eemeter-venv/bin/pip install eemeter==3.2.0 pandas==2.0.3
numpy==1.25.2 statsmodels==0.14.0 scipy==1.11.2``): this script re-runs itself there with ``--eemeter-worker``,
which imports only eemeter and pandas and prints one JSON object. The fixture
``tests/aggregation/data/eemeter-3.2.0-results.json`` lets the tests compare without that venv.

How eemeter is driven, so that it sees exactly what ``districtpulse savings`` sees: meter and temperature
rows read from the same CSVs, indexed in America/Chicago (the IL samples' zone, which matches each row's own
UTC offset: hourly models take hour of week and month from it); daily meter rows keep their local-midnight
starts (no resampling, so daylight-saving days last 23 or 25 hours); hourly rows are put on an hourly grid;
electricity zeros become NaN before eemeter sees them (CalTRACK 2.2.1.4: eemeter 3.2.0 leaves that rule to
its caller); baseline and reporting are ``get_baseline_data``/``get_reporting_data`` with explicit start and
end (eemeter nulls the row at END as its end marker, which makes its periods half-open like ours).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "aggregation" / "data"
FIXTURE = DATA / "eemeter-3.2.0-results.json"
EEMETER_PYTHON = os.environ.get("EEMETER_PYTHON", "/tmp/eemeter-venv/bin/python")  # noqa: S108 (documented venv)
TZ = "America/Chicago"

SAMPLES = [
    "il-electricity-cdd-hdd-daily",
    "il-electricity-cdd-only-daily",
    "il-gas-hdd-only-daily",
    "il-gas-intercept-only-daily",
    "il-electricity-cdd-hdd-hourly",
    "il-electricity-cdd-only-hourly",
    "il-gas-hdd-only-hourly",
    "il-gas-intercept-only-hourly",
]
TEMPERATURE = "il-tempF.csv.gz"
GAPPY = "il-electricity-cdd-hdd-daily-gappy"
GAPPY_TEMPERATURE = "il-tempF-gappy.csv.gz"
# The quickstart's periods (blackout 2016-12-26 .. 2017-01-04), on local midnights.
BASELINE = ("2015-12-26T00:00:00-06:00", "2016-12-26T00:00:00-06:00")
REPORTING = ("2017-01-04T00:00:00-06:00", "2018-01-04T00:00:00-06:00")

DAILY_TOLERANCE = 1e-6
HOURLY_TOLERANCE = 1e-3


def usage_file(sample: str) -> Path:
    return DATA / (f"{sample}.csv" if sample.endswith("daily") else f"{sample}.csv.gz")


def cases() -> list[dict[str, Any]]:
    """Each sample as one ``districtpulse savings`` invocation."""
    return [
        {
            "sample": s,
            "usage": usage_file(s).name,
            "temperature": TEMPERATURE,
            "method": "caltrack-daily" if s.endswith("daily") else "caltrack-hourly",
            "fuel": "gas" if "-gas-" in s else "electricity",
            "baseline": list(BASELINE),
            "reporting": list(REPORTING),
        }
        for s in SAMPLES
    ] + [
        {
            "sample": GAPPY,
            "usage": f"{GAPPY}.csv",
            "temperature": GAPPY_TEMPERATURE,
            "method": "caltrack-daily",
            "fuel": "electricity",
            "baseline": list(BASELINE),
            "reporting": list(REPORTING),
        }
    ]


# ---------------------------------------------------------------- eemeter side (runs in the eemeter venv)


def _extract_samples() -> None:
    """Write the shipped IL samples in the CLI's CSV format (header ``timestamp,value``, empty = missing)."""
    from importlib.resources import files

    import pandas as pd

    src = files("eemeter.samples")
    DATA.mkdir(parents=True, exist_ok=True)
    for name in [*SAMPLES, "il-tempF"]:
        with src.joinpath(f"{name}.csv.gz").open("rb") as f:
            df = pd.read_csv(f, compression="gzip", dtype=str, keep_default_na=False)
        df.columns = ["timestamp", "value"]
        df["value"] = df["value"].replace({"nan": "", "NaN": ""})
        text = df.to_csv(index=False, lineterminator="\n")
        target = DATA / (f"{name}.csv" if name.endswith("daily") else f"{name}.csv.gz")
        if target.suffix == ".gz":
            with gzip.GzipFile(target, "wb", mtime=0) as g:  # mtime 0: byte-identical on every run
                g.write(text.encode())
        else:
            target.write_text(text)
        print(f"wrote {target.relative_to(ROOT)} ({len(df)} rows)")
    _write_gappy_variants()


def _write_gappy_variants() -> None:
    """Derived files that exercise missing data on normal and daylight-saving days (deterministic edits)."""
    import pandas as pd

    usage = pd.read_csv(usage_file("il-electricity-cdd-hdd-daily"), dtype=str, keep_default_na=False)
    local_day = pd.to_datetime(usage["timestamp"], utc=True).dt.tz_convert(TZ).dt.strftime("%Y-%m-%d")
    for day in ["2016-01-20", "2016-01-21", "2016-01-22", "2016-06-01", "2017-02-14", "2017-08-08"]:
        usage.loc[local_day == day, "value"] = ""  # empty values: missing days
    for day in ["2016-04-10", "2017-05-01"]:
        usage.loc[local_day == day, "value"] = "0"  # electricity zeros: missing too
    usage.to_csv(DATA / f"{GAPPY}.csv", index=False, lineterminator="\n")

    temps = pd.read_csv(DATA / TEMPERATURE, dtype=str, keep_default_na=False)
    local = pd.to_datetime(temps["timestamp"], utc=True).dt.tz_convert(TZ)
    day = local.dt.strftime("%Y-%m-%d")
    hour = local.dt.hour
    blank = (
        ((day == "2016-11-06") & hour.isin([3, 4, 5]))  # 25-hour day, 22 of 25 hours: below 90 %, invalid
        | ((day == "2017-11-05") & hour.isin([8, 9]))  # 25-hour day, 23 of 25 hours: valid
        | ((day == "2016-03-13") & (hour < 13))  # 23-hour day, 11 of 23 hours left: valid (mean of 11)
        | (day == "2017-03-12")  # 23-hour day without temperature: invalid
        | (day == "2016-02-10")  # a whole day blank: invalid
        | ((day == "2016-07-04") & (hour < 20))  # 4 of 24 hours: still valid in eemeter 3.2.0
    )
    temps.loc[blank, "value"] = ""
    temps = temps[day != "2016-05-05"]  # a whole day of rows absent: the same as blank
    text = temps.to_csv(index=False, lineterminator="\n")
    with gzip.GzipFile(DATA / GAPPY_TEMPERATURE, "wb", mtime=0) as g:
        g.write(text.encode())
    print(f"wrote {GAPPY}.csv and {GAPPY_TEMPERATURE}")


def _eemeter_case(case: dict[str, Any]) -> dict[str, Any]:
    import eemeter
    import numpy as np
    import pandas as pd

    def read(path: Path) -> pd.Series:
        df = pd.read_csv(path, dtype={"value": np.float64})
        index = pd.DatetimeIndex(pd.to_datetime(df["timestamp"], utc=True), name="start").tz_convert(TZ)
        return pd.Series(df["value"].to_numpy(), index=index, name="value")

    temperature = read(DATA / case["temperature"]).resample("H").mean()
    meter = read(DATA / case["usage"])
    if case["fuel"] == "electricity":
        meter = meter.where(meter != 0.0)
    if case["method"] == "caltrack-hourly":
        meter = meter.resample("H").sum(min_count=1)
    meter_data = meter.to_frame("value")
    b0, b1 = (pd.Timestamp(t).tz_convert(TZ) for t in case["baseline"])
    r0, r1 = (pd.Timestamp(t).tz_convert(TZ) for t in case["reporting"])
    baseline, _ = eemeter.get_baseline_data(meter_data, start=b0, end=b1, max_days=None)
    reporting, _ = eemeter.get_reporting_data(meter_data, start=r0, end=r1, max_days=None)
    out: dict[str, Any] = {}
    if case["method"] == "caltrack-daily":
        design = eemeter.create_caltrack_daily_design_matrix(baseline, temperature)
        fit = eemeter.fit_caltrack_usage_per_day_model(design, fit_cdd=case["fuel"] == "electricity")
        model = fit.model
        out["model_type"] = model.model_type
        out["params"] = {
            k: (int(v) if k.endswith("balance_point") else float(v)) for k, v in model.model_params.items()
        }
        out["params"]["r_squared_adj"] = float(model.r_squared_adj)
        totals = fit.totals_metrics
        results, bands = eemeter.metered_savings(fit, reporting, temperature, with_disaggregated=True)
    else:
        design = eemeter.create_caltrack_hourly_preliminary_design_matrix(baseline, temperature)
        segmentation = eemeter.segment_time_series(design.index, "three_month_weighted")
        occupancy = eemeter.estimate_hour_of_week_occupancy(design, segmentation=segmentation)
        occ_bins, unocc_bins = eemeter.fit_temperature_bins(
            design, segmentation=segmentation, occupancy_lookup=occupancy
        )
        matrices = eemeter.create_caltrack_hourly_segmented_design_matrices(
            design, segmentation, occupancy, occ_bins, unocc_bins
        )
        fit = eemeter.fit_caltrack_hourly_model(matrices, occupancy, occ_bins, unocc_bins)
        out["model_type"] = "caltrack_hourly"
        out["params"] = {
            "occupancy": {str(c): [int(x) for x in occupancy[c].astype(int)] for c in occupancy.columns},
            "occupied_bins": {str(c): [int(b) for b in occ_bins.index[occ_bins[c]]] for c in occ_bins.columns},
            "unoccupied_bins": {str(c): [int(b) for b in unocc_bins.index[unocc_bins[c]]] for c in unocc_bins.columns},
        }
        # eemeter 3.2.0 has no whole-model metrics for hourly: computed here from its in-sample prediction.
        fitted = fit.predict(baseline.index, temperature).result["predicted_usage"]
        totals = eemeter.ModelMetrics(baseline["value"], fitted, 0)
        results, bands = eemeter.metered_savings(fit, reporting, temperature)
    both = results.dropna()
    out.update(
        {
            "metered_savings": float(both["metered_savings"].sum()),
            "counterfactual_total": float(both["counterfactual_usage"].sum()),
            "observed_total": float(both["reporting_observed"].sum()),
            "reporting_intervals": len(both),
            "baseline_intervals": int(totals.observed_length),
            "cv_rmse": float(totals.cvrmse_adj),
            "nmbe": float(totals.nmbe),
            "r_squared": float(totals.r_squared),
            "autocorr_resid": float(totals.autocorr_resid),
            "fsu_error_band": None if bands is None else float(bands["FSU Error Band"]),
        }
    )
    return out


def _worker() -> None:
    results = {c["sample"]: {"case": c, "eemeter": _eemeter_case(c)} for c in cases()}
    json.dump(results, sys.stdout)


# ---------------------------------------------------------------- our side (runs in the project's venv)


def run_ours(case: dict[str, Any]) -> dict[str, Any]:
    """Our result for a case, through the same code path as ``districtpulse savings --json``."""
    from aggregation import savings_cli

    args = savings_cli.parse([
        "--usage", str(DATA / case["usage"]),
        "--temperature", str(DATA / case["temperature"]),
        "--baseline", *case["baseline"],
        "--reporting", *case["reporting"],
        "--method", case["method"],
        "--fuel", case["fuel"],
    ])  # fmt: skip
    result: dict[str, Any] = savings_cli.compute(args).to_json()
    return result


def relative_difference(ours: Any, theirs: Any) -> float:
    if ours is None or theirs is None:
        return 0.0 if ours is None and theirs is None else math.inf
    if isinstance(theirs, str | int) and not isinstance(theirs, bool) and isinstance(ours, str | int):
        return 0.0 if ours == theirs else math.inf
    scale = max(abs(float(theirs)), 1e-12)
    return abs(float(ours) - float(theirs)) / scale


COMPARED = ["metered_savings", "counterfactual_total", "observed_total", "cv_rmse", "nmbe", "fsu_error_band"]


def compare(sample: str, ours: dict[str, Any], theirs: dict[str, Any], tolerance: float) -> list[str]:
    """Print one line per compared quantity; return the names of those beyond tolerance."""
    failures: list[str] = []
    rows: list[tuple[str, Any, Any, float]] = [("model_type", ours["model_type"], theirs["model_type"], 0.0)]
    if theirs["model_type"] != "caltrack_hourly":
        for key, value in theirs["params"].items():
            rows.append((f"params.{key}", ours["params"].get(key), value, 0.0))
    else:
        for key in ("occupancy", "occupied_bins", "unoccupied_bins"):
            same = ours["params"].get(key) == value if (value := theirs["params"][key]) is not None else True
            rows.append((f"params.{key}", "same" if same else "differs", "", 0.0 if same else math.inf))
    rows.extend(
        (key, ours.get(key), theirs.get(key), 0.0) for key in ("reporting_intervals", "baseline_intervals", *COMPARED)
    )
    print(f"\n{sample}")
    for key, a, b, preset in rows:
        diff = preset if key.startswith("params.o") or key.startswith("params.u") else relative_difference(a, b)
        ok = diff <= tolerance
        if not ok:
            failures.append(key)
        print(f"  {'ok  ' if ok else 'MISS'} {key:<28} ours={a!s:<24.24} eemeter={b!s:<24.24} rel.diff={diff:.2e}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--eemeter-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--extract-samples", action="store_true", help="(eemeter venv) write the sample CSVs")
    parser.add_argument("--write-fixture", action="store_true", help="record eemeter's results for the tests")
    parser.add_argument("--from-fixture", action="store_true", help="compare against the fixture, not a live run")
    args = parser.parse_args(argv)
    if args.eemeter_worker:
        _worker()
        return 0
    if args.extract_samples:
        _extract_samples()
        return 0
    if args.from_fixture:
        recorded = json.loads(FIXTURE.read_text())
    else:
        if not Path(EEMETER_PYTHON).exists():
            print(f"eemeter venv not found at {EEMETER_PYTHON}: set EEMETER_PYTHON or use --from-fixture")
            return 2
        proc = subprocess.run(
            [EEMETER_PYTHON, str(Path(__file__).resolve()), "--eemeter-worker"],
            capture_output=True, text=True, check=False, cwd=ROOT,
        )  # fmt: skip
        if proc.returncode:
            print(proc.stderr)
            return proc.returncode
        recorded = json.loads(proc.stdout)
        if args.write_fixture:
            FIXTURE.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
            print(f"wrote {FIXTURE.relative_to(ROOT)}")
    failures = 0
    for sample, entry in recorded.items():
        try:
            ours = run_ours(entry["case"])
        except (ImportError, NotImplementedError) as exc:
            print(f"\n{sample}\n  SKIP {exc}")
            continue
        tolerance = DAILY_TOLERANCE if entry["case"]["method"] == "caltrack-daily" else HOURLY_TOLERANCE
        failures += len(compare(sample, ours, entry["eemeter"], tolerance))
    print(f"\n{'all within tolerance' if not failures else f'{failures} quantities beyond tolerance'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""``districtpulse savings``: the command an analyst runs, its CSV errors, JSON keys, report and plot."""

from __future__ import annotations

import gzip
import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aggregation import savings_cli
from tests.support.eemeter import DATA, FIXTURE

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = "il-electricity-cdd-hdd-daily"
BASELINE = ["2015-12-26T00:00:00-06:00", "2016-12-26T00:00:00-06:00"]
REPORTING = ["2017-01-04T00:00:00-06:00", "2018-01-04T00:00:00-06:00"]
JSON_KEYS = {
    "metered_savings",
    "counterfactual_total",
    "observed_total",
    "model_type",
    "params",
    "cv_rmse",
    "nmbe",
    "fsu",
}


def argv(usage: Path, temperature: Path, *extra: str, method: str = "caltrack-daily") -> list[str]:
    return [
        "--usage", str(usage), "--temperature", str(temperature),
        "--baseline", *BASELINE, "--reporting", *REPORTING,
        "--method", method, "--fuel", "electricity", *extra,
    ]  # fmt: skip


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "districtpulse", "savings", *args],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip


def test_help() -> None:
    proc = cli("--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: districtpulse savings" in proc.stdout
    assert "timestamp,value" in proc.stdout  # the CSV format is documented in --help


def test_json_through_the_real_command() -> None:
    """The installed command prints one JSON object with the issue's keys and eemeter's numbers."""
    proc = cli(*argv(DATA / f"{SAMPLE}.csv", DATA / "il-tempF.csv.gz", "--json"))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) >= JSON_KEYS
    theirs = FIXTURE[SAMPLE]["eemeter"]
    assert out["model_type"] == "cdd_hdd"
    assert out["params"]["heating_balance_point"] == 53
    assert out["params"]["cooling_balance_point"] == 67
    assert out["metered_savings"] == pytest.approx(theirs["metered_savings"], rel=1e-6)
    assert out["fsu"] == pytest.approx(theirs["fsu_error_band"] / theirs["metered_savings"], rel=1e-6)


def test_report(capsys: pytest.CaptureFixture[str]) -> None:
    code = savings_cli.run(savings_cli.parse(argv(DATA / f"{SAMPLE}.csv", DATA / "il-tempF.csv.gz")))
    assert code == 0
    text = capsys.readouterr().out
    assert "cdd_hdd" in text
    assert "heating 1.1350/HDD below 53 degF" in text
    assert "cooling 2.3496/CDD above 67 degF" in text
    assert "metered savings 846.9 (8.5 % of the counterfactual)" in text
    assert "+/- 314.1 at 90 % confidence (ASHRAE G14 FSU 37.1 %)" in text


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


GOOD_HEADER = "timestamp,value\n"
BAD_CSVS: dict[str, tuple[str, str]] = {
    "wrong header": ("time,kwh\n2016-01-01T00:00:00Z,1\n", "line 1: expected the header 'timestamp,value'"),
    "three fields": (GOOD_HEADER + "2016-01-01T00:00:00Z,1,2\n", "line 2: expected 2 fields"),
    "bad timestamp": (GOOD_HEADER + "2016-01-01T00:00:00Z,1\nyesterday,2\n", "line 3: timestamp 'yesterday' is not"),
    "no offset": (GOOD_HEADER + "2016-01-01T00:00:00,1\n", "line 2: timestamp '2016-01-01T00:00:00' has no UTC"),
    "not a number": (GOOD_HEADER + "2016-01-01T00:00:00Z,abc\n", "line 2: value 'abc' is not a number"),
    "infinite": (GOOD_HEADER + "2016-01-01T00:00:00Z,inf\n", "line 2: value 'inf' is not finite"),
    "duplicate": (
        GOOD_HEADER + "2016-01-01T00:00:00Z,1\n2016-01-01T01:00:00+01:00,2\n",
        "line 3: timestamp '2016-01-01T01:00:00+01:00' is not after the previous row's",
    ),
    "out of order": (
        GOOD_HEADER + "2016-01-02T00:00:00Z,1\n2016-01-01T00:00:00Z,2\n",
        "line 3: timestamp '2016-01-01T00:00:00Z' is not after",
    ),
    "empty": (GOOD_HEADER, "no data rows after the header"),
}


@pytest.mark.parametrize("name", BAD_CSVS)
def test_bad_csv_names_file_and_line(tmp_path: Path, name: str) -> None:
    text, message = BAD_CSVS[name]
    path = write(tmp_path / "usage.csv", text)
    with pytest.raises(savings_cli.CsvError) as info:
        savings_cli.read_series(path)
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)


def test_missing_values_and_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "u.csv", GOOD_HEADER + "2016-01-01T00:00:00-06:00,1.5\n\n2016-01-02T00:00:00-06:00,\n")
    rows = savings_cli.read_series(path)
    assert rows.start_s.tolist() == [1451628000, 1451714400]
    assert rows.offset_s.tolist() == [-21600, -21600]
    assert rows.value[0] == 1.5
    assert rows.value[1] != rows.value[1]  # NaN


def test_bad_csv_exits_2_with_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    usage = write(tmp_path / "usage.csv", GOOD_HEADER + "2016-01-01T00:00:00,1\n")
    code = savings_cli.run(savings_cli.parse(argv(usage, DATA / "il-tempF.csv.gz")))
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("districtpulse savings: error: ")
    assert "usage.csv line 2: timestamp '2016-01-01T00:00:00' has no UTC offset" in err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = savings_cli.run(savings_cli.parse(argv(tmp_path / "nope.csv", DATA / "il-tempF.csv.gz")))
    assert code == 2
    assert "nope.csv: cannot open" in capsys.readouterr().err


def test_hourly_rows_for_the_daily_method_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    usage = DATA / "il-electricity-cdd-hdd-hourly.csv.gz"
    code = savings_cli.run(savings_cli.parse(argv(usage, DATA / "il-tempF.csv.gz")))
    assert code == 2
    assert "caltrack-daily needs one row per day, but the rows are 1 h apart" in capsys.readouterr().err


def test_no_model_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [f"2016-{m:02d}-{d:02d}T00:00:00-06:00,-5" for m in range(1, 13) for d in range(1, 28)]
    usage = write(tmp_path / "negative.csv", GOOD_HEADER + "\n".join(lines) + "\n")
    code = savings_cli.run(savings_cli.parse(argv(usage, DATA / "il-tempF.csv.gz")))
    assert code == 3
    assert "no CalTRACK daily model qualifies" in capsys.readouterr().err


def test_bad_period(capsys: pytest.CaptureFixture[str]) -> None:
    args = savings_cli.parse(argv(DATA / f"{SAMPLE}.csv", DATA / "il-tempF.csv.gz"))
    args.baseline = [BASELINE[1], BASELINE[0]]
    assert savings_cli.run(args) == 2
    assert "--baseline: END" in capsys.readouterr().err


def result_json(args: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = savings_cli.compute(savings_cli.parse(args)).to_json()
    return out


def test_local_wall_clock_periods_equal_explicit_offsets() -> None:
    explicit = result_json(argv(DATA / f"{SAMPLE}.csv", DATA / "il-tempF.csv.gz"))
    args = argv(DATA / f"{SAMPLE}.csv", DATA / "il-tempF.csv.gz")
    for period in (BASELINE, REPORTING):
        for value in period:
            args[args.index(value)] = value[:10]  # "2015-12-26": local midnight at the rows' offset
    assert result_json(args) == explicit


def test_celsius_temperatures(tmp_path: Path) -> None:
    with gzip.open(DATA / "il-tempF.csv.gz", "rt") as f:
        lines = f.read().splitlines()
    converted = [lines[0]]
    for line in lines[1:]:
        stamp, value = line.split(",")
        converted.append(f"{stamp},{(float(value) - 32) / 1.8!r}" if value else f"{stamp},")
    temp_c = write(tmp_path / "tempC.csv", "\n".join(converted) + "\n")
    fahrenheit = result_json(argv(DATA / f"{SAMPLE}.csv", DATA / "il-tempF.csv.gz"))
    celsius = result_json(argv(DATA / f"{SAMPLE}.csv", temp_c, "--temperature-unit", "C"))
    assert celsius["params"]["heating_balance_point"] == fahrenheit["params"]["heating_balance_point"]
    assert celsius["params"]["cooling_balance_point"] == fahrenheit["params"]["cooling_balance_point"]
    assert celsius["metered_savings"] == pytest.approx(fahrenheit["metered_savings"], rel=1e-9)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "fit.png"
    code = savings_cli.run(
        savings_cli.parse(argv(DATA / f"{SAMPLE}.csv", DATA / "il-tempF.csv.gz", "--plot", str(png)))
    )
    assert code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000  # two panels with data, not an empty canvas


def test_plot_without_matplotlib_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.import_module

    def no_matplotlib(name: str, package: str | None = None) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", no_matplotlib)
    png = tmp_path / "fit.png"
    code = savings_cli.run(
        savings_cli.parse(argv(DATA / f"{SAMPLE}.csv", DATA / "il-tempF.csv.gz", "--plot", str(png)))
    )
    assert code == 2
    assert "pip install 'districtpulse[plot]'" in capsys.readouterr().err
    assert not png.exists()


def test_hourly_report_and_daily_rows_refused(capsys: pytest.CaptureFixture[str]) -> None:
    hourly = DATA / "il-gas-hdd-only-hourly.csv.gz"
    args = argv(hourly, DATA / "il-tempF.csv.gz", method="caltrack-hourly")
    args[args.index("electricity")] = "gas"
    assert savings_cli.run(savings_cli.parse(args)) == 0
    text = capsys.readouterr().out
    assert "CalTRACK 2.0 hourly savings, gas" in text
    assert "8784 hours with usage and temperature" in text
    assert "metered savings 99.7" in text
    assert "(ASHRAE G14 FSU n/a)" in text
    daily = argv(DATA / f"{SAMPLE}.csv", DATA / "il-tempF.csv.gz", method="caltrack-hourly")
    assert savings_cli.run(savings_cli.parse(daily)) == 2
    assert "caltrack-hourly needs hourly (or finer) rows, but the rows are 24 h apart" in capsys.readouterr().err

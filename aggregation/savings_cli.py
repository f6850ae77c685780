"""``districtpulse savings``: weather-normalised metered savings (CalTRACK 2.0) from two CSV files.

An energy analyst's tool that needs no InfluxDB::

    districtpulse savings --usage USAGE.csv --temperature TEMP.csv \\
        --baseline 2015-12-26T00:00-06:00 2016-12-26T00:00-06:00 \\
        --reporting 2017-01-04T00:00-06:00 2018-01-04T00:00-06:00 \\
        --method caltrack-daily --fuel electricity [--temperature-unit C] [--json] [--plot fit.png]

CSV format (both files; ``.csv.gz`` is read too): the header ``timestamp,value``, then one row per interval.
``timestamp`` is the interval start in ISO 8601 with a UTC offset (``2016-03-13T00:00:00-06:00``, ``Z`` for
UTC); a row runs until the next row's timestamp, the last row of a period until the period's END. An empty
value (or ``nan``) is missing data. USAGE.csv holds daily rows for ``caltrack-daily`` and hourly (or finer,
summed to hours) rows for ``caltrack-hourly``; TEMP.csv holds hourly outdoor temperature. Periods are
half-open ``[START, END)``; a START/END without an offset is read as local wall-clock time at the offset of
the usage rows. Daylight-saving days and the other rules are in ``aggregation.caltrack_daily`` and
``aggregation.caltrack_hourly``.

Exit codes: 0 done, 2 bad input (the message names the file and line), 3 no model qualifies.
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import io
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

import numpy as np

from aggregation._caltrack_common import Fuel, HourlyTemperature, MeterSeries
from aggregation.caltrack_daily import NoModelError, SavingsResult, caltrack_daily

__all__ = ["CsvError", "add_arguments", "compute", "parse", "read_series", "run"]

METHODS = ("caltrack-daily", "caltrack-hourly")
FUELS = ("electricity", "gas")


class CsvError(ValueError):
    """A CSV file that cannot be read as ``timestamp,value`` rows; the message names file and line."""


@dataclass(frozen=True)
class _Rows:
    start_s: np.ndarray
    offset_s: np.ndarray
    value: np.ndarray


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def _parse_instant(text: str) -> datetime:
    stamp = text.strip()
    if stamp.endswith(("Z", "z")):
        stamp = stamp[:-1] + "+00:00"
    return datetime.fromisoformat(stamp)


def read_series(path: Path) -> _Rows:
    """Rows of a ``timestamp,value`` CSV. Raises :class:`CsvError` (file, line, what is wrong)."""
    starts: list[int] = []
    offsets: list[int] = []
    values: list[float] = []
    try:
        handle = _open_text(path)
    except OSError as exc:
        raise CsvError(f"{path}: cannot open: {exc.strerror or exc}") from exc
    with handle:
        try:
            header = handle.readline()
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            raise CsvError(f"{path}: not a readable text file ({exc})") from exc
        if [h.strip().lower() for h in header.strip().split(",")] != ["timestamp", "value"]:
            raise CsvError(f"{path} line 1: expected the header 'timestamp,value', got {header.strip()[:80]!r}")
        previous = None
        try:
            lines = list(handle)
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            raise CsvError(f"{path}: not a readable text file ({exc})") from exc
        for lineno, line in enumerate(lines, start=2):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split(",")
            if len(fields) != 2:
                raise CsvError(f"{path} line {lineno}: expected 2 fields 'timestamp,value', got {len(fields)}")
            stamp, raw = fields
            try:
                when = _parse_instant(stamp)
            except ValueError:
                raise CsvError(
                    f"{path} line {lineno}: timestamp {stamp.strip()[:40]!r} is not ISO 8601"
                    " (expected e.g. 2016-03-13T00:00:00-06:00)"
                ) from None
            offset = when.utcoffset()
            if offset is None:
                raise CsvError(
                    f"{path} line {lineno}: timestamp {stamp.strip()!r} has no UTC offset (add one, e.g. -06:00 or Z)"
                )
            epoch = int(when.timestamp())
            if when.timestamp() != epoch:
                raise CsvError(f"{path} line {lineno}: timestamp {stamp.strip()!r} has fractional seconds")
            if previous is not None and epoch <= previous:
                raise CsvError(
                    f"{path} line {lineno}: timestamp {stamp.strip()!r} is not after the previous row's"
                    " (rows must be in time order, without duplicates)"
                )
            previous = epoch
            text = raw.strip()
            if text == "" or text.lower() == "nan":
                value = math.nan
            else:
                try:
                    value = float(text)
                except ValueError:
                    raise CsvError(f"{path} line {lineno}: value {text[:40]!r} is not a number") from None
                if not math.isfinite(value):
                    raise CsvError(f"{path} line {lineno}: value {text!r} is not finite")
            starts.append(epoch)
            offsets.append(int(offset.total_seconds()))
            values.append(value)
    if not starts:
        raise CsvError(f"{path}: no data rows after the header")
    return _Rows(
        np.asarray(starts, dtype=np.int64), np.asarray(offsets, dtype=np.int64), np.asarray(values, dtype=np.float64)
    )


def hourly_temperature(rows: _Rows, unit: str) -> HourlyTemperature:
    """Put temperature rows on an hourly UTC grid (several rows in one hour are averaged), in degF."""
    degf = rows.value * 1.8 + 32.0 if unit == "C" else rows.value
    hour = rows.start_s // 3600
    t0 = int(hour[0])
    k = hour - t0
    total = np.zeros(int(k[-1]) + 1)
    count = np.zeros(int(k[-1]) + 1)
    ok = np.isfinite(degf)
    np.add.at(total, k[ok], degf[ok])
    np.add.at(count, k[ok], 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = np.where(count > 0, total / np.maximum(count, 1.0), np.nan)
    return HourlyTemperature(t0_s=t0 * 3600, degf=grid)


def _instant(text: str, usage: MeterSeries, what: str) -> int:
    try:
        when = _parse_instant(text)
    except ValueError:
        raise CsvError(f"{what}: {text!r} is not an ISO 8601 date or timestamp") from None
    offset = when.utcoffset()
    if offset is not None:
        return int(when.timestamp())
    # Local wall-clock time: take the UTC offset of the usage row in force at that wall-clock time.
    naive = int(when.replace(tzinfo=UTC).timestamp())
    local = usage.start_s + usage.offset_s
    i = max(int(np.searchsorted(local, naive, side="right")) - 1, 0)
    return naive - int(usage.offset_s[i])


def _period(pair: Sequence[str], usage: MeterSeries, what: str) -> tuple[int, int]:
    start = _instant(pair[0], usage, what)
    end = _instant(pair[1], usage, what)
    if end <= start:
        raise CsvError(f"{what}: END {pair[1]} is not after START {pair[0]}")
    return start, end


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 2)[2] if __doc__ else None
    parser.add_argument("--usage", type=Path, required=True, metavar="USAGE.csv", help="meter rows: timestamp,value")
    parser.add_argument(
        "--temperature", type=Path, required=True, metavar="TEMP.csv", help="hourly outdoor temperature"
    )
    parser.add_argument("--baseline", nargs=2, required=True, metavar=("START", "END"), help="baseline period")
    parser.add_argument("--reporting", nargs=2, required=True, metavar=("START", "END"), help="reporting period")
    parser.add_argument("--method", choices=METHODS, required=True, help="CalTRACK 2.0 daily or hourly")
    parser.add_argument("--fuel", choices=FUELS, required=True, help="gas: no cooling terms; electricity: 0 = missing")
    parser.add_argument("--temperature-unit", choices=("F", "C"), default="F", help="unit of TEMP.csv (default F)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    parser.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="draw the fit and the counterfactual (matplotlib)"
    )


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``savings`` arguments on their own (for scripts and tests)."""
    parser = argparse.ArgumentParser(prog="districtpulse savings")
    add_arguments(parser)
    return parser.parse_args(list(argv))


def compute(args: argparse.Namespace) -> SavingsResult:
    """Read the files and run the chosen method. Raises :class:`CsvError` or ``NoModelError``."""
    usage_rows = read_series(args.usage)
    usage = MeterSeries(usage_rows.start_s, usage_rows.offset_s, usage_rows.value)
    temperature = hourly_temperature(read_series(args.temperature), args.temperature_unit)
    baseline = _period(args.baseline, usage, "--baseline")
    reporting = _period(args.reporting, usage, "--reporting")
    fuel = cast(Fuel, args.fuel)
    steps = np.diff(usage.start_s)
    median_step_h = float(np.median(steps)) / 3600 if steps.size else math.nan
    if args.method == "caltrack-daily":
        if steps.size and not 23 <= median_step_h <= 25:
            raise CsvError(
                f"{args.usage}: caltrack-daily needs one row per day, but the rows are {median_step_h:g} h apart"
                " (use --method caltrack-hourly for hourly data)"
            )
        return caltrack_daily(usage, temperature, baseline, reporting, fuel)
    from aggregation import caltrack_hourly

    if steps.size and median_step_h > 1:
        raise CsvError(
            f"{args.usage}: caltrack-hourly needs hourly (or finer) rows, but the rows are {median_step_h:g} h apart"
        )
    return caltrack_hourly.caltrack_hourly(usage, temperature, baseline, reporting, fuel)


def _fmt(x: float, digits: int = 1) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:,.{digits}f}"


def _pct(x: float, digits: int = 1) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:.{digits}f} %"


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def report(result: SavingsResult, args: argparse.Namespace) -> str:
    """The human-readable report."""
    p = result.params
    unit = "day" if result.method == "caltrack-daily" else "hour"
    lines = [
        f"CalTRACK 2.0 {'daily' if unit == 'day' else 'hourly'} savings, {result.fuel}: {args.usage}",
        f"  baseline   {args.baseline[0]} .. {args.baseline[1]}: {result.metrics.n} {unit}s with usage and temperature",
    ]
    if result.method == "caltrack-daily":
        terms = [f"base {_fmt(float(p['intercept'] or 0), 3)}/day"]
        if "heating_balance_point" in p:
            terms.append(f"heating {_fmt(float(p['beta_hdd'] or 0), 4)}/HDD below {p['heating_balance_point']} degF")
        if "cooling_balance_point" in p:
            terms.append(f"cooling {_fmt(float(p['beta_cdd'] or 0), 4)}/CDD above {p['cooling_balance_point']} degF")
        r2 = p.get("r_squared_adj")
        lines.append(f"  model      {result.model_type}: " + ", ".join(terms) + f" (adj. R2 {_fmt(float(r2 or 0), 3)})")
    else:
        lines.append("  model      time-of-week and temperature, occupancy, 12 three-month weighted segments")
    lines += [
        f"  fit        CV(RMSE) {_pct(result.metrics.cv_rmse)}, NMBE {_pct(result.metrics.nmbe, 4)}",
        f"  reporting  {args.reporting[0]} .. {args.reporting[1]}: {result.reporting_n} {unit}s with usage",
        f"  counterfactual {_fmt(result.counterfactual_total)}  observed {_fmt(result.observed_total)}",
        f"  metered savings {_fmt(result.metered_savings)}"
        + (
            f" ({_pct(result.metered_savings / result.counterfactual_total)} of the counterfactual)"
            if result.counterfactual_total
            else ""
        ),
        f"  uncertainty +/- {_fmt(result.fsu_error_band)} at 90 % confidence (ASHRAE G14 FSU {_pct(result.fsu)})",
    ]
    return "\n".join(lines)


def plot(result: SavingsResult, path: Path) -> None:
    """Baseline fit and counterfactual against observed use, one PNG. Needs matplotlib (``plot`` extra)."""
    # Imported by name: matplotlib is optional (the ``plot`` extra) and mypy must not require it.
    importlib.import_module("matplotlib").use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")

    def dates(ts: np.ndarray) -> np.ndarray:
        return ts.astype("datetime64[s]")

    fig, (ax_fit, ax_rep) = plt.subplots(2, 1, figsize=(11, 7), constrained_layout=True)
    if result.baseline_td is not None:
        order = np.argsort(result.baseline_td)
        days = np.where(np.isfinite(result.baseline_observed), result.baseline_observed, np.nan)
        ax_fit.scatter(result.baseline_td, days, s=6, alpha=0.5, label="observed")
        ax_fit.plot(result.baseline_td[order], result.baseline_fitted[order], color="C1", label="baseline model")
        ax_fit.set_xlabel("daily mean outdoor temperature (degF)")
    else:
        ax_fit.plot(dates(result.baseline_start_s), result.baseline_observed, lw=0.4, label="observed")
        ax_fit.plot(dates(result.baseline_start_s), result.baseline_fitted, lw=0.4, label="baseline model")
    ax_fit.set_title(f"baseline fit ({result.model_type}), CV(RMSE) {_pct(result.metrics.cv_rmse)}")
    ax_fit.legend()
    ax_rep.plot(dates(result.reporting_start_s), result.reporting_counterfactual, lw=0.6, label="counterfactual")
    ax_rep.plot(dates(result.reporting_start_s), result.reporting_observed, lw=0.6, label="observed")
    ax_rep.set_title(f"reporting period: metered savings {_fmt(result.metered_savings)}")
    ax_rep.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    try:
        result = compute(args)
    except CsvError as exc:
        print(f"districtpulse savings: error: {exc}", file=sys.stderr)
        return 2
    except NoModelError as exc:
        print(f"districtpulse savings: {exc}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(result.to_json(), allow_nan=False))
    else:
        print(report(result, args))
    if args.plot is not None:
        try:
            plot(result, args.plot)
        except ImportError:
            print("districtpulse savings: --plot needs matplotlib: pip install 'districtpulse[plot]'", file=sys.stderr)
            return 2
    return 0

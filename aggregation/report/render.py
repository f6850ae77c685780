"""The report's outputs: a self-contained HTML page (charts inline as SVG, no external request), the JSON
document, and a PDF printed from the HTML by headless Chromium (what the tests' browser is), so the PDF
shows exactly what the page shows.

Charts are matplotlib figures (the `plot` extra); without matplotlib the page says so where a chart would be.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PDF_TIMEOUT_S = 120
COLOURS = {
    "electricity": "#1f77b4",
    "heat": "#d62728",
    "pv": "#ff7f0e",
    "ev": "#2ca02c",
    "electricity_export": "#9467bd",
}


class RenderError(RuntimeError):
    """An output could not be made; the message says what is missing."""


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def _pct(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * float(value):.{digits}f} %"


ENV = Environment(
    loader=PackageLoader("aggregation.report", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(num=_fmt, pct=_pct)


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # no XML prolog inside the HTML


def charts(doc: dict[str, Any]) -> dict[str, str | None]:
    """SVG of each chart (None without matplotlib or without data)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError:
        return {"daily_energy": None, "savings": None}
    out: dict[str, str | None] = {"daily_energy": None, "savings": None}
    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9})
    days = doc["energy"]["days"]
    if days:
        fig, ax = plt.subplots(figsize=(8, 3))
        x = list(range(len(days)))
        bottom = [0.0] * len(days)
        for carrier in ("electricity", "heat", "ev"):
            values = [d[carrier] for d in days]
            ax.bar(x, values, bottom=bottom, color=COLOURS[carrier], label=carrier, width=0.85)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.plot(x, [d["pv"] for d in days], color=COLOURS["pv"], label="pv (generated)", linewidth=1.5)
        step = max(1, len(days) // 8)
        ax.set_xticks(x[::step], [d["day"] for d in days][::step], rotation=30, ha="right")
        ax.set_ylabel("kWh per day")
        ax.legend(loc="upper left", ncols=4, frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
        out["daily_energy"] = _svg(fig)
        plt.close(fig)
    series = [s for s in doc["savings"]["series"] if s["savings_kwh"] is not None]
    if series:
        fig, ax = plt.subplots(figsize=(8, 3))
        x = list(range(len(series)))
        savings = [s["savings_kwh"] for s in series]
        band = [s["band_90_kwh"] or 0.0 for s in series]
        ax.fill_between(
            x,
            [s - b for s, b in zip(savings, band, strict=True)],
            [s + b for s, b in zip(savings, band, strict=True)],
            color="#2ca02c",
            alpha=0.2,
            label="90 % band",
        )
        ax.plot(x, savings, color="#2ca02c", label="savings to date")
        ax.axhline(0, color="#666", linewidth=0.8)
        step = max(1, len(series) // 8)
        ax.set_xticks(x[::step], [s["day"] for s in series][::step], rotation=30, ha="right")
        ax.set_ylabel("kWh since the retrofits")
        ax.legend(loc="upper left", frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
        out["savings"] = _svg(fig)
        plt.close(fig)
    return out


def html(doc: dict[str, Any]) -> str:
    return ENV.get_template("report.html").render(doc=doc, charts=charts(doc))


def json_text(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False, allow_nan=False) + "\n"


def _chromium() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise RenderError(
        "the PDF is printed by headless Chromium, which is not installed (apt-get install chromium); "
        "ask for --format html,json without pdf"
    )


def pdf(html_path: Path, pdf_path: Path) -> None:
    """Print the HTML file to `pdf_path` with headless Chromium (A4, no header or footer)."""
    with tempfile.TemporaryDirectory(prefix="dp-report-") as profile:
        command = [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
            f"--user-data-dir={profile}",
            f"--print-to-pdf={pdf_path}",
            html_path.resolve().as_uri(),
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=PDF_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RenderError(f"Chromium could not print the PDF: {exc}") from exc
    if result.returncode != 0 or not pdf_path.is_file() or pdf_path.stat().st_size == 0:
        raise RenderError(f"Chromium could not print the PDF ({result.returncode}): {result.stderr.strip()[-400:]}")

"""`districtpulse report` on the real InfluxDB, in a real browser and through pdftoppm.

Two simulated days of the demo district are written as ingest writes them, `aggregate` computes their KPIs,
and the report of those days must give the simulator's truth: each building's electricity from its main
meter's register, every reading issued counted, the injected bad readings quarantined by reason. The HTML
is opened in headless Chromium; the PDF is rendered to images and must be neither blank nor cut at the edge.
`--verify` says identical, then names what changed once a KPI is revised."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from aggregation.jobs.daily import run_cycle
from aggregation.report import cli
from devices import Registry, demo_registry_path
from districtpulse.config import Endpoints
from simulators import Message
from simulators.config import Cadence, FaultConfig, SimConfig
from simulators.engine import Simulation
from storage.influx import InfluxV1
from tests.support.browser import chrome
from tests.support.reports import report_doc
from tests.support.services import scratch_database

DAYS = [date(2026, 11, 18), date(2026, 11, 19)]
DEVICE_READINGS = 40 * 1440  # the demo registry's 40 devices, one reading a minute


@pytest.fixture
async def influx(endpoints: Endpoints) -> AsyncIterator[InfluxV1]:
    async with scratch_database(endpoints, "rep") as client:
        yield client


def _args(influx: InfluxV1, out: Path, **extra: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        ["--influx-url", influx.config.url, "--influx-db", influx.config.database, "--out", str(out)]
    )
    for key, value in extra.items():
        setattr(args, key, value)
    return args


async def test_the_report_gives_the_truth_and_renders_in_a_browser_and_as_pdf(influx: InfluxV1, tmp_path: Path) -> None:
    registry = Registry.load(demo_registry_path())
    registers: dict[str, list[float]] = {}
    sent = quarantined = 0
    expected_reasons: dict[str, int] = {}
    # Two days in one simulation: the gateways' sequence numbers run on across midnight, as in the field.
    faults = FaultConfig({"nan": 2, "out_of_range": 2})
    sim = Simulation(registry, SimConfig(start=DAYS[0], days=2, seed=5, cadence=Cadence(60, 900), faults=faults))
    messages = list(sim.messages())
    await write_messages_tolerant(influx, registry, messages)
    for truth in sim.truth.devices.values():
        sent += truth.readings_sent
        for reason, n in truth.expected_quarantined.items():
            expected_reasons[reason] = expected_reasons.get(reason, 0) + n
            quarantined += n
    for msg in messages:
        if msg.device.endswith("-em-main"):
            doc = json.loads(msg.payload)
            registers.setdefault(msg.device, []).extend(
                r["values"]["energy_import"]
                for r in doc["readings"]
                if isinstance(r["values"].get("energy_import"), float)
            )
    after = sim.end_ms + 3_600_000
    await run_cycle(influx, registry, days=4, final_after_hours=48, now_ms=after)

    out = tmp_path / "out"
    args = _args(influx, out, district="demo", first=DAYS[0], last=DAYS[-1])
    assert await asyncio.to_thread(cli.run, args) == 0
    stem = out / f"report-demo-{DAYS[0]}-{DAYS[-1]}"
    doc = json.loads(stem.with_suffix(".json").read_text())
    assert doc["report"]["from"] == "2026-11-18" and doc["report"]["to"] == "2026-11-19"
    quality = doc["data_quality"]
    assert quality["readings"]["issued"] == sent == 2 * DEVICE_READINGS
    assert quality["readings"]["quarantined"] == quarantined == 4
    assert quality["quarantined_by_reason"] == expected_reasons
    assert quality["readings"]["lost"] == 0 and quality["readings"]["evicted"] == 0
    assert quality["days"]["provisional"] == ["2026-11-18", "2026-11-19"] and quality["days"]["without_kpis"] == []
    for building in ("b1", "b2", "b3"):  # the first reading of the two days opens their first interval
        values = registers[f"{building}-em-main"]
        got = doc["energy"]["by_building_kwh"][building]["electricity"]
        assert got == pytest.approx(max(values) - min(values), rel=1e-6)

    with chrome() as browser:
        browser.get(stem.with_suffix(".html").as_uri())
        assert browser.title == f"DistrictPulse demo district: KPI report {DAYS[0]} to {DAYS[-1]}"
        headline = browser.find_element("id", "headline").text
        assert "Final energy" in headline and "Readings stored" in headline
        assert browser.find_element("css selector", "#chart-energy svg").size["width"] > 300
        # At the printed width (A4 at 96 px/in: 794 px), no table is wider than the page body: none is cut.
        browser.set_window_size(794, 1123)
        overflowing = browser.execute_script(
            "return [...document.querySelectorAll('table')].filter(t => t.scrollWidth > document.body.clientWidth)"
            ".map(t => t.id || t.rows[0].innerText.slice(0, 40))"
        )
        assert overflowing == []
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []  # self-contained: no request that fails, no script error

    pdf = stem.with_suffix(".pdf")
    pages = _pages(pdf, tmp_path)
    assert len(pages) >= 2
    for page in pages:
        ink = page < 200  # grey levels; white is 255
        assert ink.mean() > 0.01, "a blank page"
        h, w = ink.shape
        assert not ink[:, int(w * 0.97) :].any(), "something runs into the right margin (cut)"
        assert not ink[int(h * 0.985) :, :].any(), "something runs into the bottom margin (cut)"

    verify = _args(influx, out, verify=stem.with_suffix(".json"))
    assert await asyncio.to_thread(cli.run, verify) == 0
    rows = await influx.query(
        'SELECT "energy_kwh" FROM "kpi_energy" WHERE "building" = \'b1\' AND "carrier" = \'electricity\''
    )
    ts, kwh = rows[0]["values"][0]
    line = f"kpi_energy,building=b1,carrier=electricity,district=demo energy_kwh={kwh + 1.5},revision=9i {ts}"
    await influx.write(line.encode())
    assert await asyncio.to_thread(cli.run, verify) == 1


async def write_messages_tolerant(influx: InfluxV1, registry: Registry, messages: list[Message]) -> None:
    """As ingest: good readings stored, the injected bad ones quarantined (their `unstored` points written)."""
    from devices import validate_message
    from storage.lineprotocol import encode_readings, series_key
    from storage.unstored import quarantine_lines

    lines: list[str] = []
    for msg in messages:
        result = validate_message(msg.topic, msg.payload, registry, now_ms=4_000_000_000_000)
        assert result.device is not None
        lines += encode_readings(series_key(result.device), result.good, result.seqs)
        if result.rejected and result.seq is not None:
            lines += quarantine_lines(result.device, result.seq, result.rejected, msg.payload, 4_000_000_000_000)
    for i in range(0, len(lines), 5000):
        await influx.write("\n".join(lines[i : i + 5000]).encode())


def _pages(pdf: Path, tmp_path: Path) -> list[np.ndarray]:
    if shutil.which("pdftoppm") is None:
        pytest.fail("pdftoppm (poppler-utils) is needed: make test installs it")
    subprocess.run(["pdftoppm", "-r", "40", "-gray", str(pdf), str(tmp_path / "page")], check=True, timeout=60)
    from PIL import Image

    return [np.asarray(Image.open(p)) for p in sorted(tmp_path.glob("page-*.pgm"))]


def test_a_page_with_every_section_filled_fits_the_printed_width(tmp_path: Path) -> None:
    """The savings table has eleven columns: at A4 width none of the page's tables may be cut."""
    from aggregation.report.render import html

    page = tmp_path / "report.html"
    page.write_text(html(report_doc()), encoding="utf-8")
    with chrome() as browser:
        browser.set_window_size(794, 1123)
        browser.get(page.as_uri())
        assert len(browser.find_elements("css selector", "#savings-table tr")) == 7  # header, 4 buildings, 2 totals
        overflowing = browser.execute_script(
            "return [...document.querySelectorAll('table')].filter(t => t.scrollWidth > document.body.clientWidth)"
            ".map(t => t.id || t.rows[0].innerText.slice(0, 40))"
        )
        assert overflowing == []

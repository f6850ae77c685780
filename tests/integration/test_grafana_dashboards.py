"""Every panel of the provisioned Grafana dashboards, run against the real InfluxDB holding a demo day.

The demo district's day is simulated with the demo's seed and stored in a database of this test's own with
exactly ingest's validation and line protocol (without the broker: the queries are the subject here, the
transport is tested end to end elsewhere). Then, for each dashboard: the template variables are resolved by
running their own queries (as Grafana does), every panel query gets Grafana's macros substituted
(`$timeFilter`, `$__interval`, `$district`, `$building` as Grafana formats a multi-value regex) and must
return at least one series with a non-null value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from devices import Registry, demo_registry_path, validate_message
from districtpulse.config import Endpoints
from simulators import DistrictSimulator
from storage.lineprotocol import encode_readings, series_key

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))
DATASOURCE_UID = "districtpulse-influxdb"
DAY = date(2026, 3, 18)  # a fixed day with sun (PV) and heating: every panel has something to show
INTERVAL = "15m"


@pytest.fixture(scope="module")
def demo_day(endpoints: Endpoints) -> Iterator[tuple[str, int, int]]:
    """(database, start_ms, end_ms) of one simulated demo day, written with ingest's own encoding."""
    import uuid

    database = f"test_grafana_{uuid.uuid4().hex[:8]}"
    registry = Registry.load(demo_registry_path())
    sim = DistrictSimulator(registry, DAY, seed=42, inject_bad_readings=0)
    keys = {d.id: series_key(d) for d in registry}
    http = httpx.Client(base_url=endpoints.influx_url, timeout=60)
    http.post("/query", data={"q": f'CREATE DATABASE "{database}"'}).raise_for_status()
    lines: list[str] = []
    stored = 0
    for msg in sim.messages():
        result = validate_message(msg.topic, msg.payload, registry, now_ms=sim.end_ms + 86_400_000)
        assert not result.rejected and result.device is not None
        lines += encode_readings(keys[result.device.id], result.good, result.seqs)
        if len(lines) >= 20_000:
            http.post("/write", params={"db": database, "precision": "ms"}, content="\n".join(lines)).raise_for_status()
            stored += len(lines)
            lines = []
    http.post("/write", params={"db": database, "precision": "ms"}, content="\n".join(lines)).raise_for_status()
    stored += len(lines)
    assert stored == len(registry) * 1440
    try:
        yield database, sim.start_ms, sim.end_ms
    finally:
        http.post("/query", data={"q": f'DROP DATABASE "{database}"'})
        http.close()


def query(endpoints: Endpoints, database: str, q: str) -> list[dict[str, Any]]:
    response = httpx.post(
        f"{endpoints.influx_url}/query", params={"db": database, "epoch": "ms"}, data={"q": q}, timeout=30
    )
    response.raise_for_status()
    result = response.json()["results"][0]
    assert "error" not in result, f"{result['error']}\n{q}"
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def substitute(q: str, variables: dict[str, list[str]], start_ms: int, end_ms: int) -> str:
    """Grafana's InfluxQL macros: the time filter, the interval, and `$var` / `${var}` / `[[var]]`."""
    q = q.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
    q = q.replace("$__interval_ms", str(15 * 60_000)).replace("$__interval", INTERVAL)
    for name, values in sorted(variables.items(), key=lambda kv: -len(kv[0])):
        value = values[0] if len(values) == 1 else "(" + "|".join(re.escape(v) for v in values) + ")"
        q = q.replace(f"${{{name}}}", value).replace(f"[[{name}]]", value).replace(f"${name}", value)
    assert not re.search(r"\$\{?[A-Za-z_]|\[\[", q), f"unsubstituted macro in: {q}"  # a regex's `$/` is fine
    return q


def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in doc["panels"]:
        yield panel
        yield from panel.get("panels", [])  # rows


def test_the_dashboards_are_well_formed() -> None:
    assert [p.name for p in DASHBOARDS] == ["districtpulse-health.json", "districtpulse-overview.json"]
    uids = set()
    for path in DASHBOARDS:
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert doc["uid"] not in uids and doc["title"].startswith("DistrictPulse")
        uids.add(doc["uid"])
        ids = [p["id"] for p in panels(doc)]
        assert len(ids) == len(set(ids)), path.name
        for panel in panels(doc):
            assert panel["datasource"]["uid"] == DATASOURCE_UID, (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])
            for target in panel["targets"]:
                assert target["rawQuery"] is True and target["query"].startswith("SELECT"), panel["title"]
                assert "$timeFilter" in target["query"], panel["title"]  # every panel follows the time picker
        for var in doc["templating"]["list"]:
            assert var["datasource"]["uid"] == DATASOURCE_UID and var["query"].startswith("SHOW TAG VALUES")


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_every_panel_query_returns_rows_on_a_demo_day(
    endpoints: Endpoints, demo_day: tuple[str, int, int], path: Path
) -> None:
    database, start_ms, end_ms = demo_day
    doc = json.loads(path.read_text(encoding="utf-8"))
    variables: dict[str, list[str]] = {}
    for var in doc["templating"]["list"]:  # in order: a variable's query may use the ones before it
        series = query(endpoints, database, substitute(var["query"], variables, start_ms, end_ms))
        values = sorted({row[1] for s in series for row in s["values"]})
        assert values, f"variable {var['name']} has no values"
        variables[var["name"]] = values if var.get("includeAll") else values[:1]
    assert variables["district"] == ["demo"]
    if "building" in variables:
        assert variables["building"] == ["b1", "b2", "b3"]
    checked = 0
    for panel in panels(doc):
        for target in panel["targets"]:
            q = substitute(target["query"], variables, start_ms, end_ms)
            series = query(endpoints, database, q)
            values = [v for s in series for row in s["values"] for v in row[1:] if v is not None]
            assert values, f"panel {panel['title']!r} returned no rows:\n{q}"
            checked += 1
    assert checked == sum(len(p["targets"]) for p in panels(doc))

"""The ground truth of a run: what was sent, what ingest should store or quarantine, and the real energy.

Written as JSON (`Truth.write`), read back with `load_truth`. The file holds:

    totals       readings and messages sent (unique, and published including duplicates), readings expected
                 in InfluxDB, in quarantine by reason code (counted as ingest counts them), lost in a full spool
    devices      per device: readings sent, expected stored / quarantined, first and last timestamp, the
                 readings sent in `"clock": "unsynced"` batches and the timestamps of those expected stored
                 (ingest flags them `clock_unsynced=true`; the totals count both), the
                 sequence-number range, energy per local day for each register metric (the physical energy,
                 kWh, which equals the register increase from midnight to midnight) and the counterfactual
                 energy without the interventions; EV chargers list their sessions
    weather      per local day: mean outdoor temperature, heating degree days (17 degC), irradiation
    interventions, faults    every intervention and every injected fault with what it did
    points       (optional, `SimConfig.truth_points`) every point InfluxDB should hold: device -> ts -> values

Expectations assume ingest runs after the simulated period (no reading is in ingest's future).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRUTH_SCHEMA = 1
Values = dict[str, float | str]


@dataclass(slots=True)
class DeviceTruth:
    kind: str
    building: str
    gateway: str
    readings_sent: int = 0
    messages: int = 0
    expected_stored: int = 0
    expected_quarantined: Counter[str] = field(default_factory=Counter)
    lost_readings: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    seq: list[int] = field(default_factory=lambda: [-1, -1])
    energy: dict[str, dict[str, float]] = field(default_factory=dict)
    counterfactual: dict[str, dict[str, float]] = field(default_factory=dict)
    sessions: list[dict[str, object]] = field(default_factory=list)
    #: Readings sent in `"clock": "unsynced"` batches, and the timestamps of those ingest should store
    #: (with `clock_unsynced=true`); the rest of them are quarantined (e.g. before_commissioning).
    clock_unsynced_sent: int = 0
    clock_unsynced_stored: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "kind": self.kind,
            "building": self.building,
            "gateway": self.gateway,
            "readings_sent": self.readings_sent,
            "messages": self.messages,
            "expected_stored": self.expected_stored,
            "expected_quarantined": dict(sorted(self.expected_quarantined.items())),
            "lost_readings": self.lost_readings,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "seq": self.seq,
            "energy_kwh_per_day": self.energy,
            "clock_unsynced_sent": self.clock_unsynced_sent,
            "clock_unsynced_stored": sorted(self.clock_unsynced_stored),
        }
        if self.counterfactual:
            out["counterfactual_kwh_per_day"] = self.counterfactual
        if self.kind == "ev_charger":
            out["sessions"] = self.sessions
        return out


@dataclass(slots=True)
class Truth:
    """Accumulated while the run streams; the attributes of the walking skeleton's truth are kept."""

    readings: int = 0
    messages: int = 0
    bad_readings: int = 0
    energy_import_kwh: dict[str, float] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    published_messages: int = 0
    published_readings: int = 0
    expected_stored: int = 0
    expected_quarantined: Counter[str] = field(default_factory=Counter)
    lost_readings: int = 0
    devices: dict[str, DeviceTruth] = field(default_factory=dict)
    weather: dict[str, dict[str, float]] = field(default_factory=dict)
    interventions: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    points: dict[str, dict[int, Values]] | None = None
    clock_unsynced_sent: int = 0
    clock_unsynced_stored: int = 0

    def add_point(self, device: str, ts: int, values: Values) -> None:
        """Record a point ingest should store; two different values for one point would make the truth
        ambiguous (the last write would win in an order no one controls), so that is an error."""
        if self.points is None:
            return
        per_device = self.points.setdefault(device, {})
        previous = per_device.get(ts)
        if previous is not None and previous != values:
            raise RuntimeError(f"ambiguous truth: two different readings of {device} at {ts}")
        per_device[ts] = values

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "schema": TRUTH_SCHEMA,
            **self.meta,
            "readings": self.readings,
            "messages": self.messages,
            "bad_readings": self.bad_readings,
            "totals": {
                "readings_sent": self.readings,
                "messages_sent": self.messages,
                "messages_published": self.published_messages,
                "readings_published": self.published_readings,
                "expected_stored": self.expected_stored,
                "expected_quarantined": dict(sorted(self.expected_quarantined.items())),
                "lost_readings": self.lost_readings,
                "clock_unsynced_sent": self.clock_unsynced_sent,
                "clock_unsynced_stored": self.clock_unsynced_stored,
            },
            "energy_import_kwh": self.energy_import_kwh,
            "devices": {d: t.as_dict() for d, t in sorted(self.devices.items())},
            "weather": self.weather,
            "interventions": self.interventions,
            "faults": self.faults,
        }
        if self.points is not None:
            doc["points"] = {
                d: {str(ts): v for ts, v in sorted(points.items())} for d, points in sorted(self.points.items())
            }
        return doc

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_dict(), indent=1, allow_nan=False) + "\n", encoding="utf-8")


def load_truth(path: Path) -> dict[str, Any]:
    """A truth file as a dict, with `points` keys turned back into integer timestamps."""
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("schema") != TRUTH_SCHEMA:
        raise ValueError(f"{path}: truth schema {doc.get('schema')!r}, expected {TRUTH_SCHEMA}")
    if "points" in doc:
        doc["points"] = {d: {int(ts): v for ts, v in pts.items()} for d, pts in doc["points"].items()}
    return doc

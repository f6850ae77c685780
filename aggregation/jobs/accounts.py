"""Completeness from sequence numbers, read from InfluxDB: the four aggregate queries behind
`aggregation.completeness.account`, shared by the daily KPIs (`aggregation.jobs.daily`) and the dashboard.

Per device of a district, for the period [start, end): count, min and max of the stored readings' `seq`; the
highest `seq` stored in the look-back before it; the `unstored` runs (storage.unstored) in the period by
stage, and the highest `last_seq` of a run in the look-back. Aggregates only: the cost is one row per device
and query, whatever the readings' cadence.
"""

from __future__ import annotations

from typing import Any

from aggregation.completeness import SeqAccount, SeqSpan, accounts
from storage import queries
from storage.influx import InfluxV1
from storage.unstored import STAGE_EDGE, STAGE_INGEST

#: How far before a period to look for the reading that closes a gap at its start (the spool's
#: instantaneous age bound is 2 days: a gap that started earlier is not counted, see aggregation.completeness).
LOOKBACK_MS = 2 * 86_400_000


def _spans(series: list[dict[str, Any]]) -> dict[str, SeqSpan]:
    out = {}
    for s in series:
        for _, n, low, high in s["values"]:
            if n:
                out[s["tags"]["device"]] = SeqSpan(int(n), int(low), int(high))
    return out


def _highest(series: list[dict[str, Any]]) -> dict[str, int]:
    return {
        s["tags"]["device"]: int(s["values"][0][1]) for s in series if s["values"] and s["values"][0][1] is not None
    }


async def seq_accounts(
    influx: InfluxV1, district: str, start_ms: int, end_ms: int, lookback_ms: int = LOOKBACK_MS
) -> dict[str, SeqAccount]:
    """device -> its account for [start_ms, end_ms), for every device of the district with something in it."""
    stored = _spans(await queries.seq_spans(influx, district, start_ms, end_ms))
    unstored = await queries.unstored_spans(influx, district, start_ms, end_ms)
    by_stage: dict[str, dict[str, SeqSpan]] = {STAGE_INGEST: {}, STAGE_EDGE: {}}
    for s in unstored:
        by_stage.setdefault(s["tags"]["stage"], {}).update(_spans([s]))
    before = start_ms - lookback_ms
    highest = _highest(await queries.seq_highest(influx, district, before, start_ms))
    for device, seq in _highest(await queries.unstored_highest(influx, district, before, start_ms)).items():
        highest[device] = max(seq, highest.get(device, seq))
    return accounts(stored, by_stage[STAGE_INGEST], by_stage[STAGE_EDGE], highest)

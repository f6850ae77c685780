"""Completeness from sequence numbers: of the readings a device's gateway numbered in a period, how many are
stored, quarantined, evicted at the edge, and lost in transit.

Every reading gets a per-device sequence number when it enters the gateway's spool (`gateway.spool`), so
the readings that *exist* are known exactly, without assuming a reporting interval. What became of each:

- *stored*: a point in InfluxDB (every raw point carries its `seq`);
- *quarantined*: refused by ingest's validation and kept in its quarantine; ingest writes an `unstored`
  point with `stage=ingest` for each run of them (`storage.unstored`);
- *evicted*: deleted by the gateway's spool bounds before it was confirmed (a long outage); the gateway
  reports each run in an eviction notice and ingest writes it as an `unstored` point with `stage=edge`;
- *lost*: numbered but none of the above: lost in transit (the proof chain's failure, which should be 0).

For one device and one period (a local day for the KPIs, the last hour on the dashboard), from aggregates
InfluxDB computes cheaply (count/min/max per device, no raw seqs fetched):

    top     = the highest seq known in the period (stored or unstored)
    bottom  = the highest seq known before it (looked up over a bounded look-back), else the lowest in the
              period minus one
    issued  = top - bottom;   lost = issued - stored - quarantined - evicted

Attribution by time: a reading belongs to the period its timestamp is in; an unstored run to the period of
its first reading; the lost ones of a gap to the period of the reading that closes it. A gap whose left end
is older than the look-back is not counted (the period starts at its own lowest seq).

One overlap is possible and counted once: a reading that was in flight (published, unconfirmed) when the
spool shed it may reach ingest too, and is then both stored and reported evicted. The account counts it as
stored and cuts `evicted` to what the gap leaves; in that device-period a loss can then hide behind the
surplus of `evicted`, at most one per such reading. It needs a spool overflow with readings in flight
(bounded by `max_unconfirmed_readings`), and the period's `evicted` says it happened.

A device that numbers nothing in a period (switched off, or its gateway offline with the readings
still spooled) has nothing issued: silence is the dashboard's "silent" and the gateway's spool depth, not a
loss.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SeqAccount:
    """What became of the readings numbered in a period (of one device, or summed over many)."""

    issued: int = 0
    stored: int = 0
    quarantined: int = 0
    evicted: int = 0
    lost: int = 0

    @property
    def completeness(self) -> float | None:
        """Stored / issued; None when nothing was issued."""
        return self.stored / self.issued if self.issued else None

    def __add__(self, other: SeqAccount) -> SeqAccount:
        return SeqAccount(
            self.issued + other.issued,
            self.stored + other.stored,
            self.quarantined + other.quarantined,
            self.evicted + other.evicted,
            self.lost + other.lost,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "issued": self.issued,
            "stored": self.stored,
            "quarantined": self.quarantined,
            "evicted": self.evicted,
            "lost": self.lost,
        }


@dataclass(frozen=True, slots=True)
class SeqSpan:
    """Readings known in a period, as InfluxDB aggregates them: how many, and their lowest and highest seq."""

    count: int
    low: int
    high: int


def account(
    stored: SeqSpan | None,
    quarantined: SeqSpan | None = None,
    evicted: SeqSpan | None = None,
    before: int | None = None,
) -> SeqAccount:
    """One device's account for a period (module docstring). `before` is the highest seq known before the
    period (stored or unstored), None when the look-back found none. Spans count readings (an unstored span
    covers its runs: `count` readings between `low` and `high`)."""
    spans = [s for s in (stored, quarantined, evicted) if s is not None and s.count > 0]
    if not spans:
        return SeqAccount()
    top = max(s.high for s in spans)
    low = min(s.low for s in spans)
    bottom = before if before is not None and before < low else low - 1
    issued = top - bottom
    n_stored = min(stored.count if stored else 0, issued)
    n_quarantined = min(quarantined.count if quarantined else 0, issued - n_stored)
    n_evicted = min(evicted.count if evicted else 0, issued - n_stored - n_quarantined)
    return SeqAccount(issued, n_stored, n_quarantined, n_evicted, issued - n_stored - n_quarantined - n_evicted)


def total(accounts: Iterable[SeqAccount]) -> SeqAccount:
    out = SeqAccount()
    for a in accounts:
        out = out + a
    return out


def accounts(
    stored: Mapping[str, SeqSpan],
    quarantined: Mapping[str, SeqSpan],
    evicted: Mapping[str, SeqSpan],
    before: Mapping[str, int],
) -> dict[str, SeqAccount]:
    """`account` of every device that has something in the period."""
    devices = set(stored) | set(quarantined) | set(evicted)
    return {d: account(stored.get(d), quarantined.get(d), evicted.get(d), before.get(d)) for d in sorted(devices)}

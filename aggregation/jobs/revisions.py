"""How a stored KPI point is revised: one model for the daily KPIs and the savings.

A KPI point carries what it was computed from (`inputs`), a `revision` and a `status` (`provisional`, or
`final` once nothing it rests on can change). A job reads what is stored, compares it with the inputs it would
use now, and

* skips the point when inputs and status are both unchanged;
* rewrites it with the same revision when only the status changed (the same numbers, now final);
* recomputes it with revision + 1 when its inputs changed (or when the operator forces it), revision 1 when
  nothing was stored.

The daily KPIs' inputs are the day's stored reading count and its `unstored` point count (both stored as fields
of `kpi_district`); the savings' are a digest of the (day, revision) pairs of the daily KPIs they used.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

__all__ = ["Stored", "next_revision", "unchanged"]


@dataclass(frozen=True, slots=True)
class Stored:
    """What a stored KPI point was computed from, and its revision and status."""

    inputs: Hashable
    revision: int
    status: str


def unchanged(stored: Stored | None, inputs: Hashable, status: str) -> bool:
    """True when the stored point already is what a recomputation would write."""
    return stored is not None and (stored.inputs, stored.status) == (inputs, status)


def next_revision(stored: Stored | None, inputs: Hashable, *, force: bool = False) -> int:
    """The revision to write: 1 for a new point, the same for the same inputs, one more when they changed."""
    if stored is None:
        return 1
    return stored.revision if stored.inputs == inputs and not force else stored.revision + 1

"""The v1 payload: one device's batch of timestamped readings.

    {
      "v": 1,                                  schema version
      "device": "b1-em-main",                  must equal the device level of the topic
      "seq": [1041, 1055],                     per-device sequence numbers of the first and last reading
      "clock": "unsynced",                     optional: absent when the gateway clock was synchronised
      "units": {"energy_import": "kWh", ...},  the unit of every metric that has one
      "readings": [
        {"ts": 1763856000000, "values": {"energy_import": 81234.5, "power": 1830.0}},
        ...
      ]
    }

`ts` is integer milliseconds since the Unix epoch, UTC, stamped where the reading was taken (never at
ingest): a redelivered reading then lands on the same InfluxDB point and overwrites it instead of adding a
duplicate. Reading `i` carries sequence number `seq[0] + i`, so ingest can see gaps per device.
Values are numbers, or strings for enumerations and identifiers (EV connector status, session id).

Bounds, each a stable reason code of `devices.validation.Reason`:
- Sequence numbers are signed 64-bit integers, `0 <= seq[0] <= seq[1] <= MAX_SEQ` (2^63 - 1), with
  `seq[1] == seq[0] + len(readings) - 1`: SQLite, InfluxDB (the integer field `seq=...i`) and the gateway's
  spool cannot hold a larger one, so a batch beyond it is `invalid_schema` as a whole, never a refused write.
- At most `MAX_READINGS_PER_BATCH` readings, and at most `MAX_MESSAGE_BYTES` (2 MiB) of payload: ingest refuses
  a larger message as `too_large` before it parses anything, and keeps only the start of it in quarantine.
- The readings of one batch have distinct `ts`. InfluxDB identifies a point by measurement, tags (the device)
  and timestamp, so a second reading at the same `ts` would overwrite the first: both counted as stored, one
  kept. The first reading at a `ts` is judged as usual; each later one that would have been stored is
  rejected as `duplicate_timestamp`, its detail naming the index of that first one. The same `ts` in two
  messages is not checked: that is a redelivery (the same reading again), which InfluxDB makes harmless.

`clock` (added to v1 compatibly: a batch without it means what it always meant) says that every reading of the
batch was stamped while the gateway's clock was not known to be synchronised (a Raspberry Pi has no real-time
clock: after a boot it runs on a saved or 1970 time until NTP syncs). Its only value is `"unsynced"`; a
gateway splits its messages where the state changes, so one flag per batch is exact. Ingest still stores such
readings when their time is plausible (not in the future, not before the device was commissioned), with a
field `clock_unsynced=true` on each point so that operators and aggregation can filter them; each `Reading`
of such a batch reports it as `Reading.clock_unsynced`, which is not part of the reading's own JSON.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    model_validator,
)

from devices.wire import CLOCK_UNSYNCED, MAX_READINGS_PER_BATCH, MAX_SEQ, SCHEMA_VERSION, encode_batch

__all__ = [
    "BATCH_ADAPTER",
    "CLOCK_UNSYNCED",
    "MAX_READINGS_PER_BATCH",
    "MAX_SEQ",
    "SCHEMA_VERSION",
    "Batch",
    "Envelope",
    "Reading",
    "encode_batch",
    "seq_problem",
]

Value = StrictFloat | StrictStr
#: A sequence number: what SQLite, InfluxDB's integer fields and the JSON Schemas can hold.
Seq = Annotated[StrictInt, Field(ge=0, le=MAX_SEQ)]


def seq_problem(first: int, last: int, readings: int) -> str | None:
    """What is wrong with a batch's `seq` range for this many readings, or None: the one rule `Batch` and the
    reading-by-reading salvage in `devices.validation` both apply."""
    if not 0 <= first <= MAX_SEQ or not 0 <= last <= MAX_SEQ or last - first + 1 != readings:
        return (
            f"seq [{first}, {last}] must lie in [0, {MAX_SEQ}] and cover exactly the {readings} readings"
            f" (seq[1] == seq[0] + {readings} - 1)"
        )
    return None


class Reading(BaseModel):
    """One timestamped set of values from one device: one InfluxDB point."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ts: Annotated[StrictInt, Field(ge=0, description="milliseconds since the Unix epoch, UTC")]
    values: Annotated[dict[str, Value], Field(min_length=1)]
    #: Set from the batch's `clock` field (see the module docstring), never from the reading's JSON.
    _clock_unsynced: bool = PrivateAttr(default=False)

    @property
    def clock_unsynced(self) -> bool:
        """True when the reading came in a batch stamped by an unsynchronised clock."""
        return self._clock_unsynced

    def flagged_unsynced(self) -> Reading:
        """This reading as part of a `"clock": "unsynced"` batch (a copy: a reading object may be shared)."""
        if self._clock_unsynced:
            return self
        copy = self.model_copy()
        copy._clock_unsynced = True
        return copy


#: The batch-level `clock` field: absent (None) means synchronised.
ClockFlag = Literal["unsynced"] | None


class Envelope(BaseModel):
    """The batch with its readings left unvalidated: used to salvage the good readings of a batch that
    failed validation as a whole because of some bad readings. `Batch` is this envelope with its sequence
    range bounded and every reading validated: the two share every other field."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_version: Annotated[Literal[1], Field(alias="v")]
    device: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    #: unbounded here: `seq_problem` judges it once the readings are counted, so that a range error
    #: quarantines the batch with the number of readings it holds
    seq: tuple[StrictInt, StrictInt]
    clock: ClockFlag = None
    units: dict[str, StrictStr] = Field(default_factory=dict)
    readings: Annotated[list[Any], Field(min_length=1, max_length=MAX_READINGS_PER_BATCH)]


class Batch(Envelope):
    """One device's batch of readings, as published on its readings topic: the `Envelope` with its sequence
    range bounded (`Seq`) and every reading validated."""

    seq: tuple[Seq, Seq]
    readings: Annotated[list[Reading], Field(min_length=1, max_length=MAX_READINGS_PER_BATCH)]

    @model_validator(mode="after")
    def _seq_matches_readings(self) -> Batch:
        problem = seq_problem(*self.seq, len(self.readings))
        if problem is not None:
            raise ValueError(problem)
        if self.clock == CLOCK_UNSYNCED:
            self.readings[:] = [r.flagged_unsynced() for r in self.readings]
        return self

    def to_json(self) -> bytes:
        """The wire form: a synchronised batch has no `clock` field (None is the only optional value)."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


BATCH_ADAPTER: TypeAdapter[Batch] = TypeAdapter(Batch)

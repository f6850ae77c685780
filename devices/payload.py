"""The v1 payload: one device's batch of timestamped readings.

    {
      "v": 1,                                  schema version
      "device": "b1-em-main",                  must equal the device level of the topic
      "seq": [1041, 1055],                     per-device sequence numbers of the first and last reading
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
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    model_validator,
)

from devices.wire import MAX_READINGS_PER_BATCH, SCHEMA_VERSION, encode_batch

__all__ = ["BATCH_ADAPTER", "MAX_READINGS_PER_BATCH", "SCHEMA_VERSION", "Batch", "Envelope", "Reading", "encode_batch"]

Value = StrictFloat | StrictStr


class Reading(BaseModel):
    """One timestamped set of values from one device: one InfluxDB point."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ts: Annotated[StrictInt, Field(ge=0, description="milliseconds since the Unix epoch, UTC")]
    values: Annotated[dict[str, Value], Field(min_length=1)]


class Batch(BaseModel):
    """One device's batch of readings, as published on its readings topic."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_version: Annotated[Literal[1], Field(alias="v")]
    device: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    seq: tuple[StrictInt, StrictInt]
    units: dict[str, StrictStr] = Field(default_factory=dict)
    readings: Annotated[list[Reading], Field(min_length=1, max_length=MAX_READINGS_PER_BATCH)]

    @model_validator(mode="after")
    def _seq_matches_readings(self) -> Batch:
        first, last = self.seq
        if first < 0 or last - first + 1 != len(self.readings):
            raise ValueError(
                f"seq [{first}, {last}] must be non-negative and cover exactly the {len(self.readings)} readings"
            )
        return self

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


BATCH_ADAPTER: TypeAdapter[Batch] = TypeAdapter(Batch)


class Envelope(BaseModel):
    """The batch with its readings left unvalidated: used to salvage the good readings of a batch that
    failed validation as a whole because of some bad readings."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_version: Annotated[Literal[1], Field(alias="v")]
    device: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    seq: tuple[StrictInt, StrictInt]
    units: dict[str, StrictStr] = Field(default_factory=dict)
    readings: Annotated[list[Any], Field(min_length=1, max_length=MAX_READINGS_PER_BATCH)]

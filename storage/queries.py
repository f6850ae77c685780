"""The InfluxQL the jobs and the dashboard ask, written once, beside the schema it reads.

Each function is one query and returns InfluxDB's series as they come (`InfluxV1.query`: dicts with `name`,
`tags`, `columns`, `values`, times in ms), so the callers keep their own models of the answer. What is written
here, and nowhere else: the measurements of the raw readings (one per device kind, `devices.kinds`), the
`unstored` points (`storage.unstored`), the KPI measurements the jobs write, how a tag value and a field name
are quoted, and how a time range reads (`[start, end)` unless a function says otherwise).

Tag values are registry ids (`devices.topics.ID_PATTERN`: letters, digits, `_ . -`) or the jobs' own words;
`literal` escapes them anyway, so that a query can never be widened by a value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from devices.kinds import KINDS, DeviceKind
from storage.influx import InfluxV1
from storage.unstored import MEASUREMENT as UNSTORED

Series = list[dict[str, Any]]

__all__ = [
    "Series",
    "count_readings",
    "count_unstored",
    "hourly_mean",
    "ident",
    "kpi_rows",
    "last_value",
    "latest_points",
    "latest_registers_before",
    "literal",
    "mean_per_bucket",
    "raw_measurements",
    "register_buckets",
    "registers",
    "seq_highest",
    "seq_spans",
    "unstored_highest",
    "unstored_spans",
]


def ident(name: str) -> str:
    """A measurement, field or tag name as an InfluxQL identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: str) -> str:
    """A tag value as an InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def raw_measurements(kinds: Iterable[DeviceKind] | None = None) -> str:
    """The raw readings' measurements (of `kinds`, default all), as a FROM list."""
    return ",".join(ident(KINDS[k].measurement) for k in (KINDS if kinds is None else kinds))


def _in(district: str, start_ms: int, end_ms: int | None = None, *, end_inclusive: bool = False) -> str:
    where = f"{ident('district')} = {literal(district)} AND time >= {start_ms}ms"
    if end_ms is not None:
        where += f" AND time {'<=' if end_inclusive else '<'} {end_ms}ms"
    return where


def _fields(fields: Sequence[str]) -> str:
    return ", ".join(ident(f) for f in fields)


# -- raw readings ---------------------------------------------------------------------------------------------------
async def count_readings(
    influx: InfluxV1, district: str, start_ms: int, end_ms: int, *, bucket_minutes: int | None = None
) -> Series:
    """`count("seq")` of a district's raw readings in [start, end) (every raw point has the integer `seq`), per
    measurement; per `bucket_minutes` bucket too when given (empty buckets left out)."""
    buckets = f" GROUP BY time({bucket_minutes}m) fill(none)" if bucket_minutes is not None else ""
    return await influx.query(
        f'SELECT count("seq") FROM {raw_measurements()} WHERE {_in(district, start_ms, end_ms)}{buckets}'
    )


async def registers(
    influx: InfluxV1, kind: DeviceKind, fields: Sequence[str], district: str, start_ms: int, end_ms: int
) -> Series:
    """The raw values of `fields` of every device of a kind in [start, end), per device."""
    measurement = ident(KINDS[kind].measurement)
    return await influx.query(
        f'SELECT {_fields(fields)} FROM {measurement} WHERE {_in(district, start_ms, end_ms)} GROUP BY "device"'
    )


async def latest_points(influx: InfluxV1, district: str, since_ms: int) -> Series:
    """Each device's newest raw point since `since_ms`, every field (ORDER BY time DESC LIMIT 1 is per device)."""
    return await influx.query(
        f'SELECT * FROM {raw_measurements()} WHERE {_in(district, since_ms)} GROUP BY "device" ORDER BY time DESC'
        " LIMIT 1"
    )


async def register_buckets(
    influx: InfluxV1, kind: DeviceKind, fields: Sequence[str], district: str, since_ms: int, step_s: int
) -> Series:
    """The last value of each of `fields` per `step_s` bucket since `since_ms`, per device (empty buckets out)."""
    select = ", ".join(f"last({ident(f)}) AS {ident(f)}" for f in fields)
    return await influx.query(
        f"SELECT {select} FROM {raw_measurements([kind])} WHERE {_in(district, since_ms)}"
        f' GROUP BY time({step_s}s), "device" fill(none)'
    )


async def latest_registers_before(
    influx: InfluxV1, kind: DeviceKind, fields: Sequence[str], district: str, before_ms: int, lookback_ms: int
) -> Series:
    """Each device's last values of `fields` in [before - lookback, before)."""
    where = _in(district, before_ms - lookback_ms, before_ms)
    return await influx.query(
        f"SELECT {_fields(fields)} FROM {raw_measurements([kind])} WHERE {where}"
        ' GROUP BY "device" ORDER BY time DESC LIMIT 1'
    )


async def last_positive_register_before(
    influx: InfluxV1, kind: DeviceKind, field: str, district: str, before_ms: int, lookback_ms: int
) -> Series:
    """Each device's last reading of `field` above 0 in [before - lookback, before): the register a meter that
    has read 0 since (a long reboot) may come back to continue."""
    where = f"{_in(district, before_ms - lookback_ms, before_ms)} AND {ident(field)} > 0"
    return await influx.query(
        f"SELECT {ident(field)} FROM {raw_measurements([kind])} WHERE {where}"
        ' GROUP BY "device" ORDER BY time DESC LIMIT 1'
    )


async def mean_per_bucket(
    influx: InfluxV1, kinds: Sequence[DeviceKind], field: str, district: str, since_ms: int, step_s: int
) -> Series:
    """The mean of `field` per `step_s` bucket since `since_ms`, per device of `kinds` (empty buckets out)."""
    return await influx.query(
        f"SELECT mean({ident(field)}) FROM {raw_measurements(kinds)} WHERE {_in(district, since_ms)}"
        f' GROUP BY time({step_s}s), "device" fill(none)'
    )


async def hourly_mean(
    influx: InfluxV1, kind: DeviceKind, field: str, district: str, start_ms: int, end_ms: int, *, offset_min: int = 0
) -> Series:
    """The mean of `field` over every device of a kind per hour in [start, end), hours starting `offset_min`
    past the UTC hour (a local midnight on the half hour), empty hours left out."""
    return await influx.query(
        f"SELECT mean({ident(field)}) FROM {raw_measurements([kind])} WHERE {_in(district, start_ms, end_ms)}"
        f" GROUP BY time(1h,{offset_min}m) fill(none)"
    )


async def seq_spans(influx: InfluxV1, district: str, start_ms: int, end_ms: int) -> Series:
    """Per device: count, min and max of the stored readings' `seq` in [start, end)."""
    return await influx.query(
        f'SELECT count("seq"), min("seq"), max("seq") FROM {raw_measurements()}'
        f' WHERE {_in(district, start_ms, end_ms)} GROUP BY "device"'
    )


async def seq_highest(influx: InfluxV1, district: str, start_ms: int, end_ms: int) -> Series:
    """Per device: the highest stored `seq` in [start, end)."""
    return await influx.query(
        f'SELECT max("seq") FROM {raw_measurements()} WHERE {_in(district, start_ms, end_ms)} GROUP BY "device"'
    )


# -- unstored points ------------------------------------------------------------------------------------------------
async def count_unstored(influx: InfluxV1, district: str, start_ms: int, end_ms: int) -> Series:
    """`count("readings")` of a district's `unstored` points in [start, end)."""
    return await influx.query(
        f'SELECT count("readings") FROM {ident(UNSTORED)} WHERE {_in(district, start_ms, end_ms)}'
    )


async def unstored_spans(influx: InfluxV1, district: str, start_ms: int, end_ms: int) -> Series:
    """Per device and stage: readings, lowest `first_seq` and highest `last_seq` of the runs in [start, end)."""
    return await influx.query(
        f'SELECT sum("readings"), min("first_seq"), max("last_seq") FROM {ident(UNSTORED)}'
        f' WHERE {_in(district, start_ms, end_ms)} GROUP BY "device", "stage"'
    )


async def unstored_highest(influx: InfluxV1, district: str, start_ms: int, end_ms: int) -> Series:
    """Per device: the highest `last_seq` of a run in [start, end)."""
    return await influx.query(
        f'SELECT max("last_seq") FROM {ident(UNSTORED)} WHERE {_in(district, start_ms, end_ms)} GROUP BY "device"'
    )


# -- KPI series (written by aggregation.jobs) -----------------------------------------------------------------------
async def kpi_rows(
    influx: InfluxV1,
    measurement: str,
    fields: Sequence[str],
    district: str,
    start_ms: int,
    end_ms: int | None = None,
    *,
    where: dict[str, str | Sequence[str]] | None = None,
    group_by: Sequence[str] = (),
    end_inclusive: bool = False,
) -> Series:
    """The rows of a KPI measurement of a district from `start_ms` (to `end_ms`, exclusive unless said), with
    `where` as tag = value (a sequence: any of the values), grouped by tags. `end_ms == start_ms` with
    `end_inclusive` reads the one point at that time."""
    clauses = [_in(district, start_ms, end_ms, end_inclusive=end_inclusive)]
    for tag, value in (where or {}).items():
        if isinstance(value, str):
            clauses.append(f"{ident(tag)} = {literal(value)}")
        else:
            clauses.append("(" + " OR ".join(f"{ident(tag)} = {literal(v)}" for v in value) + ")")
    group = " GROUP BY " + ",".join(ident(t) for t in group_by) if group_by else ""
    return await influx.query(
        f"SELECT {_fields(fields)} FROM {ident(measurement)} WHERE {' AND '.join(clauses)}{group}"
    )


async def last_value(influx: InfluxV1, measurement: str, field: str, district: str) -> Series:
    """The newest value of one field of a district's series, whenever it was written."""
    return await influx.query(
        f"SELECT last({ident(field)}) FROM {ident(measurement)} WHERE {ident('district')} = {literal(district)}"
    )


async def co2_rows(influx: InfluxV1, district: str, at_ms: int) -> Series:
    """Every field of the district's kpi_co2 point at `at_ms` (its fields name the carriers and factors)."""
    return await influx.query(
        f"SELECT * FROM {ident('kpi_co2')} WHERE {_in(district, at_ms, at_ms, end_inclusive=True)}"
    )


async def unstored_readings(influx: InfluxV1, district: str, start_ms: int, end_ms: int) -> Series:
    """Readings of the district's `unstored` points in [start, end), per stage (ingest, edge) and reason."""
    where = _in(district, start_ms, end_ms)
    return await influx.query(f'SELECT sum("readings") FROM {ident(UNSTORED)} WHERE {where} GROUP BY "stage", "reason"')


async def kpi_energy_totals(influx: InfluxV1, district: str, start_ms: int, end_ms: int) -> Series:
    """Per building and carrier over [start, end): the energy, how many days, and the revisions (their sum
    and maximum: a revised day changes them, so a report's digest sees it without reading every day)."""
    return await influx.query(
        'SELECT sum("energy_kwh") AS "energy_kwh", count("energy_kwh") AS "days", sum("revision") AS "revisions",'
        f' max("revision") AS "max_revision" FROM "kpi_energy" WHERE {_in(district, start_ms, end_ms)}'
        ' GROUP BY "building", "carrier"'
    )


async def kpi_energy_per_day(influx: InfluxV1, district: str, start_ms: int, end_ms: int, zone: str) -> Series:
    """The district's energy per local day of `zone` and carrier over [start, end)."""
    return await influx.query(
        f'SELECT sum("energy_kwh") AS "energy_kwh" FROM "kpi_energy" WHERE {_in(district, start_ms, end_ms)}'
        f' GROUP BY time(1d), "carrier" fill(none) tz({literal(zone)})'
    )

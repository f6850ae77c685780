"""storage.queries: the InfluxQL of the jobs and the dashboard, written once. The texts below are the queries
as the jobs and the dashboard wrote them by hand before they moved here (the same answers from InfluxDB);
the integration tests of the jobs and the dashboard run them on the real InfluxDB."""

from __future__ import annotations

from typing import Any

import pytest

from devices import DeviceKind
from storage import queries


class Recorder:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def query(self, influxql: str, *, database: str | None = None) -> list[dict[str, Any]]:
        self.sent.append(influxql)
        return []


async def test_the_raw_measurements_are_every_kind() -> None:
    measurements = queries.raw_measurements().split(",")
    assert len(measurements) == len(DeviceKind) and all(m.startswith('"') and m.endswith('"') for m in measurements)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (
            lambda r: queries.count_readings(r, "d1", 10, 20),
            'SELECT count("seq") FROM {raw} WHERE "district" = \'d1\' AND time >= 10ms AND time < 20ms',
        ),
        (
            lambda r: queries.count_readings(r, "d1", 10, 20, bucket_minutes=60),
            'SELECT count("seq") FROM {raw} WHERE "district" = \'d1\' AND time >= 10ms AND time < 20ms'
            " GROUP BY time(60m) fill(none)",
        ),
        (
            lambda r: queries.registers(r, DeviceKind.HEAT_METER, ["energy"], "d1", 10, 20),
            'SELECT "energy" FROM "heat" WHERE "district" = \'d1\' AND time >= 10ms AND time < 20ms GROUP BY "device"',
        ),
        (
            lambda r: queries.kpi_rows(
                r,
                "kpi_energy",
                ["energy_kwh", "revision"],
                "d1",
                10,
                20,
                where={"building": "b1", "carrier": ["electricity", "heat"]},
                group_by=["carrier"],
            ),
            'SELECT "energy_kwh", "revision" FROM "kpi_energy" WHERE "district" = \'d1\' AND time >= 10ms'
            " AND time < 20ms AND \"building\" = 'b1' AND (\"carrier\" = 'electricity' OR \"carrier\" = 'heat')"
            ' GROUP BY "carrier"',
        ),
        (
            lambda r: queries.kpi_rows(r, "kpi_district", ["readings"], "d1", 10, 10, end_inclusive=True),
            'SELECT "readings" FROM "kpi_district" WHERE "district" = \'d1\' AND time >= 10ms AND time <= 10ms',
        ),
        (
            lambda r: queries.unstored_spans(r, "d1", 10, 20),
            'SELECT sum("readings"), min("first_seq"), max("last_seq") FROM "unstored"'
            ' WHERE "district" = \'d1\' AND time >= 10ms AND time < 20ms GROUP BY "device", "stage"',
        ),
        (
            lambda r: queries.last_value(r, "kpi_co2", "avoided_kg", "d1"),
            'SELECT last("avoided_kg") FROM "kpi_co2" WHERE "district" = \'d1\'',
        ),
    ],
)
async def test_query_texts(call: Any, expected: str) -> None:
    recorder = Recorder()
    await call(recorder)
    assert recorder.sent == [expected.format(raw=queries.raw_measurements())]


async def test_a_value_cannot_widen_a_query() -> None:
    recorder = Recorder()
    await queries.last_value(recorder, 'kpi"x', "f", "d' OR '1'='1")  # type: ignore[arg-type]
    assert recorder.sent == ['SELECT last("f") FROM "kpi\\"x" WHERE "district" = \'d\\\' OR \\\'1\\\'=\\\'1\'']

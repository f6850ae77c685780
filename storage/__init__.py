"""Storage: InfluxDB 1.x and 2.x, the one room that talks to the database.

Writers (`InfluxV1` over `/write`, `InfluxV2` through influxdb-client, `open_writer`/`writer_for` choosing by
configuration or by asking `/ping`), InfluxQL queries (`InfluxV1.query`, which 2.x answers too), line protocol
(`storage.lineprotocol`, the one encoder), and one error family (`storage.errors`), into which every library
error is translated here. Ingest, aggregation and the dashboard import `storage`; `storage` imports only
`devices`; the gateway never imports it.
"""

from storage.errors import (
    SinkError,
    SinkRefused,
    SinkRejected,
    SinkUnavailable,
    StorageError,
)
from storage.influx import InfluxConfig, InfluxV1, Writer
from storage.influx2 import InfluxV2
from storage.lineprotocol import encode_readings, series_key
from storage.writers import AutoWriter, open_writer, writer_for

__all__ = [
    "AutoWriter",
    "InfluxConfig",
    "InfluxV1",
    "InfluxV2",
    "SinkError",
    "SinkRefused",
    "SinkRejected",
    "SinkUnavailable",
    "StorageError",
    "Writer",
    "encode_readings",
    "open_writer",
    "series_key",
    "writer_for",
]

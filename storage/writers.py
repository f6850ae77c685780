"""Choosing the database writer: InfluxDB 1.x (`/write`, database + retention policy) or 2.x (influxdb-client,
org + bucket + token), by configuration or by asking the server.

`version = "auto"` asks `/ping` for the `X-Influxdb-Version` header ("1.6.7~rc0", "v2.7.11", "2.7.11") when
the pipeline prepares its sink, which it retries while the server is unreachable: the choice is made against
the server that is actually there, never guessed. 1.8 also answers `/api/v2/write`, but 1.x is spoken to
every 1.x server, so the same configuration works from 1.6 on.
"""

from __future__ import annotations

import httpx

from storage.influx import InfluxConfig, InfluxV1, Writer
from storage.influx2 import InfluxV2


def major_version(header: str | None) -> str:
    """ "1" or "2" from an X-Influxdb-Version header; raises ValueError for anything else."""
    text = (header or "").strip().lstrip("vV")
    major = text.split(".", 1)[0]
    if major not in ("1", "2"):
        raise ValueError(f"unsupported InfluxDB version {header!r} (X-Influxdb-Version of /ping)")
    return major


class AutoWriter:
    """Detects the server's major version at `prepare()` and delegates to the matching writer."""

    def __init__(self, config: InfluxConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self._transport = transport
        self.chosen: Writer | None = None

    async def detect(self) -> str:
        """The server's major version from `/ping`, asked through the 1.x client (both versions answer it the
        same way, without authentication); its errors are the storage family's."""
        async with InfluxV1(self.config, transport=self._transport) as probe:
            return major_version(await probe.ping())

    async def prepare(self) -> None:
        if self.chosen is None:
            version = await self.detect()
            self.chosen = make_writer(self.config, version)
        await self.chosen.prepare()

    async def write(self, body: bytes) -> None:
        if self.chosen is None:
            await self.prepare()
        assert self.chosen is not None
        await self.chosen.write(body)

    async def aclose(self) -> None:
        if self.chosen is not None:
            await self.chosen.aclose()


def make_writer(config: InfluxConfig, version: str) -> Writer:
    if version == "1":
        return InfluxV1(config)
    if version == "2":
        return InfluxV2(config)
    raise ValueError(f"unknown InfluxDB version {version!r}")


def writer_for(config: InfluxConfig) -> Writer:
    """The writer the configuration asks for (nothing is contacted yet)."""
    if config.version == "auto":
        return AutoWriter(config)
    return make_writer(config, config.version)


async def open_writer(config: InfluxConfig) -> Writer:
    """`writer_for`, for callers that are already in the event loop."""
    return writer_for(config)

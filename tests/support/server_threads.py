"""The real ingest pipeline and the real dashboard server, each in a thread with its own event loop.

Used by the integration and browser tests: the test body stays synchronous (selenium blocks), and each
component shuts down the way it does in production (ingest drains on its stop event, uvicorn exits its
serve loop and runs the app's lifespan shutdown).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from dashboard import DashboardConfig, create_app
from devices import Registry
from ingest import InfluxConfig, IngestSettings, IngestStats, MqttConfig, Pipeline


class IngestThread:
    def __init__(self, registry_path: Path, quarantine: Path, host: str, port: int, influx_url: str, database: str):
        registry = Registry.load(registry_path)
        district = next(iter(registry.districts))
        self.settings = IngestSettings(
            registry=registry_path,
            quarantine=quarantine,
            mqtt=MqttConfig(
                host=host,
                port=port,
                client_id=f"ingest-{district}",
                topics=(f"dp/v1/{district}/+/+/+",),
                session_expiry_s=0,
            ),
            influx=InfluxConfig(url=influx_url, database=database),
            batch_interval_s=0.05,
        )
        self.stats = IngestStats()
        self.pipeline = Pipeline(self.settings, registry, stats=self.stats)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="ingest", daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            task = asyncio.create_task(self.pipeline.run(self._stop))
            await asyncio.wait_for(self.pipeline.source.subscribed.wait(), 15)
            self._ready.set()
            await task

        try:
            asyncio.run(main())
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(20), "ingest did not subscribe"
        assert self.error is None, self.error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread.ident is not None:
            self._thread.join(30)


class DashboardThread:
    """The app under uvicorn on a free loopback port."""

    def __init__(self, config: DashboardConfig) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(config), log_config=None, access_log=False, timeout_graceful_shutdown=2)
        )
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self, timeout: float = 30) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("dashboard did not become healthy")

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread.ident is not None:
            self._thread.join(15)
        self.sock.close()

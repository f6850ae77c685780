"""Helpers shared by the ingest tests (unit and integration): payloads, fakes, counting in InfluxDB."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from devices import Registry, encode_batch, readings_topic, units_for
from districtpulse.config import Endpoints
from ingest.mqtt import Message
from storage.errors import SinkRejected, SinkUnavailable
from tests.support.net import free_influx_port, free_port

T0 = 1_790_000_000_000  # 2026-09-21T14:13:20Z: in the past, after commissioning


def em_values(i: int) -> dict[str, float | str]:
    return {"energy_import": 1000.0 + i * 0.25, "energy_export": 0.0, "power": 900.0 + i, "voltage": 230.0}


def em_messages(district: str, readings: int, per_message: int, *, start: int = T0) -> list[tuple[str, bytes]]:
    """`readings` electricity-meter readings of device <district>-em, `per_message` to a message."""
    topic = readings_topic(district, f"{district}-gw1", f"{district}-em", "electricity_meter")
    units = units_for("electricity_meter")
    out = []
    for first in range(0, readings, per_message):
        n = min(per_message, readings - first)
        batch = [(start + (first + k) * 1000, em_values(first + k)) for k in range(n)]
        out.append((topic, encode_batch(f"{district}-em", first, units, batch)))
    return out


# --- fakes -----------------------------------------------------------------------------------------------


class FakeSource:
    """An in-memory broker side: `feed` delivers messages, `ack` records what was acknowledged."""

    def __init__(self) -> None:
        self.subscribed = asyncio.Event()
        self._pending: list[Message] = []
        self._ready = asyncio.Event()
        self.acked: list[Message] = []
        self.stopped = False
        self._mid = 0
        #: (topic, payload) of every confirmation the pipeline published
        self.published: list[tuple[str, bytes]] = []
        #: called with the messages of each ack, and with each publish, before they are recorded (to check
        #: what is durable at that moment)
        self.on_ack: Callable[[Sequence[Message]], None] | None = None
        self.on_publish: Callable[[str, bytes], None] | None = None

    def feed(self, messages: Sequence[tuple[str, bytes]]) -> list[Message]:
        out = []
        for topic, payload in messages:
            self._mid += 1
            out.append(Message(topic, payload, self._mid, 1, 1, time.monotonic()))
        self._pending.extend(out)
        self._ready.set()
        return out

    async def start(self) -> None:
        self.subscribed.set()

    async def receive(self, wait_s: float | None = None) -> list[Message]:
        if not self._pending:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), wait_s)
            except TimeoutError:
                return []
        out, self._pending = self._pending, []
        return out

    def wake(self) -> None:
        self._ready.set()

    def ack(self, messages: Sequence[Message]) -> int:
        if self.on_ack is not None:
            self.on_ack(messages)
        self.acked.extend(m for m in messages if m.qos)
        return sum(1 for m in messages if m.qos)

    def publish(self, topic: str, payload: bytes) -> bool:
        if self.on_publish is not None:
            self.on_publish(topic, payload)
        self.published.append((topic, payload))
        return True

    async def stop(self) -> None:
        self.stopped = True


class FakeWriter:
    """A database: down (SinkUnavailable) while `down` is set; refuses any line containing one of
    `refuse` (storing the other lines, as InfluxDB 1.x does with a partial write). Readings' lines are kept
    in `lines`, the `unstored` points (`storage.unstored`) in `unstored`."""

    def __init__(self, *, refuse: Sequence[str] = (), fail_first: int = 0) -> None:
        self.down = False
        self.fail_first = fail_first
        self.refuse = tuple(refuse)
        self.requests: list[bytes] = []
        self.lines: set[str] = set()
        self.unstored: set[str] = set()
        self.calls = 0
        self.prepared = False

    async def prepare(self) -> None:
        if self.down:
            raise SinkUnavailable("down")
        self.prepared = True

    async def write(self, body: bytes) -> None:
        self.calls += 1
        call = self.calls
        await asyncio.sleep(0)
        if self.down or call <= self.fail_first:
            raise SinkUnavailable("down", retry_after=None)
        self.requests.append(body)
        lines = body.decode().split("\n")
        bad = [line for line in lines if any(r in line for r in self.refuse)]
        for line in lines:
            if line not in bad:
                (self.unstored if line.startswith("unstored,") else self.lines).add(line)
        if bad:
            raise SinkRejected("partial write", status=400, body=f'{{"error":"partial write: dropped={len(bad)}"}}')

    async def aclose(self) -> None:
        pass


def fake_pipeline(tmp_path: Path, registry: Registry, writer: Any, **overrides: Any) -> tuple[Any, FakeSource, Any]:
    """(pipeline, source, stats) of a Pipeline on an in-memory broker and `writer`, with short timings;
    `mqtt=` and any other IngestSettings field may be overridden."""
    from ingest import IngestSettings, IngestStats, Pipeline
    from ingest.mqtt import MqttConfig

    options: dict[str, Any] = {"batch_interval_s": 0.01, "retry_base_s": 0.001, "retry_max_s": 0.01}
    mqtt = overrides.pop("mqtt", MqttConfig())
    settings = IngestSettings(
        registry=tmp_path / "unused.toml", quarantine=tmp_path / "q.sqlite", mqtt=mqtt, **(options | overrides)
    )
    source = FakeSource()
    stats = IngestStats()
    return Pipeline(settings, registry, stats=stats, writer=writer, source=source), source, stats


async def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# --- real services ---------------------------------------------------------------------------------------


def private_endpoints(state_dir: Path, database: str = "ingest") -> Endpoints:
    return Endpoints.from_env(
        {
            "DP_MQTT_PORT": str(free_port()),
            "DP_INFLUX_PORT": str(free_influx_port()),
            "DP_INFLUX_DB": database,
            "DP_STATE_DIR": str(state_dir),
        }
    )


def influx_query(endpoints: Endpoints, database: str, q: str) -> list[dict[str, Any]]:
    response = httpx.post(
        f"{endpoints.influx_url}/query", params={"db": database, "epoch": "ms"}, data={"q": q}, timeout=30
    )
    response.raise_for_status()
    result = response.json()["results"][0]
    assert "error" not in result, result
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def count_points(endpoints: Endpoints, database: str, measurement: str = "electricity") -> int:
    """Points of a measurement, counted by InfluxDB (every point has the integer field seq)."""
    series = influx_query(endpoints, database, f'SELECT count("seq") FROM "{measurement}"')
    return int(series[0]["values"][0][1]) if series else 0


def drop_database(endpoints: Endpoints, database: str) -> None:
    httpx.post(f"{endpoints.influx_url}/query", data={"q": f'DROP DATABASE "{database}"'}, timeout=30)


def remove_session(endpoints: Endpoints, client_id: str) -> None:
    """Connect with clean start and a zero expiry, then disconnect: the broker forgets the session."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.connect(endpoints.mqtt_host, endpoints.mqtt_port, clean_start=True)
    client.loop_start()
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()


def write_registry(path: Path, district: str) -> Registry:
    from tests.conftest import small_registry_toml

    path.write_text(small_registry_toml(district))
    return Registry.load(path)


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:10]


# --- running ingest in-process and publishing ------------------------------------------------------------


def ingest_settings(
    endpoints: Endpoints, tmp_path: Path, district: str, database: str, client_id: str, **overrides: Any
) -> Any:
    from ingest import InfluxConfig, IngestSettings, MqttConfig

    mqtt_options = {
        "host": endpoints.mqtt_host,
        "port": endpoints.mqtt_port,
        "client_id": client_id,
        "topics": (f"dp/v1/{district}/+/+/+",),
        "session_expiry_s": 600,
    } | overrides.pop("mqtt", {})
    influx_options = {"url": endpoints.influx_url, "database": database, "timeout": 5.0} | overrides.pop("influx", {})
    options = {"batch_interval_s": 0.05, "retry_base_s": 0.05, "retry_max_s": 0.5} | overrides
    return IngestSettings(
        registry=tmp_path / "registry.toml",
        quarantine=tmp_path / f"quarantine-{client_id}.sqlite",
        mqtt=MqttConfig(**mqtt_options),
        influx=InfluxConfig(**influx_options),
        **options,
    )


class Publishing:
    """Publish messages at QoS 1 from a thread, optionally paced; `published` counts publish() calls."""

    def __init__(self, endpoints: Endpoints, messages: Sequence[tuple[str, bytes]], pace_s: float = 0.0) -> None:
        import threading

        self.endpoints, self.messages, self.pace_s = endpoints, messages, pace_s
        self.published = 0
        self.all_acked = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Publishing:
        self._thread.start()
        return self

    def _run(self) -> None:
        from gateway import BrokerConfig, Publisher

        broker = BrokerConfig(self.endpoints.mqtt_host, self.endpoints.mqtt_port, client_id=unique("pub-"))
        try:
            with Publisher(broker, max_inflight=200, drain_timeout=60) as pub:
                for topic, payload in self.messages:
                    pub.publish(topic, payload, timeout=60)
                    self.published += 1
                    if self.pace_s:
                        time.sleep(self.pace_s)
                self.all_acked = pub.wait_acked(60)
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self, timeout: float = 90) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "publisher still running"
        if self.error is not None:
            raise self.error
        assert self.all_acked, "the broker did not acknowledge every message"


def process_gone(pid: int) -> bool:
    """Gone or a zombie (where init reaps orphans late, a stopped service lingers in /proc as state Z)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def stop_service(endpoints: Endpoints, name: str, sig: int = 15) -> int:
    """Stop one of a private instance's services (SIGTERM by default) and wait until its process is gone:
    it stops answering before it exits (Mosquitto saves its database after closing its listener)."""
    import os

    from districtpulse.services import status

    pid = next(s.pid for s in status(endpoints) if s.name == name)
    assert pid is not None, f"{name} is not running"
    os.kill(pid, sig)
    deadline = time.monotonic() + 15
    while not process_gone(pid):
        assert time.monotonic() < deadline, f"{name} did not stop"
        time.sleep(0.02)
    return pid


def start_services(endpoints: Endpoints) -> None:
    """Start whatever of the private instance is not running."""
    from districtpulse.services import up

    up(endpoints, log=lambda _: None)


def ingest_process(
    endpoints: Endpoints, tmp_path: Path, district: str, database: str, client_id: str, *extra: str
) -> Any:
    """`python -m ingest` in its own process against `endpoints`; returns once it is subscribed."""
    import os
    import subprocess
    import sys

    ready = tmp_path / f"{client_id}.ready"
    ready.unlink(missing_ok=True)
    env = os.environ | {
        "DP_MQTT_PORT": str(endpoints.mqtt_port),
        "DP_INFLUX_PORT": str(endpoints.influx_port),
        "DP_INFLUX_DB": database,
        "DP_STATE_DIR": str(endpoints.state_dir),
        "DP_LOG_LEVEL": "WARNING",
    }
    log = (tmp_path / f"{client_id}.log").open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ingest",
            "--registry",
            str(tmp_path / "registry.toml"),
            "--client-id",
            client_id,
            "--topic",
            f"dp/v1/{district}/+/+/+",
            "--quarantine",
            str(tmp_path / f"quarantine-{client_id}.sqlite"),
            "--ready-file",
            str(ready),
            "--session-expiry",
            "600",
            "--metrics-port",
            "0",
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    log.close()
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"ingest did not start: {(tmp_path / f'{client_id}.log').read_text()[-2000:]}")
        time.sleep(0.02)
    return proc

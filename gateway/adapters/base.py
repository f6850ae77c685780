"""The contract between the gateway and its adapters (the code that reads devices).

An adapter is a folder under `gateway/adapters/` (code, README.md, sample.toml, testcases/) that registers
an `AdapterSpec` in `gateway.adapters.ADAPTERS` under its `type` name. The gateway

1. validates the adapter's `[[adapter]]` table of gateway.toml with the spec's `config` dataclass (loaded by
   `devices.tables`: no pydantic on the Pi, whose memory budget it would eat),
2. calls `spec.create(config, context)` to build it,
3. declares the adapter's `devices()` to the spool (so their sequence counters exist before any reading),
4. runs `adapter.run(sink, stop)` on a thread of its own until it returns or `stop` is set.

Threads keep the contract small and fit every kind of device: a Modbus poller blocks on sockets, an OCPP
central system runs its own asyncio loop inside `run` (`asyncio.run(...)`), a file replay just reads. The
sink is the only way into the spool; `put` may block (the spool's buffer is bounded: backpressure), and
returns once the reading is buffered for the next group commit, not once it is on disk. An adapter whose
device forgets what it was told is received (an OCPP charger does not resend an answered call) answers only
once it is on disk: it takes `sink.ticket()` after putting and waits with `sink.wait_committed(ticket,
timeout)` (blocking: an asyncio adapter runs it in a thread), and tells the device to retry if that times out.

An adapter that can resume (a file replay) keeps a cursor with `put_many(..., cursor=...)`, committed in the
same transaction as the readings, and reads it back with `sink.cursor()` when it starts. An exception that
escapes `run` is a bug or a fatal configuration error: it stops the gateway, which exits non-zero so that
systemd restarts it. Device errors (a meter that does not answer) are the adapter's to log and retry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from devices.kinds import DeviceKind

Value = float | str
Values = Mapping[str, Value]


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """A device an adapter reads: its registry id and kind (which give its topic, units and metrics)."""

    id: str
    kind: DeviceKind


class ReadingSink(Protocol):
    """Where an adapter puts readings: the spool, behind the gateway's clock."""

    def now_ms(self) -> int:
        """The gateway's wall clock, UTC milliseconds."""
        ...

    def put(self, device_id: str, values: Values, ts_ms: int | None = None, *, unsynced: bool | None = None) -> None:
        """One reading; `ts_ms=None` stamps it now (and flags it if the gateway clock is unsynchronised)."""
        ...

    def put_many(
        self,
        device_id: str,
        readings: Iterable[tuple[int, Values]],
        *,
        unsynced: bool = False,
        cursor: str | None = None,
    ) -> None:
        """Timestamped readings of one device and, atomically with them, this adapter's new cursor."""
        ...

    def cursor(self) -> str | None:
        """This adapter's last committed cursor (None on first start)."""
        ...

    def ticket(self) -> int:
        """A mark covering every reading and cursor put through this sink so far (it grows with each put)."""
        ...

    def wait_committed(self, ticket: int, timeout: float) -> bool:
        """Block until everything up to `ticket` is committed to disk; False if `timeout` seconds passed first."""
        ...


class Adapter(Protocol):
    """A running source of readings."""

    def devices(self) -> Sequence[DeviceRef]:
        """Every device this adapter may put readings for (known before `run`)."""
        ...

    def run(self, sink: ReadingSink, stop: threading.Event) -> None:
        """Read devices until `stop` is set (or the source is exhausted) and put their readings into `sink`."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class AdapterConfig:
    """Base of every adapter's config dataclass: its `[[adapter]]` table in gateway.toml.

    Keyword-only, so that a subclass may add required fields after these defaulted ones."""

    type: str
    #: Tells two adapters of the same type apart (their cursors and logs); defaults to the type.
    name: str | None = None


@dataclass(frozen=True, slots=True)
class AdapterContext:
    """What the gateway tells an adapter about where it runs."""

    gateway: str
    district: str
    #: The devices the registry assigns to this gateway (empty when the gateway runs without a registry).
    registry_devices: tuple[DeviceRef, ...]
    #: Relative paths in the adapter's config are relative to this folder (the config file's).
    base_dir: Path


@dataclass(frozen=True, slots=True)
class AdapterSpec:
    """How the gateway finds, configures and builds one type of adapter."""

    name: str
    config: type[AdapterConfig]
    create: Callable[[Any, AdapterContext], Adapter]
    description: str = ""

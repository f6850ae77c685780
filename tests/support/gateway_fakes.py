"""In-memory fakes for the gateway service: a publisher that records and acknowledges, scripted adapters."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from devices.kinds import DeviceKind
from devices.wire import encode_confirms
from gateway.adapters import DeviceRef, ReadingSink, Values
from gateway.clock import ClockState, SyncState
from gateway.publisher import Will


@dataclass
class Sent:
    topic: str
    payload: bytes
    retain: bool
    mid: int


class FakePublisher:
    """Records every publish; acknowledges at once (before `publish` returns, the worst case for the
    service's bookkeeping) unless `auto_ack` is False, in which case `ack_all()` does it. With `auto_confirm`,
    each acknowledged readings message is also confirmed, as ingest would once it is stored (`confirm_all()`
    does it otherwise); `code` is the PUBACK reason code it answers with."""

    def __init__(
        self,
        on_ack: Callable[[int, int], None],
        will: Will,
        subscriptions: Sequence[tuple[str, Callable[[bytes], None]]] = (),
        *,
        auto_ack: bool = True,
        auto_confirm: bool = True,
        window: int = 100,
    ) -> None:
        self.on_ack = on_ack
        self.will = will
        self.subscriptions = list(subscriptions)
        self.auto_ack = auto_ack
        self.auto_confirm = auto_confirm
        self.window = window
        self.code = 0
        self.sent: list[Sent] = []
        self.unacked: list[int] = []
        self.unconfirmed: list[Sent] = []
        self.connections = 1
        self.connected = True
        self.started = self.closed = False
        self.reasons: dict[int, int] = {}
        self._mid = 0
        self._by_mid: dict[int, Sent] = {}
        self._lock = threading.Lock()

    @property
    def available(self) -> int:
        with self._lock:
            return self.window - len(self.unacked)

    def start(self) -> None:
        self.started = True

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, timeout: float | None = None) -> int:
        with self._lock:
            self._mid += 1
            mid = self._mid
            self.sent.append(Sent(topic, payload, retain, mid))
            self._by_mid[mid] = self.sent[-1]
            self.unacked.append(mid)
        if self.auto_ack:
            self.ack_all()
        return mid

    def ack_all(self) -> None:
        with self._lock:
            mids, self.unacked = self.unacked, []
        for mid in mids:
            self.on_ack(mid, self.code)
            sent = self._by_mid.pop(mid)
            if self.code == 0 and not sent.topic.endswith(("/status", "/confirm")):
                self.unconfirmed.append(sent)
        if self.auto_confirm:
            self.confirm_all()

    def confirm_all(self) -> None:
        """Confirm every acknowledged readings message, in one confirmation document (as ingest batches them)."""
        with self._lock:
            pending, self.unconfirmed = self.unconfirmed, []
        ranges: dict[str, list[tuple[int, int]]] = {}
        for sent in pending:
            doc = json.loads(sent.payload)
            ranges.setdefault(doc["device"], []).append((doc["seq"][0], doc["seq"][1]))
        if ranges:
            self.deliver_confirms(ranges)

    def deliver_confirms(self, ranges: dict[str, list[tuple[int, int]]]) -> None:
        for payload in encode_confirms(ranges, by="fake-ingest", ts_ms=0):
            for _topic, callback in self.subscriptions:
                callback(payload)

    def wait_acked(self, timeout: float) -> bool:
        if self.auto_ack:
            self.ack_all()
        return not self.unacked

    def close(self) -> None:
        self.closed = True


class ListAdapter:
    """Puts scripted readings (device, ts, values), then returns; or raises `fail` after them."""

    def __init__(
        self,
        devices: Sequence[tuple[str, DeviceKind]],
        readings: Sequence[tuple[str, int, Values]],
        *,
        fail: Exception | None = None,
    ) -> None:
        self._devices = [DeviceRef(d, k) for d, k in devices]
        self.readings = readings
        self.fail = fail

    def devices(self) -> Sequence[DeviceRef]:
        return self._devices

    def run(self, sink: ReadingSink, stop: threading.Event) -> None:
        for device, ts, values in self.readings:
            sink.put(device, values, ts)
        if self.fail is not None:
            raise self.fail


@dataclass
class FixedClock:
    """A Clock stand-in: fixed time and sync state, no probing."""

    now: int
    sync: SyncState = "synchronised"
    refreshes: int = 0
    history: list[int] = field(default_factory=list)

    def now_ms(self) -> int:
        return self.now

    @property
    def synced(self) -> bool:
        return self.sync == "synchronised"

    def refresh(self) -> ClockState:
        self.refreshes += 1
        return self.state()

    def state(self) -> ClockState:
        return ClockState(self.sync, "test", 0, 0)

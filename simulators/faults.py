"""Fault injection: a plan drawn up front from its own random stream, applied to readings and messages.

Because the plan has its own stream (`rng.stream(seed, "faults")`), switching faults on never changes the
clean data: the same seed gives the same readings with or without faults, except where a fault is.
Every fault is recorded in the truth with what it did and what ingest should do with it.

Reading faults (change what a device reports):
    nan, out_of_range      a metric becomes NaN / a physically impossible value  -> quarantined
    counter_glitch         one register reading jumps (to 0, backwards, or a spike) -> stored as sent
    rollover               the register wraps at its width (registry `register_rollover_kwh`, else 1e5 kWh)
    meter_replacement      the meter is swapped: readings pause, the new register starts near 0
    clock_skew             a gateway's clock is off by seconds to minutes for a while
    unsynced_boot          a gateway reboots without a real-time clock: until NTP syncs it stamps readings
                           with the time since 1970 (-> before_commissioning) or a stale saved time (stored
                           at the wrong time, as fake-hwclock does); like a real gateway it knows its clock
                           has not synced, so those batches say `"clock": "unsynced"`
Message faults (change how a batch travels):
    disconnect             the gateway is offline; its spool holds the batches and flushes them on reconnect
    duplicate              a batch is published twice (a lost PUBACK)                -> stored once
    out_of_order           a batch arrives after the device's next batches
    late                   a batch arrives hours to days late
    malformed              the payload is corrupted (truncated JSON, bad seq, wrong unit, unknown version)

Wrong timestamps always carry a non-zero millisecond part while clean ones are whole seconds, so a shifted
reading can never land on (and silently overwrite) another reading's InfluxDB point: the truth stays exact.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from devices import KINDS, Device, DeviceKind, Reason
from simulators.config import FaultConfig

_REGISTER_KINDS = (DeviceKind.ELECTRICITY_METER, DeviceKind.HEAT_METER)
DEFAULT_ROLLOVER_KWH = 100_000.0


@dataclass(frozen=True, slots=True)
class Target:
    """A device with its sampling grid: what the planner may aim a fault at."""

    device: Device
    resolution_ms: int
    publish_ms: int
    first_ms: int  # first sample time the device reports
    nominal_kw: float = 0.0  # rough mean power of a register device, to place a rollover


@dataclass(slots=True)
class _RegisterState:
    kind: str  # "rollover" | "replacement"
    metric: str
    at_ms: int
    width: float = 0.0
    shift: float = 0.0
    new_base: float = 0.0
    gap_ms: int = 0
    offset: float | None = None
    last: float | None = None
    record: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClockFault:
    gateway: str
    start_ms: int
    end_ms: int
    mode: str  # "skew" | "epoch" | "stale" | "down" (rebooting: no readings)
    offset_ms: int = 0


@dataclass(frozen=True, slots=True)
class MessageFault:
    kind: str  # duplicate | out_of_order | late | malformed
    delay_ms: int = 0
    variant: str = ""


@dataclass(frozen=True, slots=True)
class Outage:
    gateway: str
    start_ms: int
    end_ms: int


class FaultPlan:
    """Where each fault happens. `faults` lists them as JSON-ready records for the truth."""

    def __init__(
        self,
        config: FaultConfig,
        targets: list[Target],
        gateways: list[str],
        *,
        start_ms: int,
        end_ms: int,
        rng: np.random.Generator,
    ) -> None:
        self.config = config
        self.rng = rng
        self.start_ms, self.end_ms = start_ms, end_ms
        self.faults: list[dict[str, Any]] = []
        #: (device, ts) -> (fault, metric, value to send or NaN, glitch variant)
        self.value_faults: dict[tuple[str, int], tuple[str, str, float, str]] = {}
        self.registers: dict[str, _RegisterState] = {}
        self.clock: dict[str, list[ClockFault]] = {}
        self.message_faults: dict[tuple[str, int], list[MessageFault]] = {}  # (device, interval start) -> faults
        self.outages: list[Outage] = []
        self._used_ms_residues: set[int] = set()
        self._targets = [t for t in targets if t.first_ms < end_ms]
        self._plan_values("nan")
        self._plan_values("out_of_range")
        self._plan_values("counter_glitch")
        #: Devices whose readings may carry a value fault (the engine checks only theirs).
        self.value_devices = frozenset(device for device, _ in self.value_faults)
        self._plan_registers()
        self._plan_clock(gateways)
        self._plan_messages()
        self._plan_outages(gateways)

    # -- planning helpers -------------------------------------------------------------------------------
    def _sample_time(self, t: Target, *, margin_ms: int = 0) -> int:
        lo = max(t.first_ms, self.start_ms) + margin_ms
        steps = max(1, (self.end_ms - margin_ms - lo) // t.resolution_ms)
        return lo + int(self.rng.integers(steps)) * t.resolution_ms

    def _pick(self, candidates: list[Target]) -> Target | None:
        return candidates[int(self.rng.integers(len(candidates)))] if candidates else None

    def _odd_ms(self, magnitude_ms: int) -> int:
        """An offset of about `magnitude_ms` whose millisecond part is non-zero and unused so far."""
        while True:
            residue = int(self.rng.integers(1, 1000))
            if residue not in self._used_ms_residues:
                self._used_ms_residues.add(residue)
                return (magnitude_ms // 1000) * 1000 + residue

    # -- reading faults ---------------------------------------------------------------------------------
    def _plan_values(self, name: str) -> None:
        n = self.config.count(name)
        if name == "counter_glitch":
            candidates = [t for t in self._targets if t.device.kind in (*_REGISTER_KINDS, DeviceKind.PV_INVERTER)]
        else:
            candidates = self._targets
        tries = 0
        while n > 0 and candidates and tries < 100 * (n + 1):
            tries += 1
            t = self._pick(candidates)
            assert t is not None
            ts = self._sample_time(t)
            if (t.device.id, ts) in self.value_faults:
                continue
            spec = KINDS[t.device.kind]
            if name == "counter_glitch":
                metric = spec.cumulative_metrics[0]
                variant = ("zero", "backward", "spike")[int(self.rng.integers(3))]
                self.value_faults[(t.device.id, ts)] = (name, metric, 0.0, variant)
            else:
                floats = [m.name for m in spec.metrics.values() if m.type == "float"]
                metric = floats[int(self.rng.integers(len(floats)))]
                m = spec.metrics[metric]
                bad = (
                    math.nan
                    if name == "nan"
                    else float(m.max + max(1.0, abs(m.max)) if math.isfinite(m.max) else -1e12)
                )
                self.value_faults[(t.device.id, ts)] = (name, metric, bad, "")
            n -= 1

    def _plan_registers(self) -> None:
        used: set[str] = set()
        for name in ("rollover", "meter_replacement"):
            candidates = [t for t in self._targets if t.device.kind in _REGISTER_KINDS and t.nominal_kw > 0]
            for _ in range(self.config.count(name)):
                free = [t for t in candidates if t.device.id not in used]
                with_width = [t for t in free if t.device.register_rollover_kwh is not None]
                t = self._pick(with_width if name == "rollover" and with_width else free)
                if t is None:
                    break
                used.add(t.device.id)
                metric = KINDS[t.device.kind].cumulative_metrics[0]
                span = self.end_ms - max(t.first_ms, self.start_ms)
                at = self._sample_time(t, margin_ms=min(span // 4, 6 * 3_600_000))
                if name == "rollover":
                    declared = t.device.register_rollover_kwh
                    width = declared or DEFAULT_ROLLOVER_KWH
                    # Place the wrap about half-way to `at` at the nominal rate: early enough to be inside the run.
                    hours = (at - max(t.first_ms, self.start_ms)) / 3_600_000
                    margin = max(0.5, 0.5 * t.nominal_kw * hours)
                    record = {"fault": "rollover", "device": t.device.id, "metric": metric, "width_kwh": width}
                    record["width_declared_in_registry"] = declared is not None
                    self.registers[t.device.id] = _RegisterState("rollover", metric, at, width=width, shift=margin)
                else:
                    gap = int(self.rng.integers(2, 7)) * t.resolution_ms
                    base = round(float(self.rng.uniform(0.0, 5.0)), 3)
                    record = {"fault": "meter_replacement", "device": t.device.id, "metric": metric, "at_ms": at}
                    record |= {"gap_ms": gap, "new_initial_register": base}
                    self.registers[t.device.id] = _RegisterState("replacement", metric, at, new_base=base, gap_ms=gap)
                self.registers[t.device.id].record = record
                self.faults.append(record)

    def _plan_clock(self, gateways: list[str]) -> None:
        busy: dict[str, list[tuple[int, int]]] = {}

        def window(duration_ms: int) -> tuple[str, int, int] | None:
            for _ in range(50):
                g = gateways[int(self.rng.integers(len(gateways)))]
                seconds = max(1, (self.end_ms - self.start_ms - duration_ms) // 1000)
                a = self.start_ms + int(self.rng.integers(seconds)) * 1000
                a = a - a % 60_000
                b = a + duration_ms
                if all(b <= s or a >= e for s, e in busy.get(g, [])):
                    busy.setdefault(g, []).append((a, b))
                    return g, a, b
            return None

        for _ in range(self.config.count("clock_skew")):
            duration = int(self.rng.integers(30, 361)) * 60_000
            w = window(duration)
            if w is None:
                break
            g, a, b = w
            sign = 1 if self.rng.random() < 0.5 else -1
            offset = sign * self._odd_ms(int(self.rng.integers(20, 1200)) * 1000)
            self.clock.setdefault(g, []).append(ClockFault(g, a, b, "skew", offset))
            self.faults.append({"fault": "clock_skew", "gateway": g, "start_ms": a, "end_ms": b, "offset_ms": offset})
        for _ in range(self.config.count("unsynced_boot")):
            boot_ms = int(self.rng.integers(2, 6)) * 60_000
            unsynced = int(self.rng.integers(10, 61)) * 60_000
            w = window(boot_ms + unsynced)
            if w is None:
                break
            g, a, b = w
            mode = "epoch" if self.rng.random() < 0.5 else "stale"
            stale = self._odd_ms(int(self.rng.integers(1, 49)) * 3_600_000) if mode == "stale" else 0
            self.clock.setdefault(g, []).append(ClockFault(g, a, a + boot_ms, "down"))
            offset = -(a + boot_ms) + self._odd_ms(0) if mode == "epoch" else -stale
            self.clock[g].append(ClockFault(g, a + boot_ms, b, mode, offset))
            self.faults.append(
                {
                    "fault": "unsynced_boot",
                    "gateway": g,
                    "boot_ms": a,
                    "rebooting_ms": boot_ms,
                    "synced_ms": b,
                    "clock": mode,
                    "offset_ms": offset,
                }
            )

    # -- message faults ---------------------------------------------------------------------------------
    def _plan_messages(self) -> None:
        for name in ("duplicate", "out_of_order", "late", "malformed"):
            for _ in range(self.config.count(name)):
                t = self._pick(self._targets)
                if t is None:
                    return
                interval = self._sample_time(t) // t.publish_ms * t.publish_ms
                interval = max(interval, t.first_ms - t.first_ms % t.publish_ms)
                if name == "duplicate":
                    fault = MessageFault(name, int(self.rng.integers(0, 60_000)))
                elif name == "out_of_order":
                    fault = MessageFault(name, int(self.rng.integers(1, 4)) * t.publish_ms + 1)
                elif name == "late":
                    hours = float(np.exp(self.rng.uniform(np.log(2.0), np.log(72.0))))
                    fault = MessageFault(name, int(hours * 3_600_000))
                else:
                    variant = ("truncated", "bad_seq", "wrong_unit", "bad_version")[int(self.rng.integers(4))]
                    fault = MessageFault(name, 0, variant)
                self.message_faults.setdefault((t.device.id, interval), []).append(fault)

    def _plan_outages(self, gateways: list[str]) -> None:
        for _ in range(self.config.count("disconnect")):
            for _attempt in range(50):  # outages of one gateway never overlap
                g = gateways[int(self.rng.integers(len(gateways)))]
                duration = int(float(np.exp(self.rng.uniform(np.log(10.0), np.log(360.0)))) * 60_000)
                a = self.start_ms + int(self.rng.integers(max(1, (self.end_ms - self.start_ms) // 60_000))) * 60_000
                if all(o.gateway != g or a + duration <= o.start_ms or a >= o.end_ms for o in self.outages):
                    break
            else:
                break
            self.outages.append(Outage(g, a, a + duration))
            self.faults.append({"fault": "disconnect", "gateway": g, "start_ms": a, "end_ms": a + duration})
        self.outages.sort(key=lambda o: (o.start_ms, o.gateway))

    # -- application --------------------------------------------------------------------------------------
    def clock_for(self, gateway: str, t_ms: int) -> ClockFault | None:
        for c in self.clock.get(gateway, ()):
            if c.start_ms <= t_ms < c.end_ms:
                return c
        return None

    def apply_register(self, device: str, ts: int, values: dict[str, float | str]) -> bool:
        """Transform a register reading in place; False when the reading is not taken (meter being swapped)."""
        st = self.registers.get(device)
        if st is None:
            return True
        true = float(values[st.metric])
        if st.kind == "rollover":
            if st.offset is None:  # first reading: start `shift` kWh below the width
                st.offset = st.width - st.shift - true
            sent = (true + st.offset) % st.width
            if st.last is not None and sent < st.last and "wrapped_at_ms" not in st.record:
                st.record["wrapped_at_ms"] = ts
                st.record["register_before"] = st.last
                st.record["register_after"] = round(sent, 4)
            st.last = round(sent, 4)
            values[st.metric] = st.last
            return True
        if ts < st.at_ms:
            return True
        if ts == st.at_ms:  # the old meter's final reading; the new one counts from here
            st.record["old_final_register"] = true
            st.offset = st.new_base - true
            return True
        if ts < st.at_ms + st.gap_ms:
            st.record["readings_not_taken"] = int(st.record.get("readings_not_taken", 0)) + 1
            return False
        if st.offset is None:  # no reading at the swap time (gateway down): the new meter starts now
            st.offset = st.new_base - true
            st.record["swap_reading_missing"] = True
        values[st.metric] = round(true + st.offset, 4)
        return True

    def apply_value(self, device: str, ts: int, values: dict[str, float | str]) -> None:
        fault = self.value_faults.get((device, ts))
        if fault is None:
            return
        name, metric, bad, variant = fault
        true = values.get(metric)
        if name == "counter_glitch":
            assert isinstance(true, float)
            sent = {"zero": 0.0, "backward": round(max(0.0, true - 37.5), 4), "spike": round(true + 5_000.0, 4)}[
                variant
            ]
            values[metric] = sent
            self.faults.append(
                {"fault": name, "device": device, "ts": ts, "metric": metric, "variant": variant, "true": true}
                | {"sent": sent}
            )
            return
        values[metric] = bad
        reason = Reason.NON_FINITE if name == "nan" else Reason.OUT_OF_RANGE
        self.faults.append(
            {"fault": name, "device": device, "ts": ts, "metric": metric, "expected_reason": reason.value}
            | {"sent": None if math.isnan(bad) else bad}
        )


def malform(payload: bytes, variant: str) -> tuple[bytes, Reason, bool]:
    """Corrupt a payload; returns it with the reason ingest gives and whether it counts every reading
    (True) or the message as one (False)."""
    if variant == "truncated":
        return payload[: max(1, len(payload) * 2 // 3)], Reason.DECODE_ERROR, False
    doc = json.loads(payload)
    if variant == "bad_seq":
        doc["seq"] = [doc["seq"][0], doc["seq"][1] + 1]
        return _dump(doc), Reason.INVALID_SCHEMA, True
    if variant == "wrong_unit":
        metric = sorted(doc["units"])[0]
        doc["units"][metric] = "M" + doc["units"][metric]
        return _dump(doc), Reason.WRONG_UNIT, True
    if variant == "bad_version":
        doc["v"] = 99
        return _dump(doc), Reason.UNSUPPORTED_SCHEMA_VERSION, False
    raise ValueError(f"unknown malformation {variant!r}")


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), allow_nan=True).encode()

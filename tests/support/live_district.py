"""A live district for dashboard tests: real time, one reading per second per device, current timestamps.

Publishes through `gateway.Publisher` (QoS 1, one connection per gateway) exactly as gateways do, plus each
gateway's retained status heartbeat. `stop_device(id)` silences one device while the others go on, as a
device that fails in the field. Values are plausible and smooth (registers grow with the power), so the
dashboard's figures are readable in a screenshot.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field

from devices import DeviceKind, Registry, encode_batch, units_for
from devices.topics import status_topic
from gateway import BrokerConfig, Publisher

REGISTRY = """
[[district]]
id = "{d}"
name = "Harbour district (live test)"
timezone = "Europe/Helsinki"
  [[district.building]]
  id = "{d}-b1"
  name = "Harbour Block A"
  use = "residential"
  floor_area_m2 = 5200
    [[district.building.gateway]]
    id = "{d}-gw1"
      [[district.building.gateway.device]]
      id = "{d}-em-main1"
      kind = "electricity_meter"
      commissioned = {c}
      max_power_w = 250000
      [[district.building.gateway.device]]
      id = "{d}-em-sub1"
      kind = "electricity_meter"
      commissioned = {c}
      max_power_w = 60000
      submeter_of = "{d}-em-main1"
      [[district.building.gateway.device]]
      id = "{d}-pv1"
      kind = "pv_inverter"
      commissioned = {c}
      max_power_w = 60000
      [[district.building.gateway.device]]
      id = "{d}-ev1"
      kind = "ev_charger"
      commissioned = {c}
      [[district.building.gateway.device]]
      id = "{d}-bs1"
      kind = "building_sensor"
      commissioned = {c}
  [[district.building]]
  id = "{d}-b2"
  name = "Canal Office"
  use = "commercial"
  floor_area_m2 = 3800
    [[district.building.gateway]]
    id = "{d}-gw2"
      [[district.building.gateway.device]]
      id = "{d}-em-main2"
      kind = "electricity_meter"
      commissioned = {c}
      max_power_w = 250000
      [[district.building.gateway.device]]
      id = "{d}-hm2"
      kind = "heat_meter"
      commissioned = {c}
      max_power_w = 400000
      [[district.building.gateway.device]]
      id = "{d}-ev2"
      kind = "ev_charger"
      commissioned = {c}
      [[district.building.gateway.device]]
      id = "{d}-bs2"
      kind = "building_sensor"
      commissioned = {c}
"""


def registry_toml(district: str, commissioned: str) -> str:
    return REGISTRY.format(d=district, c=commissioned)


@dataclass
class _DeviceState:
    kind: DeviceKind
    gateway: str
    base_w: float
    seq: int = 0
    registers: dict[str, float] = field(default_factory=dict)


def _values(state: _DeviceState, t_s: float, dt_s: float) -> dict[str, float | str]:
    """Smooth plausible values at time t (seconds); registers advance by power × dt."""
    wave = 1 + 0.15 * math.sin(t_s / 90.0) + 0.08 * math.sin(t_s / 23.0) + 0.02 * math.sin(t_s / 1.7)
    kind = state.kind
    if kind == DeviceKind.ELECTRICITY_METER:
        power = state.base_w * wave
        state.registers["energy_import"] = state.registers.get("energy_import", 1000.0) + power * dt_s / 3.6e6
        return {
            "energy_import": round(state.registers["energy_import"], 6),
            "energy_export": 0.0,
            "power": round(power, 1),
            "voltage": round(230 + 2 * math.sin(t_s / 5), 1),
        }
    if kind == DeviceKind.PV_INVERTER:
        power = state.base_w * (1 + 0.05 * math.sin(t_s / 3.0))
        state.registers["energy_production"] = state.registers.get("energy_production", 500.0) + power * dt_s / 3.6e6
        return {"energy_production": round(state.registers["energy_production"], 6), "power": round(power, 1)}
    if kind == DeviceKind.EV_CHARGER:
        power = state.base_w * (1 + 0.02 * math.sin(t_s))
        state.registers["session_energy"] = state.registers.get("session_energy", 3.0) + power * dt_s / 3.6e6
        return {
            "connector_status": "Charging",
            "session_id": "tx-42",
            "session_energy": round(state.registers["session_energy"], 6),
            "power": round(power, 1),
        }
    if kind == DeviceKind.HEAT_METER:
        power = state.base_w * wave
        state.registers["energy"] = state.registers.get("energy", 20000.0) + power * dt_s / 3.6e6
        return {"energy": round(state.registers["energy"], 6), "flow_temperature": 68.0, "return_temperature": 41.5}
    return {
        "temperature": round(21.5 + 0.3 * math.sin(t_s / 11), 2),
        "relative_humidity": 38.0,
        "co2": round(620 + 40 * math.sin(t_s / 13)),
        "occupancy": 12.0,
    }


BASE_W = {
    DeviceKind.ELECTRICITY_METER: 42_000.0,
    DeviceKind.PV_INVERTER: 18_500.0,
    DeviceKind.EV_CHARGER: 11_000.0,
    DeviceKind.HEAT_METER: 95_000.0,
    DeviceKind.BUILDING_SENSOR: 0.0,
}


class LiveDistrict:
    """Publishes the registry's devices every `period_s` in a thread, until `close()`."""

    def __init__(self, registry: Registry, host: str, port: int, *, period_s: float = 1.0) -> None:
        self.registry = registry
        self.period_s = period_s
        self.district = next(iter(registry.districts))
        self._states = {
            d.id: _DeviceState(
                d.kind, d.gateway, BASE_W[d.kind] * (0.3 if d.submeter_of else 1.0) * (1 - 0.2 * (i % 3))
            )
            for i, d in enumerate(registry)
        }
        self._stopped: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.published: dict[str, int] = dict.fromkeys(self._states, 0)
        self._publishers = {
            gw: Publisher(BrokerConfig(host, port, client_id=f"live-{gw}-{uuid.uuid4().hex[:6]}"), max_inflight=100)
            for gw in registry.gateways
        }
        self._thread = threading.Thread(target=self._run, name="live-district", daemon=True)

    def start(self, *, backfill_s: int = 0) -> None:
        for pub in self._publishers.values():
            pub.connect(10)
        now_ms = int(time.time() * 1000)
        if backfill_s:
            self._backfill(now_ms, backfill_s)
        self._publish_status()
        self._thread.start()

    def _backfill(self, now_ms: int, seconds: int) -> None:
        """The last `seconds` at the live rate (one batch per device), so the charts and counts have a past."""
        step_ms = int(self.period_s * 1000)
        for device_id, state in self._states.items():
            readings = []
            for i in range(seconds * 1000 // step_ms, 0, -1):
                ts = now_ms - i * step_ms
                readings.append((ts, _values(state, ts / 1000, self.period_s)))
            self._send(device_id, state, readings)

    def _send(self, device_id: str, state: _DeviceState, readings: list[tuple[int, dict[str, float | str]]]) -> None:
        device = self.registry.devices[device_id]
        payload = encode_batch(device_id, state.seq, units_for(state.kind), readings)
        state.seq += len(readings)
        self._publishers[state.gateway].publish(device.topic, payload, timeout=10)
        self.published[device_id] += len(readings)

    def send_raw(self, device_id: str, readings: list[tuple[int, dict[str, float | str]]]) -> None:
        """Publish readings as given (e.g. a NaN the ingest must quarantine)."""
        state = self._states[device_id]
        with self._lock:
            self._send(device_id, state, readings)

    def _publish_status(self) -> None:
        now_ms = int(time.time() * 1000)
        for gw, pub in self._publishers.items():
            doc = {
                "v": 1,
                "gateway": gw,
                "district": self.district,
                "state": "online",
                "version": "0.1.0",
                "ts": now_ms,
                "clock": {"sync": "synchronised", "source": "adjtimex", "jumps": 0, "last_jump_ms": 0},
                "spool": {"readings": 0, "bytes": 0, "buffered": 0, "oldest_age_s": None, "evicted": 0},
            }
            pub.publish(status_topic(self.district, gw), json.dumps(doc).encode(), retain=True, timeout=10)

    def stop_device(self, device_id: str) -> None:
        with self._lock:
            self._stopped.add(device_id)

    def _run(self) -> None:
        next_at = time.monotonic()
        last_status = time.monotonic()
        while not self._stop.is_set():
            now_ms = int(time.time() * 1000)
            with self._lock:
                for device_id, state in self._states.items():
                    if device_id not in self._stopped:
                        self._send(device_id, state, [(now_ms, _values(state, now_ms / 1000, self.period_s))])
            if time.monotonic() - last_status >= 5:
                self._publish_status()
                last_status = time.monotonic()
            next_at += self.period_s
            self._stop.wait(max(next_at - time.monotonic(), 0))

    def close(self) -> None:
        """Stop publishing, clear the retained statuses, disconnect."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for gw, pub in self._publishers.items():
            pub.publish(status_topic(self.district, gw), b"", retain=True, timeout=10)
            pub.wait_acked(10)
            pub.close()

"""MQTT-native building sensors: subscribe on a local broker (zigbee2mqtt, Shelly, Tasmota and the like
publish JSON state there), map each sensor's fields to the metrics of its device kind, check them against
`devices.kinds` and put the readings into the spool, from which the gateway publishes them like any other.

Each sensor is configured with the exact topic it publishes on and a field mapping: metric -> dotted path
into the JSON payload (`"AM2301.Temperature"`), or `"$"` for a payload that is the value itself (Shelly
Gen1 `.../sensor/temperature` = `21.50`), with an optional source unit converted to the kind's unit (degF).

Third-party payloads are untrusted: a payload that is not JSON, has none of the mapped fields, or a value
of the wrong type or outside its kind's physical range is counted (`stats`, by reason) and logged (truncated,
at WARNING on the 1st, 2nd, 4th, 8th... time per reason, so a broken sensor cannot fill the SD card); a bad
value costs only that metric, never the other metrics of the payload, and nothing a sensor sends stops the
gateway. Retained messages are skipped: they are old state replayed by the broker at every (re)subscription
and would be stamped as new readings. Readings are stamped by the gateway when they arrive.

The client uses a clean session (a sensor's state is periodic: what is missed while the gateway is down
is not worth a persistent session that outlives the gateway) and subscribes again on every reconnection.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devices.kinds import KINDS, DeviceKind, MetricSpec
from devices.secrets import SecretFileError, read_secret
from devices.tables import Bounds
from devices.topics import check_id
from gateway.adapters.base import AdapterConfig, AdapterContext, AdapterSpec, DeviceRef, ReadingSink, Value
from gateway.errors import ConfigError

log = logging.getLogger(__name__)

#: (source unit, kind unit) -> (add, multiply, divide): in the kind's unit = (value + add) * multiply / divide,
#: rounded to 6 decimals (no sensor resolves more; it keeps 68 degF at 20.0 degC, not 19.999999999999996).
CONVERSIONS: Mapping[tuple[str, str], tuple[float, float, float]] = {
    ("degF", "degC"): (-32.0, 5.0, 9.0),
    ("Wh", "kWh"): (0.0, 1.0, 1000.0),
    ("kW", "W"): (0.0, 1000.0, 1.0),
}
#: Longest payload considered; a larger one is refused before parsing (bounded memory per message).
MAX_PAYLOAD = 64 * 1024


@dataclass(frozen=True, slots=True)
class FieldConfig:
    #: Dotted path into the JSON payload ("$": the whole payload is the value).
    path: Annotated[str, Bounds(min_length=1)]
    #: The unit the sensor sends, when it is not the kind's (converted: degF -> degC, Wh -> kWh, kW -> W).
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class SensorConfig:
    device: str
    #: The exact topic(s) the sensor publishes its state on (a Shelly Plus H&T uses one per quantity).
    topic: str | list[str]
    #: metric -> a path in the payload, or {path = ..., unit = ...}.
    fields: Annotated[dict[str, str | FieldConfig], Bounds(min_length=1)]
    #: The device kind (default: the registry's, else building_sensor).
    kind: DeviceKind | None = None

    def __post_init__(self) -> None:
        check_id(self.device, "device")
        for topic in self.topics:
            if not topic or any(c in topic for c in "+#"):
                raise ValueError(f"topic {topic!r}: a sensor's topic is exact (wildcards go in `subscribe`)")

    @property
    def topics(self) -> list[str]:
        return [self.topic] if isinstance(self.topic, str) else list(self.topic)


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttSensorsConfig(AdapterConfig):
    type: Literal["mqtt_sensors"] = "mqtt_sensors"
    host: str = "127.0.0.1"
    port: Annotated[int, Bounds(ge=1, le=65535)] = 1883
    username: str | None = None
    #: The password is read from this file (relative to the config's folder): never in the config itself.
    password_file: Path | None = None
    #: Default: `districtpulse-sensors-<gateway>-<random>` (a clean session: a fixed id is not needed).
    client_id: str | None = None
    #: Topic filters to subscribe to (wildcards allowed); default: every sensor's topic.
    subscribe: list[str] | None = None
    qos: Literal[0, 1] = 1
    #: Or: a file of captured messages (JSON lines {"topic", "payload"[, "retain"]}) processed instead of
    #: subscribing, then the adapter stops: an offline check of a field mapping, and the test cases.
    messages: Path | None = None
    sensor: Annotated[list[SensorConfig], Bounds(min_length=1)]

    def __post_init__(self) -> None:
        for what, items in (
            ("device", [s.device for s in self.sensor]),
            ("topic", [t for s in self.sensor for t in s.topics]),
        ):
            twice = sorted({x for x in items if items.count(x) > 1})
            if twice:
                raise ValueError(f"a {what} appears twice: {twice}")
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs a username")


@dataclass(frozen=True, slots=True)
class _Field:
    metric: MetricSpec
    path: tuple[str, ...]
    conversion: tuple[float, float, float] | None = None


@dataclass(frozen=True, slots=True)
class Sensor:
    device: DeviceRef
    fields: tuple[_Field, ...]


class BadPayload(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _lookup(doc: Any, path: tuple[str, ...]) -> Any:
    """The value at `path` in a JSON document, or None when a level is missing."""
    for key in path:
        if isinstance(doc, dict):
            doc = doc.get(key)
        elif isinstance(doc, list) and key.isdigit() and int(key) < len(doc):
            doc = doc[int(key)]
        else:
            return None
    return doc


class Decoder:
    """Topic + payload -> (device, values) and the values rejected with their reasons (pure, no I/O)."""

    def __init__(self, sensors: Sequence[tuple[str, Sensor]]) -> None:
        self._topics = dict(sensors)

    def decode(self, topic: str, payload: bytes) -> tuple[str, dict[str, Value], list[tuple[str, str]]]:
        """(device id, good values, [(reason, detail), ...] of rejected values); BadPayload when nothing is usable."""
        sensor = self._topics.get(topic)
        if sensor is None:
            raise BadPayload("unknown_topic", f"no sensor is configured on {topic!r}")
        if len(payload) > MAX_PAYLOAD:
            raise BadPayload("too_large", f"{len(payload)} bytes")
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadPayload("bad_json", f"{exc}") from None
        values: dict[str, Value] = {}
        rejected: list[tuple[str, str]] = []
        for f in sensor.fields:
            raw = doc if f.path == ("$",) else _lookup(doc, f.path)
            if raw is None:
                continue  # a sensor sends some of its fields per message (Shelly: one per topic)
            name = f.metric.name
            if f.metric.type == "str":
                if not isinstance(raw, str):
                    rejected.append(("wrong_type", f"{name}: expected a string, got {type(raw).__name__}"))
                elif f.metric.choices is not None and raw not in f.metric.choices:
                    rejected.append(("out_of_range", f"{name}: {raw[:40]!r} is not one of its choices"))
                elif len(raw) > f.metric.max_length:
                    rejected.append(("out_of_range", f"{name}: longer than {f.metric.max_length} characters"))
                else:
                    values[name] = raw
                continue
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                rejected.append(("wrong_type", f"{name}: expected a number, got {type(raw).__name__}"))
                continue
            try:
                number = float(raw)
                if f.conversion is not None:
                    add, multiply, divide = f.conversion
                    number = round((number + add) * multiply / divide, 6)
            except (ValueError, OverflowError):
                rejected.append(("wrong_type", f"{name}: expected a number, got {str(raw)[:40]!r}"))
                continue
            if not math.isfinite(number):
                rejected.append(("non_finite", f"{name}: {number}"))
            elif not f.metric.min <= number <= f.metric.max:
                rejected.append(
                    ("out_of_range", f"{name}: {number} {f.metric.unit} outside [{f.metric.min:g}, {f.metric.max:g}]")
                )
            else:
                values[name] = number
        if not values and not rejected:
            raise BadPayload("no_mapped_field", f"none of {[f.metric.name for f in sensor.fields]} in the payload")
        return sensor.device.id, values, rejected


class MqttSensorsAdapter:
    def __init__(self, config: MqttSensorsConfig, sensors: Sequence[tuple[str, Sensor]], password: str | None) -> None:
        self.config = config
        self.decoder = Decoder(sensors)
        self._devices = tuple({s.device.id: s.device for _, s in sensors}.values())
        self._password = password
        self._filters = config.subscribe if config.subscribe is not None else [t for t, _ in sensors]
        #: messages, readings, retained_skipped, and one count per rejection reason (a fixed, small set).
        self.stats: Counter[str] = Counter()
        #: Set while connected with the subscriptions acknowledged (SUBACK), cleared when the connection drops.
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self._fatal: BaseException | None = None

    def devices(self) -> Sequence[DeviceRef]:
        return self._devices

    def _count(self, reason: str, detail: str, topic: str, payload: bytes) -> None:
        with self._lock:
            self.stats[reason] += 1
            n = self.stats[reason]
        if n & (n - 1) == 0:  # 1st, 2nd, 4th, 8th...: visible, but bounded
            log.warning(
                "mqtt_sensors: %s on %s (%d so far): %s; payload %r",
                reason,
                topic[:100],
                n,
                detail[:200],
                payload[:100],
            )

    def handle(self, topic: str, payload: bytes, sink: ReadingSink, *, retain: bool = False) -> None:
        """One message: decode, check, put. Never raises for anything the sensor sent."""
        with self._lock:
            self.stats["messages"] += 1
            if retain:
                self.stats["retained_skipped"] += 1
        if retain:
            return
        try:
            device, values, rejected = self.decoder.decode(topic, payload)
        except BadPayload as exc:
            self._count(exc.reason, str(exc), topic, payload)
            return
        for reason, detail in rejected:
            self._count(reason, detail, topic, payload)
        if values:
            sink.now_ms()  # the reading's time: the gateway stamps it as it enters the spool
            sink.put(device, values)
            with self._lock:
                self.stats["readings"] += 1

    def _replay(self, path: Path, sink: ReadingSink, stop: threading.Event) -> None:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if stop.is_set():
                    return
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                    topic, payload, retain = str(doc["topic"]), str(doc["payload"]).encode(), bool(doc.get("retain"))
                except (ValueError, KeyError, TypeError) as exc:
                    raise ConfigError(f"mqtt_sensors: {path}:{number}: not a captured message: {exc}") from exc
                self.handle(topic, payload, sink, retain=retain)

    def run(self, sink: ReadingSink, stop: threading.Event) -> None:
        if self.config.messages is not None:
            self._replay(self.config.messages, sink, stop)
            return
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id or f"districtpulse-sensors-{uuid.uuid4().hex[:12]}",
            clean_session=True,
        )
        if self.config.username is not None:
            client.username_pw_set(self.config.username, self._password)
        client.reconnect_delay_set(min_delay=1, max_delay=30)

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Properties | None) -> None:
            if reason.is_failure:
                log.warning(
                    "mqtt_sensors: broker %s:%d refused the connection: %s", self.config.host, self.config.port, reason
                )
                return
            subscriptions: list[tuple[str, int]] = [(f, self.config.qos) for f in self._filters]
            c.subscribe(subscriptions)  # again at every reconnection
            log.info(
                "mqtt_sensors: connected to %s:%d, subscribing to %s", self.config.host, self.config.port, self._filters
            )

        def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, _codes: Any, _p: Properties | None) -> None:
            self.subscribed.set()

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Properties | None) -> None:
            self.subscribed.clear()
            if not stop.is_set():
                log.warning("mqtt_sensors: lost the broker (%s); paho reconnects", reason)

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            try:
                self.handle(msg.topic, bytes(msg.payload), sink, retain=bool(msg.retain))
            except Exception as exc:  # the spool failed: fatal, raised by run() on the adapter's thread
                self._fatal = exc
                stop_reading.set()

        stop_reading = threading.Event()
        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.connect_async(self.config.host, self.config.port, keepalive=30)
        client.loop_start()
        try:
            while not stop.wait(0.2) and not stop_reading.is_set():
                pass
        finally:
            client.disconnect()
            client.loop_stop()
            self.subscribed.clear()
        # Hand the error over without keeping it: adapter -> error -> traceback -> frames -> adapter would be a
        # reference cycle holding paho's client, whose sockets the cyclic GC may then finalize unclosed.
        fatal, self._fatal = self._fatal, None
        if fatal is not None:
            try:
                raise fatal
            finally:
                del fatal


def _field(kind: DeviceKind, metric: str, spec: str | FieldConfig, device: str) -> _Field:
    ms = KINDS[kind].metrics.get(metric)
    if ms is None:
        raise ConfigError(
            f"mqtt_sensors: {device}: {metric} is not a metric of {kind.value} ({', '.join(KINDS[kind].metrics)})"
        )
    fc = spec if isinstance(spec, FieldConfig) else FieldConfig(path=spec)
    path = tuple(fc.path.split("."))
    if fc.unit is None or fc.unit == ms.unit:
        return _Field(ms, path)
    conversion = CONVERSIONS.get((fc.unit, ms.unit or ""))
    if conversion is None:
        raise ConfigError(f"mqtt_sensors: {device}: {metric}: cannot convert {fc.unit!r} to {ms.unit!r}")
    return _Field(ms, path, conversion)


def create(config: MqttSensorsConfig, context: AdapterContext) -> MqttSensorsAdapter:
    registry = {d.id: d.kind for d in context.registry_devices}
    sensors: list[tuple[str, Sensor]] = []
    for sc in config.sensor:
        kind = registry.get(sc.device)
        if registry and kind is None:
            raise ConfigError(f"mqtt_sensors: device {sc.device} is not assigned to gateway {context.gateway}")
        if kind is not None and sc.kind is not None and sc.kind is not kind:
            raise ConfigError(f"mqtt_sensors: {sc.device} is a {kind.value} in the registry, not a {sc.kind.value}")
        kind = kind or sc.kind or DeviceKind.BUILDING_SENSOR
        fields = tuple(_field(kind, metric, spec, sc.device) for metric, spec in sc.fields.items())
        sensors.extend((topic, Sensor(DeviceRef(sc.device, kind), fields)) for topic in sc.topics)
    password = None
    if config.password_file is not None:
        path = config.password_file if config.password_file.is_absolute() else context.base_dir / config.password_file
        try:
            password = read_secret(path, "mqtt_sensors: password_file")
        except SecretFileError as exc:
            raise ConfigError(str(exc)) from exc
    if config.messages is not None and not config.messages.is_absolute():
        config = replace(config, messages=context.base_dir / config.messages)
    if config.messages is not None and not config.messages.is_file():
        raise ConfigError(f"mqtt_sensors: no such file {config.messages}")
    return MqttSensorsAdapter(config, sensors, password)


SPEC = AdapterSpec("mqtt_sensors", MqttSensorsConfig, create, "MQTT-native sensors on a local broker (JSON state)")

__all__ = ["SPEC", "BadPayload", "Decoder", "MqttSensorsAdapter", "MqttSensorsConfig", "create"]

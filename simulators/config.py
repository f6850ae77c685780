"""What a simulation run is: dates, seed, sampling cadence, site climate, interventions and faults.

Everything that is not in the device registry lives here. Latitude and longitude in particular are a property
of the simulated weather (`Climate`), not of the shared registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from devices import DeviceKind
from simulators.weather import Climate

#: Every fault the simulator can inject (see `simulators.faults`), in a stable order.
FAULT_NAMES: tuple[str, ...] = (
    "disconnect",
    "duplicate",
    "out_of_order",
    "late",
    "malformed",
    "counter_glitch",
    "rollover",
    "meter_replacement",
    "clock_skew",
    "unsynced_boot",
    "nan",
    "out_of_range",
)

#: Default number of each fault per simulated day (rollover and meter replacement: per run).
DEFAULT_FAULTS_PER_DAY: Mapping[str, float] = {
    "disconnect": 1,
    "duplicate": 6,
    "out_of_order": 6,
    "late": 4,
    "malformed": 4,
    "counter_glitch": 3,
    "rollover": 1,
    "meter_replacement": 1,
    "clock_skew": 1,
    "unsynced_boot": 1,
    "nan": 3,
    "out_of_range": 3,
}
_PER_RUN = frozenset({"rollover", "meter_replacement"})


@dataclass(frozen=True, slots=True)
class Cadence:
    """How often a device is sampled and how often its gateway publishes a batch of its readings."""

    resolution_s: int = 60
    publish_interval_s: int = 900

    def __post_init__(self) -> None:
        if not 1 <= self.resolution_s <= 3600:
            raise ValueError(f"resolution must be 1 s .. 1 h, got {self.resolution_s} s")
        if self.publish_interval_s % self.resolution_s or 3600 % self.publish_interval_s:
            raise ValueError(
                f"publish interval {self.publish_interval_s} s must be a multiple of the resolution "
                f"({self.resolution_s} s) and divide one hour"
            )


@dataclass(frozen=True, slots=True)
class Intervention:
    """A retrofit from a local date on: the generator also records the counterfactual without it.

    kind "heating": space heating x `factor` (e.g. 0.7 = -30 %); "electricity": building load x `factor`;
    "pv": a PV system of `kwp` added behind the building's main meter (and, if `device` names a pv_inverter of
    the building, that inverter is this system and reports from the date on).
    """

    building: str
    start: date
    kind: Literal["heating", "electricity", "pv"]
    factor: float = 1.0
    kwp: float = 0.0
    device: str | None = None
    tilt_deg: float = 35.0
    azimuth_deg: float = 180.0

    def __post_init__(self) -> None:
        if self.kind in ("heating", "electricity") and not 0 <= self.factor <= 2:
            raise ValueError(f"intervention factor out of range: {self.factor}")
        if self.kind == "pv" and self.kwp <= 0:
            raise ValueError("a pv intervention needs kwp > 0")


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Which faults to inject and how many of each over the whole run."""

    counts: Mapping[str, int] = field(default_factory=dict)
    #: A gateway's spool holds this many messages while disconnected; beyond it the oldest are lost.
    spool_capacity: int = 100_000

    def __post_init__(self) -> None:
        unknown = set(self.counts) - set(FAULT_NAMES)
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {', '.join(FAULT_NAMES)}")

    @classmethod
    def parse(cls, spec: str, *, days: int) -> FaultConfig:
        """`"nan,late=5,all"`: a name enables a fault at its default rate, `name=N` injects N over the run."""
        counts: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, _, number = part.partition("=")
            names = FAULT_NAMES if name == "all" else (name,)
            for n in names:
                if n not in FAULT_NAMES:
                    raise ValueError(f"unknown fault {n!r}; known: {', '.join(FAULT_NAMES)}, all")
                default = DEFAULT_FAULTS_PER_DAY[n] * (1 if n in _PER_RUN else days)
                counts[n] = int(number) if number else max(1, round(default))
        return cls(counts)

    def count(self, name: str) -> int:
        return self.counts.get(name, 0)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One run: `days` local days from `start` (midnight to midnight in the district's time zone)."""

    start: date
    days: int = 1
    seed: int = 42
    cadence: Cadence = field(default_factory=Cadence)
    cadences: Mapping[DeviceKind, Cadence] = field(default_factory=dict)
    climate: Climate = field(default_factory=Climate)
    interventions: tuple[Intervention, ...] = ()
    faults: FaultConfig = field(default_factory=FaultConfig)
    #: kWp of each pv_inverter of the registry (default: 30 kWp, or 60 % of the inverter's max_power_w).
    pv_kwp: Mapping[str, float] = field(default_factory=dict)
    #: Share of household (apartment) meters with direct electric heating.
    electric_heating_share: float = 0.1
    #: Stagger each device's publish time by a stable offset within its interval, as unsynchronised
    #: gateways do; off, every device publishes exactly at the end of its interval.
    stagger: bool = False
    #: Keep every expected stored point in the truth (tests; memory grows with the run).
    truth_points: bool = False
    #: Simulated seconds between a gateway's status heartbeats; None: one per publish interval (the default
    #: cadence's), which keeps the status traffic small when a day is replayed faster than real time. A real
    #: gateway's is 60 s (`gateway.service.Timing`): `districtpulse simulate --speed X` uses 60 X (see
    #: `simulators.cli.heartbeat_s`).
    heartbeat_s: int | None = None

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError("days must be >= 1")
        if self.heartbeat_s is not None and self.heartbeat_s < 1:
            raise ValueError("heartbeat_s must be >= 1")

    def cadence_of(self, kind: DeviceKind) -> Cadence:
        return self.cadences.get(kind, self.cadence)

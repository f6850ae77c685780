"""A simulated district day: the walking skeleton's entry point, now backed by `simulators.engine`.

`DistrictSimulator(registry, day, seed=, inject_bad_readings=)` simulates one local day of every device of
the registry's first district and yields its messages in publish order. `inject_bad_readings` NaN and
out-of-range readings are injected (alternating), so ingest's quarantine shows up in the counts; the full
fault set, interventions and multi-day runs are reached through `Simulation` and `SimConfig`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from devices import Registry
from simulators.config import Cadence, FaultConfig, Intervention, SimConfig
from simulators.engine import GatewayEvent, Message, Simulation
from simulators.status import StatusEvent
from simulators.truth import Truth

__all__ = ["DistrictSimulator", "Message", "Truth", "yesterday"]


class DistrictSimulator:
    def __init__(
        self,
        registry: Registry,
        day: date,
        seed: int = 42,
        resolution_s: int = 60,
        publish_interval_s: int = 900,
        inject_bad_readings: int = 5,
        interventions: tuple[Intervention, ...] = (),
    ) -> None:
        """`interventions` may start before `day` (a retrofit in force since): the day is then simulated with it,
        consistent with a history simulated with the same interventions."""
        counts = {"nan": (inject_bad_readings + 1) // 2, "out_of_range": inject_bad_readings // 2}
        config = SimConfig(
            start=day,
            seed=seed,
            cadence=Cadence(resolution_s, publish_interval_s),
            faults=FaultConfig({k: v for k, v in counts.items() if v}),
            interventions=interventions,
        )
        self.day = day
        self.simulation = Simulation(registry, config)
        self.start_ms, self.end_ms = self.simulation.start_ms, self.simulation.end_ms

    @property
    def truth(self) -> Truth:
        return self.simulation.truth

    def messages(self) -> Iterator[Message]:
        """Every message of the day in publish order."""
        return self.simulation.messages()

    def stream(self) -> Iterator[Message | GatewayEvent | StatusEvent]:
        """The messages with each gateway's status (online, heartbeats, shutdown), for `publish_messages`:
        publishing this instead of `messages()` shows the demo's gateways on the dashboard."""
        return self.simulation.stream()


def yesterday(tz_name: str) -> date:
    return (datetime.now(UTC).astimezone(ZoneInfo(tz_name)) - timedelta(days=1)).date()

"""The status a simulated gateway publishes: the same retained topic and JSON document as `gateway.service`.

Without it the operators' dashboard (and Grafana) show every demo gateway as "unknown": the dashboard's
`dashboard.mqtt.BrokerLink` reads only `dp/v1/<district>/<gateway>/status`, and a gateway that never wrote there has
no state. The engine decides *when* a gateway says what (`StatusEvent`, in simulated time); the publisher
encodes it with `encode_status` at the moment it publishes, because the dashboard takes the age of a
retained status from its `ts` alone: a simulated day replayed faster than real time would otherwise leave
every gateway "late" (its last heartbeat stamped hours ago in simulated time). The simulated time travels
beside it as `sim_ts`.

The document is `devices.wire.encode_status`'s, as a real gateway's (a test compares the keys too), so
nothing that reads a gateway's status needs to know it is simulated; `"simulated": true` says so anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.topics import status_topic
from devices.wire import REASON_CONNECTION_LOST, REASON_SHUTDOWN
from devices.wire import encode_status as encode_wire_status
from gateway.delivery import DeliveryPolicy, Ledger

__all__ = ["REASON_CONNECTION_LOST", "REASON_SHUTDOWN", "StatusEvent", "encode_status"]
#: The `version` of a simulated gateway's status.
SIMULATOR_VERSION = "simulator"
ADAPTER = "simulator"


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """A gateway's status at simulated time `at_ms`: online (with its heartbeat figures) or offline.

    `spool_readings` / `oldest_ms` are the readings the simulated gateway holds unpublished (after an outage:
    what its spool kept) and the sample time of the oldest; `evicted` counts readings dropped by a full spool
    since the start; `published_*` what it has published so far; `clock_synced` is False while an
    `unsynced_boot` fault has its clock wrong.
    """

    gateway: str
    district: str
    at_ms: int
    state: str  # "online" | "offline"
    reason: str | None = None
    spool_readings: int = 0
    oldest_ms: int | None = None
    evicted: int = 0
    published_messages: int = 0
    published_readings: int = 0
    clock_synced: bool = True
    started_ms: int = 0

    @property
    def topic(self) -> str:
        return status_topic(self.district, self.gateway)

    @property
    def retain(self) -> bool:
        return True


def encode_status(event: StatusEvent, *, now_ms: int, with_sim_ts: bool = True) -> bytes:
    """The JSON document a real gateway would publish for this state, sent at wall-clock `now_ms`.

    A lost connection (an outage) carries only the identity, state and reason, as the real Last Will does;
    every other status (online, and the clean "shutdown") the full heartbeat (spool, clock, published counts,
    adapters), as `Gateway._publish_status` sends it, with ages measured in simulated time.
    `with_sim_ts=False` leaves out the simulated time (a Last Will, written before it is known).
    """
    heartbeat: dict[str, object] | None = None
    if not (event.state == "offline" and event.reason == REASON_CONNECTION_LOST):
        oldest = None if event.oldest_ms is None else round(max(0, event.at_ms - event.oldest_ms) / 1000, 1)
        heartbeat = {
            "ts": now_ms,
            "uptime_s": round((event.at_ms - event.started_ms) / 1000, 1),
            "clock": {
                "sync": "synchronised" if event.clock_synced else "unsynchronised",
                "source": "simulated",
                "jumps": 0,
                "last_jump_ms": 0,
            },
            "spool": {
                "readings": event.spool_readings,
                "bytes": 0,
                "buffered": 0,
                "oldest_age_s": oldest,
                "evicted": event.evicted,
                "evictions_unconfirmed": 0,  # a simulated gateway sends no eviction notices
                "counters": {},
            },
            "published": {
                "messages": event.published_messages,
                "readings": event.published_readings,
                "acked_messages": event.published_messages,
                "acked_readings": event.published_readings,
                "eviction_notices": 0,
            },
            # A simulated gateway publishes from memory and keeps nothing: what a real one deleting on PUBACK says.
            "delivery": Ledger(DeliveryPolicy(delete_on="puback")).status(0.0),
            "adapters": {ADAPTER: "running"},
        }
    extra: dict[str, object] = {"simulated": True}
    if with_sim_ts:
        extra["sim_ts"] = event.at_ms
    return encode_wire_status(
        gateway=event.gateway,
        district=event.district,
        state=event.state,
        version=SIMULATOR_VERSION,
        reason=event.reason,
        heartbeat=heartbeat,
        extra=extra,
    )

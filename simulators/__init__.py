"""Simulators: realistic district fleets with known ground truth, published as gateways publish.

- `Simulation(registry, SimConfig(...))`: seeded generators for every device kind (weather-driven
  electricity, heat, PV, EV sessions, indoor climate) with interventions, fault injection and the truth.
- `DistrictSimulator`: one day of the registry's district (the demo's entry point).
- `publish` / `publish_messages`: publish a stream as gateways do (QoS 1, bounded in flight), with each
  gateway's retained status (`simulators.status`) so that dashboards see the simulated gateways online.
- `simulators.replay`: recorded meter data (CSV) replayed through the same publishing path.
"""

from simulators.config import Cadence, FaultConfig, Intervention, SimConfig
from simulators.district import DistrictSimulator, yesterday
from simulators.engine import GatewayEvent, Message, Simulation
from simulators.publish import paced, publish_messages, write_jsonl
from simulators.status import StatusEvent, encode_status
from simulators.truth import Truth, load_truth
from simulators.weather import Climate

__all__ = [
    "Cadence",
    "Climate",
    "DistrictSimulator",
    "FaultConfig",
    "GatewayEvent",
    "Intervention",
    "Message",
    "SimConfig",
    "Simulation",
    "StatusEvent",
    "Truth",
    "encode_status",
    "load_truth",
    "paced",
    "publish_messages",
    "write_jsonl",
    "yesterday",
]

"""Simulators: realistic district fleets with known ground truth, published as gateways publish."""

from simulators.district import DistrictSimulator, Message, Truth, yesterday
from simulators.publish import paced, publish_messages, write_jsonl

__all__ = ["DistrictSimulator", "Message", "Truth", "paced", "publish_messages", "write_jsonl", "yesterday"]

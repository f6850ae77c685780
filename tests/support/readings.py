"""Readings and messages for the tests: electricity-meter readings of the registry's `<district>-em` device
(tests/data/small.toml), encoded as its gateway publishes them."""

from __future__ import annotations

from devices import encode_batch, readings_topic, units_for

T0 = 1_790_000_000_000  # 2026-09-21T14:13:20Z: in the past, after commissioning


def em_values(i: int) -> dict[str, float | str]:
    return {"energy_import": 1000.0 + i * 0.25, "energy_export": 0.0, "power": 900.0 + i, "voltage": 230.0}


def em_messages(district: str, readings: int, per_message: int, *, start: int = T0) -> list[tuple[str, bytes]]:
    """`readings` electricity-meter readings of device <district>-em, `per_message` to a message."""
    topic = readings_topic(district, f"{district}-gw1", f"{district}-em", "electricity_meter")
    units = units_for("electricity_meter")
    out = []
    for first in range(0, readings, per_message):
        n = min(per_message, readings - first)
        batch = [(start + (first + k) * 1000, em_values(first + k)) for k in range(n)]
        out.append((topic, encode_batch(f"{district}-em", first, units, batch)))
    return out

from __future__ import annotations

from collections.abc import Callable

from devices import Reading, Registry
from storage.lineprotocol import encode_readings, series_key


def test_tags_come_from_the_registry_and_fields_keep_their_types(make_registry: Callable[[str], Registry]) -> None:
    registry = make_registry("d1")
    ev = registry.devices["d1-ev"]
    readings = [
        Reading(
            ts=1_700_000_000_123,
            values={"connector_status": "Charging", "session_id": 'a "b" \\c', "session_energy": 1.5, "power": 11000.0},
        ),
        Reading(ts=1_700_000_060_123, values={"power": 1e-7}),
    ]
    lines = encode_readings(series_key(ev), readings, [41, 42])
    assert lines == [
        'ev_charging,district=d1,building=d1-b1,device=d1-ev connector_status="Charging",'
        'session_id="a \\"b\\" \\\\c",session_energy=1.5,power=11000.0,seq=41i 1700000000123',
        "ev_charging,district=d1,building=d1-b1,device=d1-ev power=1e-7,seq=42i 1700000060123",
    ]

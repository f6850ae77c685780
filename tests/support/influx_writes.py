"""Write simulated messages straight into InfluxDB exactly as ingest would (validate, then line protocol)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from devices import Reading, Registry, validate_message
from simulators import Message
from storage.influx import InfluxV1
from storage.lineprotocol import encode_readings, series_key

NOW_MS = 4_000_000_000_000  # far future: nothing counts as "in the future"


async def write_messages(
    influx: InfluxV1, registry: Registry, messages: Iterable[Message], keep: Callable[[int], bool]
) -> int:
    """Write the readings whose timestamp passes `keep`; return how many were written."""
    lines: list[str] = []
    for msg in messages:
        result = validate_message(msg.topic, msg.payload, registry, now_ms=NOW_MS)
        assert not result.rejected, result.rejected
        assert result.device is not None
        chosen: list[tuple[Reading, int]] = [
            (r, s) for r, s in zip(result.good, result.seqs, strict=True) if keep(r.ts)
        ]
        lines += encode_readings(series_key(result.device), [r for r, _ in chosen], [s for _, s in chosen])
    for i in range(0, len(lines), 5000):
        await influx.write("\n".join(lines[i : i + 5000]).encode())
    return len(lines)

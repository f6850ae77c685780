"""The confirmer sends a gateway's ranges in one document once its burst went quiet, at the latest
`max_delay_s` after the first range; gateways are independent."""

from __future__ import annotations

import json

from ingest.confirm import Confirmer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def confirmer(clock: Clock, sent: list[tuple[str, dict[str, object]]]) -> Confirmer:
    def publish(topic: str, doc: bytes) -> bool:
        sent.append((topic, json.loads(doc)["confirmed"]))
        return True

    return Confirmer(publish, by="ingest", delay_s=0.25, max_delay_s=1.0, clock=clock, wall_ms=lambda: 0)


def test_a_burst_settled_over_longer_than_the_delay_leaves_in_one_document() -> None:
    clock, sent = Clock(), []
    c = confirmer(clock, sent)
    for i in range(6):  # a range every 0.1 s for 0.5 s: never quiet for 0.25 s
        clock.now = i * 0.1
        c.add(("d1", "gw1", f"m{i}", 0, 9))
        assert c.flush() == 0
    assert c.next_due() == 0.5 + 0.25
    clock.now = 0.74
    assert c.flush() == 0
    clock.now = 0.75
    assert c.flush() == 1
    assert sent == [("dp/v1/d1/gw1/confirm", {f"m{i}": [[0, 9]] for i in range(6)})]
    assert c.pending_ranges == 0 and c.next_due() is None


def test_a_burst_that_never_goes_quiet_still_leaves_after_the_maximum_delay() -> None:
    clock, sent = Clock(), []
    c = confirmer(clock, sent)
    for i in range(12):  # a range every 0.1 s for 1.1 s
        clock.now = i * 0.1
        c.add(("d1", "gw1", "m", i * 10, i * 10 + 9))
        c.flush()
    assert sent == [("dp/v1/d1/gw1/confirm", {"m": [[0, 109]]})]  # at 1.0 s: ranges 0..10, merged
    assert c.pending_ranges == 1  # the one that came at 1.1 s waits for its own document


def test_gateways_are_confirmed_independently() -> None:
    clock, sent = Clock(), []
    c = confirmer(clock, sent)
    c.add(("d1", "gw1", "a", 0, 0))
    clock.now = 0.2
    c.add(("d1", "gw2", "b", 5, 6))
    clock.now = 0.25
    assert c.flush() == 1
    assert sent == [("dp/v1/d1/gw1/confirm", {"a": [[0, 0]]})]
    clock.now = 0.45
    assert c.flush() == 1 and sent[-1] == ("dp/v1/d1/gw2/confirm", {"b": [[5, 6]]})

"""The delivery ledger on its own: when a published message is forgotten, published again, and how long it
waits; what the bounds say. Time is passed in, so every deadline is exact (jitter fixed at 1.0)."""

from __future__ import annotations

import random

import pytest

from gateway.delivery import DeliveryPolicy, Ledger

POLICY = DeliveryPolicy(timeout_s=10.0, timeout_max_s=40.0, retry_min_s=1.0, max_unconfirmed_readings=100)


class NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2  # the middle of the ±20 % range: the nominal wait


def ledger(policy: DeliveryPolicy = POLICY) -> Ledger:
    return Ledger(policy, rng=NoJitter())


def test_a_confirmed_message_is_forgotten_and_never_published_again() -> None:
    led = ledger()
    led.sent(1, "m", 0, 9, 100, now=0.0)
    assert led.puback(1, 0, 0.1) is not None
    led.confirmed("m", 0, 9, 0.5)
    assert (led.unconfirmed_readings, led.inflight_bytes, led.counts.confirmed_readings) == (0, 0, 10)
    assert led.take_due(1000.0, 10) == []
    assert led.latency() == {"p50": 0.5, "p99": 0.5, "max": 0.5, "samples": 1}


def test_an_unconfirmed_message_is_due_after_the_timeout_which_doubles_up_to_the_max() -> None:
    led = ledger()
    led.sent(1, "m", 0, 9, 100, now=0.0)
    led.puback(1, 0, 0.0)
    assert led.take_due(9.99, 10) == []
    (due,) = led.take_due(10.0, 10)
    assert (due.device, due.first, due.last, due.attempts) == ("m", 0, 9, 1)
    waits = []
    now, attempts = 10.0, 1
    for mid in range(2, 7):  # published again each time it is due: 20, 40, 40, 40 s (the max), ...
        attempts += 1
        led.sent(mid, "m", 0, 9, 100, attempts=attempts, now=now)
        led.puback(mid, 0, now)
        due_at = led.next_due()
        assert due_at is not None
        wait = due_at - now
        waits.append(wait)
        now += wait
        assert len(led.take_due(now, 10)) == 1
    assert waits == [20.0, 40.0, 40.0, 40.0, 40.0]
    assert led.counts.republished_messages == 5 and led.counts.republished_readings == 50


@pytest.mark.parametrize("code", [0x10, 0x87, 0x97])
def test_a_message_the_broker_did_not_take_is_kept_counted_and_retried_sooner(code: int) -> None:
    led = ledger()
    led.sent(1, "m", 0, 4, 50, now=0.0)
    assert led.puback(1, code, 0.0) is None  # nothing to delete, ever
    assert led.counts.puback_reasons == {code: 1}
    assert led.unconfirmed_readings == 5 and led.inflight_bytes == 0
    assert led.take_due(0.99, 10) == []
    assert [e.first for e in led.take_due(1.0, 10)] == [0]


def test_a_confirmation_before_the_puback_frees_the_bytes_only_when_the_puback_comes() -> None:
    led = ledger()
    led.sent(7, "m", 0, 4, 50, now=0.0)
    led.confirmed("m", 0, 4, 0.2)
    assert (led.unconfirmed_readings, led.inflight_bytes, led.awaiting_puback) == (0, 50, 1)
    led.puback(7, 0, 0.3)
    assert (led.inflight_bytes, led.awaiting_puback) == (0, 0)
    assert led.take_due(1000.0, 10) == []


def test_a_range_covering_part_of_a_message_keeps_it_until_its_retry() -> None:
    led = ledger()
    led.sent(1, "m", 0, 9, 100, now=0.0)
    led.sent(2, "m", 10, 19, 100, now=0.0)
    led.puback(1, 0, 0.0)
    led.puback(2, 0, 0.0)
    led.confirmed("m", 0, 14, 1.0)  # all of the first message, half of the second
    assert led.unconfirmed_readings == 10
    assert [(e.first, e.last) for e in led.take_due(11.0, 10)] == [(10, 19)]


def test_the_first_confirmation_after_a_silence_brings_long_waits_forward() -> None:
    led = ledger()
    led.sent(1, "a", 0, 0, 10, attempts=3, now=0.0)  # third attempt: waits 40 s
    led.puback(1, 0, 0.0)
    assert led.next_due() == 40.0
    led.sent(2, "b", 0, 0, 10, now=5.0)
    led.confirmed("b", 0, 0, 5.0)  # ingest is back: the retry of "a" comes at 5 + 10 s
    assert led.take_due(14.9, 10) == []
    assert [e.device for e in led.take_due(15.0, 10)] == ["a"]


def test_room_is_bounded_by_unconfirmed_readings() -> None:
    led = ledger()
    led.sent(1, "m", 0, 98, 10, now=0.0)
    assert led.has_room()
    led.sent(2, "m", 99, 99, 10, now=0.0)
    assert not led.has_room()
    led.confirmed("m", 0, 98, 1.0)
    assert led.has_room()


def test_puback_mode_forgets_on_a_successful_puback_only() -> None:
    led = ledger(DeliveryPolicy(delete_on="puback", timeout_s=10.0, timeout_max_s=40.0, retry_min_s=1.0))
    led.sent(1, "m", 0, 4, 50, now=0.0)
    led.sent(2, "m", 5, 9, 50, now=0.0)
    assert led.puback(1, 0, 0.0) is not None
    assert led.puback(2, 0x10, 0.0) is None
    assert led.unconfirmed_readings == 5
    assert [e.first for e in led.take_due(1.0, 10)] == [5]


def test_the_next_deadline_is_that_of_a_message_still_waiting() -> None:
    """A confirmed message's old deadline must not wake the gateway (it did, 30 s after every message, and the
    wake published whatever new readings had come: a confirmation document a second instead of one per
    publish interval, measured by benchmarks/confirm_latency.py)."""
    led = ledger()
    led.sent(1, "m", 0, 9, 100, now=0.0)
    led.sent(2, "m", 10, 19, 100, now=0.0)
    led.puback(1, 0, 0.0)  # due at 10 s
    led.puback(2, 0, 5.0)  # due at 15 s
    assert led.next_due() == 10.0
    led.confirmed("m", 0, 9, 1.0)
    assert led.next_due() == 11.0  # the second's, brought forward by the first confirmation (1 s + timeout)
    led.confirmed("m", 10, 19, 2.0)
    assert led.next_due() is None
    assert led.take_due(1000.0, 10) == []

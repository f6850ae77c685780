"""`aggregation.completeness.account` against accounts worked out by hand from explicit sets of seqs."""

from __future__ import annotations

import random

import pytest

from aggregation.completeness import SeqAccount, SeqSpan, account, accounts, total


def span(seqs: set[int]) -> SeqSpan | None:
    return SeqSpan(len(seqs), min(seqs), max(seqs)) if seqs else None


def by_hand(issued: range, stored: set[int], quarantined: set[int], evicted: set[int]) -> SeqAccount:
    """The reference: every seq of the period classified once, stored before quarantined before evicted."""
    q = quarantined - stored
    e = evicted - stored - q
    return SeqAccount(len(issued), len(stored), len(q), len(e), len(issued) - len(stored) - len(q) - len(e))


def test_nothing_issued_is_an_empty_account() -> None:
    assert account(None) == SeqAccount() and SeqAccount().completeness is None


def test_gaps_are_lost_unless_quarantined_or_evicted() -> None:
    stored = {0, 1, 2, 5, 9}
    got = account(span(stored), span({3}), span({6, 7}), before=None)
    assert got == SeqAccount(issued=10, stored=5, quarantined=1, evicted=2, lost=2)  # 4 and 8 lost
    assert got.completeness == 0.5


def test_the_seq_before_the_period_opens_its_first_gap_and_an_unstored_run_may_close_it() -> None:
    assert account(span({10, 11}), before=6) == SeqAccount(5, 2, 0, 0, 3)  # 7, 8, 9 lost
    assert account(span({10, 11}), evicted=span({12, 13, 14}), before=9) == SeqAccount(5, 2, 0, 3, 0)
    assert account(span({10}), before=42) == SeqAccount(1, 1, 0, 0, 0)  # a seq counter that went back: no gap


def test_a_reading_stored_and_reported_evicted_counts_once_as_stored() -> None:
    assert account(span({0, 1, 2, 3}), evicted=span({2, 3})) == SeqAccount(4, 4, 0, 0, 0)


@pytest.mark.parametrize("seed", range(30))
def test_random_periods_match_the_reference_when_the_sets_are_disjoint(seed: int) -> None:
    rng = random.Random(seed)
    before = rng.choice([None, rng.randrange(0, 50)])
    first = 0 if before is None else before + 1
    issued = range(first, first + rng.randrange(1, 200))
    fate = {s: rng.choice("sssssqel") for s in issued}
    # the period's first seq is known (stored or unstored) when there is no anchor before it
    if before is None:
        fate[first] = "s"
    fate[issued[-1]] = rng.choice("sqe")  # and its last, or nothing tells it was issued
    sets = {k: {s for s, f in fate.items() if f == k} for k in "sqe"}
    got = account(span(sets["s"]), span(sets["q"]), span(sets["e"]), before)
    assert got == by_hand(issued, sets["s"], sets["q"], sets["e"])


def test_accounts_and_total_over_devices() -> None:
    found = accounts({"a": SeqSpan(3, 0, 3)}, {"b": SeqSpan(1, 7, 7)}, {}, {"b": 5})
    assert found == {"a": SeqAccount(4, 3, 0, 0, 1), "b": SeqAccount(2, 0, 1, 0, 1)}
    assert total(found.values()) == SeqAccount(6, 3, 1, 0, 2)

"""Every entry of the comparison table against its reference: random NaN-laced, empty, single-element, small
and large inputs (the same table drives ``benchmarks/aggregation_speed.py``)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from aggregation.comparisons import COMPARISONS, Comparison

SIZES = [0, 1, 2, 17, 1_000, 200_000]


@pytest.mark.parametrize("name", COMPARISONS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference(name: str, size: int, seed: int) -> None:
    comparison: Comparison = COMPARISONS[name]
    inputs = comparison.make(np.random.default_rng([seed, size]), size)
    fast = comparison.fast(**inputs)
    ref = comparison.reference(**inputs)
    assert len(fast) == len(ref)
    for got, expected in zip(fast, ref, strict=True):
        assert got.shape == expected.shape
        if got.dtype.kind in "iu":
            assert_array_equal(got, expected.astype(got.dtype))
        else:
            assert_allclose(got, expected, rtol=comparison.rtol, atol=comparison.atol, equal_nan=True)


@pytest.mark.parametrize("name", COMPARISONS)
def test_inputs_are_not_trivial(name: str) -> None:
    """The generators exercise NaN handling and produce non-zero results (a test that cannot fail is no test)."""
    comparison = COMPARISONS[name]
    inputs = comparison.make(np.random.default_rng(7), 5_000)
    assert any(np.isnan(v).any() for v in inputs.values() if isinstance(v, np.ndarray) and v.dtype.kind == "f")
    first = comparison.fast(**inputs)[0]
    assert np.nansum(np.abs(first)) > 0

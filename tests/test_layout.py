"""The test tree's own rule: pytest imports test modules by basename (no packages), so two test files with the same
name in different rooms break collection of the whole suite. This keeps that from landing again."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).parent


def test_test_module_basenames_are_unique() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []

"""Fuzzing the decoders that take bytes from outside: `python -m tests.fuzz` (`make fuzz`: 1,000,000 inputs
per decoder) and its short version in the test suite (tests/fuzz/test_fuzz_short.py)."""

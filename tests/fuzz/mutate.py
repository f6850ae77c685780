"""A small structure-aware mutator: valid seeds from the project's own test cases and samples, mutated as
bytes (flips, cuts, inserts, splices) and, where a seed is JSON, as a document (a value replaced by a hostile
one, a key dropped or doubled, a level nested). Seeded, so a finding is reproduced by its seed and index.

Why not hypothesis here: it makes about 1-3 thousand examples a second (shrinking, database, strategies),
which puts 1,000,000 inputs per decoder at several minutes before the decoder runs; the decoders'
property tests (tests/ingest/test_fastpath.py ...) keep hypothesis. This mutator makes 50-100 thousand
inputs a second; the runner prints both rates.
"""

from __future__ import annotations

import json
import random
from typing import Any

HOSTILE_VALUES: tuple[Any, ...] = (
    float("nan"),
    float("inf"),
    float("-inf"),
    -0.0,
    1e308,
    -1e308,
    2**63,
    -(2**63) - 1,
    2**64,
    10**30,
    0,
    -1,
    None,
    True,
    False,
    "",
    "x" * 5000,
    "\u0000",
    "\ud800",
    "é🙂",
    [],
    {},
    [[[[[[]]]]]],
    {"a": {"b": {"c": {}}}},
    "NaN",
    "1e999",
    "-0",
    "Infinity",
)
TOKENS = (
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e309",
    b"-0",
    b"null",
    b"true",
    b'"',
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"\xff",
    b"\xc3",
    b"[" * 64,
    b"{" * 64,
    b"9" * 400,
    b",",
    b":",
    b"}",
    b"]",
    b"\x00",
)


def _json_mutation(rng: random.Random, doc: Any, depth: int = 0) -> Any:
    """`doc` with one change somewhere in it."""
    if isinstance(doc, dict) and doc and depth < 6 and rng.random() < 0.7:
        key = rng.choice(list(doc))
        choice = rng.random()
        if choice < 0.15:
            return {k: v for k, v in doc.items() if k != key}
        if choice < 0.25:
            return {**doc, rng.choice(["extra", key + "_", "", "\u0000"]): rng.choice(HOSTILE_VALUES)}
        return {**doc, key: _json_mutation(rng, doc[key], depth + 1)}
    if isinstance(doc, list) and doc and depth < 6 and rng.random() < 0.7:
        i = rng.randrange(len(doc))
        choice = rng.random()
        if choice < 0.15:
            return doc[:i] + doc[i + 1 :]
        if choice < 0.3:
            return [*doc, *doc[: rng.randint(1, 3)]]
        return [*doc[:i], _json_mutation(rng, doc[i], depth + 1), *doc[i + 1 :]]
    if rng.random() < 0.2:
        return [doc]  # a level of nesting where a scalar was
    if isinstance(doc, int | float) and not isinstance(doc, bool) and rng.random() < 0.4:
        return rng.choice([doc + 1, doc - 1, doc * -1, doc * 1e6, doc * 1e300])
    return rng.choice(HOSTILE_VALUES)


def _bytes_mutation(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        pos = rng.randint(0, len(buf))
        if op < 0.25 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op < 0.4:
            del buf[pos : pos + rng.randint(1, 16)]
        elif op < 0.6:
            buf[pos:pos] = rng.choice(TOKENS)
        elif op < 0.7:
            del buf[pos:]
        elif op < 0.85 and corpus:
            other = rng.choice(corpus)
            start = rng.randint(0, len(other))
            buf[pos:pos] = other[start : start + rng.randint(1, 64)]
        else:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(buf)


class Mutator:
    def __init__(self, seeds: list[bytes], seed: int) -> None:
        if not seeds:
            raise ValueError("a mutator needs at least one seed input")
        self.rng = random.Random(seed)
        self.seeds = seeds
        self.docs = []
        for s in seeds:
            try:
                self.docs.append(json.loads(s))
            except ValueError:
                self.docs.append(None)

    def next(self) -> bytes:
        rng = self.rng
        i = rng.randrange(len(self.seeds))
        roll = rng.random()
        if roll < 0.05:
            return self.seeds[i]  # the valid seed itself: the accepting paths stay exercised
        doc = self.docs[i]
        if doc is not None and roll < 0.6:
            mutated = doc
            for _ in range(rng.randint(1, 3)):
                mutated = _json_mutation(rng, mutated)
            try:
                text = json.dumps(mutated, allow_nan=True, ensure_ascii=rng.random() < 0.5)
            except (ValueError, RecursionError):
                return self.seeds[i]
            return text.encode("utf-8", "surrogatepass")
        return _bytes_mutation(rng, self.seeds[i], self.seeds)

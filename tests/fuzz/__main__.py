"""`python -m tests.fuzz [--target NAME ...] [--inputs N] [--seed S]`: mutate each target's seeds N times,
run its decoder on every input, and print per target: inputs, seconds, inputs/s, outcomes by reason, the
slowest input, findings. A finding (an exception that is not the decoder's rejection, a reason outside its
codes, the fast path disagreeing with the validator, or an input slower than `--slow-ms`) is written to
`.fuzz-findings/<target>-<seed>-<index>.bin` and makes the exit code 1."""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

from tests.fuzz.mutate import Mutator
from tests.fuzz.targets import TARGETS, Target


def fuzz(target: Target, inputs: int, seed: int, slow_ms: float, findings_dir: Path | None) -> dict[str, object]:
    mutator = Mutator(target.seeds(), seed)
    outcomes: Counter[str] = Counter()
    findings: list[str] = []
    slowest = (0.0, -1)
    t0 = time.perf_counter()
    for index in range(inputs):
        data = mutator.next()
        started = time.perf_counter()
        try:
            outcomes[target.run(data)] += 1
        except Exception as exc:
            findings.append(f"#{index}: {type(exc).__name__}: {str(exc)[:200]}")
            if findings_dir is not None:
                findings_dir.mkdir(exist_ok=True)
                (findings_dir / f"{target.name}-{seed}-{index}.bin").write_bytes(data)
                (findings_dir / f"{target.name}-{seed}-{index}.txt").write_text(traceback.format_exc())
        took = time.perf_counter() - started
        if took > slowest[0]:
            slowest = (took, index)
        if took * 1000 > slow_ms:
            findings.append(f"#{index}: took {took * 1000:.0f} ms (> {slow_ms:g} ms)")
    seconds = time.perf_counter() - t0
    return {
        "target": target.name,
        "inputs": inputs,
        "seconds": round(seconds, 1),
        "inputs_per_s": round(inputs / seconds) if seconds else None,
        "outcomes": dict(outcomes.most_common()),
        "slowest_ms": round(slowest[0] * 1000, 2),
        "findings": findings[:20],
        "finding_count": len(findings),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("--target", action="append", choices=sorted(TARGETS), help="default: every target")
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--slow-ms", type=float, default=1000.0, help="an input slower than this is a finding (a hang)")
    parser.add_argument("--findings", type=Path, default=Path(".fuzz-findings"))
    args = parser.parse_args(argv)
    failed = False
    for name in args.target or sorted(TARGETS):
        result = fuzz(TARGETS[name], args.inputs, args.seed, args.slow_ms, args.findings)
        print(json.dumps(result), flush=True)
        failed = failed or bool(result["finding_count"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

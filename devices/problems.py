"""One way to say what is wrong with a configuration file: every invalid field, dotted path and message."""

from __future__ import annotations

from pydantic import ValidationError


def describe(exc: ValidationError) -> str:
    """`a.b: message; c: message` for every error of a pydantic validation (config, registry, adapters)."""
    return "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False))

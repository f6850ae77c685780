"""TOML tables into frozen dataclasses, with the standard library only.

Why not pydantic: on a Raspberry Pi the gateway's memory is the budget (issue 4: 40 MB of peak RSS), and
importing pydantic costs about 12 MB before a single model exists. A gateway's configuration is a few small
tables read once at start-up, so a loader that reads the dataclass field annotations is enough:

    @dataclass(frozen=True, slots=True)
    class Spool:
        path: Path = Path("spool.sqlite")
        commit_interval_ms: Annotated[int, Bounds(ge=1, le=60_000)] = 200
        synchronous: Literal["NORMAL", "FULL"] = "FULL"

    spool = load(Spool, tomllib.loads(text)["spool"])

Supported annotations: str, int (a bool is refused: TOML `true` is not a count), float (an integer is
accepted and converted), bool, Path (from a string), datetime and date (as tomllib gives them; a date-time
is not a date), Literal[...], Enum subclasses (by value), `X | None` and other unions (the first arm that
accepts the value wins), list[X], tuple[X, ...], dict[str, X] and dict[int, X] (TOML keys are strings:
converted), nested dataclasses, Any; bounds with `Annotated[T, Bounds(...)]` and any check with
`Annotated[T, Check(fn)]` (fn raises ValueError). Defaults and default factories are the dataclass's own.

Unknown keys and missing required keys are errors (a typo in a bound must not silently fall back to a
default). A dataclass's `__post_init__` may raise ValueError for a cross-field rule; it runs only when the
table's own fields are valid, and its message is reported at the table's location. Every problem of the
whole table is collected and raised at once as one `TableError` whose message reads like
`devices.problems.describe` gives for pydantic: `spool.max_bytes: must be >= 65536 (got 1); adapter: field
required`, list indexes as numbers.
"""

from __future__ import annotations

import dataclasses
import enum
import operator
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
Loc = tuple[str | int, ...]

_MISSING: Any = object()  # a conversion that failed (its problems are recorded)


@dataclass(frozen=True, slots=True)
class Bounds:
    """Limits on a number (`ge`, `gt`, `le`, `lt`) or on the length of a string, list or table."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    min_length: int | None = None
    max_length: int | None = None


@dataclass(frozen=True, slots=True)
class Check:
    """A check of a converted value: `fn(value)` raises ValueError with the message to report."""

    fn: Callable[[Any], object]


class TableError(ValueError):
    """A table does not fit its dataclass; `problems` holds every (location, message), in table order."""

    #: problems spelled out in the message; the rest are counted (a wrong key in a generated registry of
    #: 17,500 devices must not make a message of megabytes). `problems` keeps them all.
    MAX_SHOWN = 10

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        shown = [f"{where}: {message}" if where else message for where, message in problems[: self.MAX_SHOWN]]
        if len(problems) > self.MAX_SHOWN:
            shown.append(f"and {len(problems) - self.MAX_SHOWN} more problems")
        super().__init__("; ".join(shown))
        self.problems = tuple(problems)


def load(cls: type[T], table: Mapping[str, Any], where: str = "") -> T:
    """Build `cls` (a dataclass) from `table`; raises TableError with every problem, located under `where`."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    problems: list[tuple[Loc, str]] = []
    root: Loc = (where,) if where else ()
    value = _convert(cls, table, root, problems)
    if problems:
        raise TableError([(".".join(str(p) for p in loc), message) for loc, message in problems])
    result: T = value
    return result


def load_toml(cls: type[T], text: str) -> T:
    """`load` of a whole TOML document: TableError also when the text is not TOML (the caller names the file)."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TableError([("", f"not valid TOML: {exc}")]) from exc
    return load(cls, table)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_NAMES: dict[object, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    Path: "a path (a string)",
    datetime: "a date-time",
    date: "a date (YYYY-MM-DD)",
    list: "a list",
    tuple: "a list",
    dict: "a table",
}


_HINTS: dict[type, dict[str, Any]] = {}  # one entry per dataclass the program defines: bounded


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls, include_extras=True)
    return hints


def _convert(tp: Any, value: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    """`value` converted to `tp`, or _MISSING with the reasons appended to `problems`."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(tp)
        result = _convert(base, value, loc, problems)
        if result is _MISSING:
            return _MISSING
        for item in meta:
            message = _check(item, result)
            if message is not None:
                problems.append((loc, message))
                return _MISSING
        return result
    if tp is Any or tp is object:
        return value
    if origin is typing.Union or origin is types.UnionType:
        return _union(typing.get_args(tp), value, loc, problems)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if any(value == c and type(value) is type(c) for c in choices):
            return value
        problems.append((loc, f"must be one of {', '.join(repr(c) for c in choices)}"))
        return _MISSING
    if origin is list or (origin is tuple and typing.get_args(tp)[1:] == (...,)):
        if not isinstance(value, list | tuple):
            problems.append((loc, f"expected a list, got {_show(value)}"))
            return _MISSING
        (item_tp, *_) = typing.get_args(tp)
        items = [_convert(item_tp, item, (*loc, i), problems) for i, item in enumerate(value)]
        return _MISSING if _MISSING in items else origin(items)
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, Mapping):
            problems.append((loc, f"expected a table, got {_show(value)}"))
            return _MISSING
        out: dict[Any, Any] = {}
        failed = False
        for key, item in value.items():
            k = _key(key_tp, key, (*loc, key), problems)
            v = _convert(value_tp, item, (*loc, key), problems)
            failed = failed or k is _MISSING or v is _MISSING
            out[k] = v
        return _MISSING if failed else out
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass(tp, value, loc, problems)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        try:
            return tp(value)
        except ValueError:
            problems.append((loc, f"must be one of {', '.join(repr(m.value) for m in tp)}"))
            return _MISSING
    return _scalar(tp, value, loc, problems)


def _scalar(tp: Any, value: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:  # an integer of hundreds of digits (found by tests/fuzz)
                problems.append((loc, "number too large"))
                return _MISSING
        ok = isinstance(value, float)
    elif tp is str:
        ok = isinstance(value, str)
    elif tp is Path:
        if isinstance(value, Path):
            return value
        if isinstance(value, str) and value:
            return Path(value)
        ok = False
    elif tp is datetime:
        ok = isinstance(value, datetime)
    elif tp is date:
        if isinstance(value, datetime):  # it would silently become its date in some zone
            problems.append((loc, "expected a local date (YYYY-MM-DD), not a date-time"))
            return _MISSING
        ok = isinstance(value, date)
    else:
        raise TypeError(f"devices.tables cannot load {tp!r}")
    if ok:
        return value
    problems.append((loc, f"expected {_TYPE_NAMES[tp]}, got {_show(value)}"))
    return _MISSING


def _key(tp: Any, key: str, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    """A table key as `tp`: TOML keys are strings, so an integer key is parsed from its digits."""
    base = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp
    if base is int and isinstance(key, str):
        try:
            key = int(key)  # type: ignore[assignment]
        except ValueError:
            problems.append((loc, f"expected an integer key, got {_show(key)}"))
            return _MISSING
    return _convert(tp, key, loc, problems)


def _union(arms: tuple[Any, ...], value: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    if value is None and type(None) in arms:
        return None
    candidates = [a for a in arms if a is not type(None)]
    reports: list[list[tuple[Loc, str]]] = []
    for arm in candidates:
        scratch: list[tuple[Loc, str]] = []
        result = _convert(arm, value, loc, scratch)
        if result is not _MISSING:
            return result
        reports.append(scratch)
    # Report the arm the value was meant for: the only arm, or the only one of the value's shape (a table
    # for a dataclass or dict, a list for a list: its inner problems); otherwise say which types were expected.
    shape = _shape(value)
    shaped = [r for a, r in zip(candidates, reports, strict=True) if shape != "scalar" and _shape(a) == shape]
    if len(candidates) == 1 or len(shaped) == 1:
        problems.extend(reports[0] if len(candidates) == 1 else shaped[0])
        return _MISSING
    names = " or ".join(_name(a) for a in candidates)
    problems.append((loc, f"expected {names}, got {_show(value)}"))
    return _MISSING


def _shape(tp_or_value: Any) -> str:
    tp = tp_or_value
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    origin = typing.get_origin(tp) or tp
    if isinstance(tp_or_value, Mapping) or origin is dict or (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
        return "table"
    if isinstance(tp_or_value, list | tuple) or origin in (list, tuple):
        return "list"
    return "scalar"


def _name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    origin = typing.get_origin(tp) or tp
    if origin in _TYPE_NAMES:
        return _TYPE_NAMES[origin]
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return "a table"
    return repr(tp)


def _check(item: object, value: Any) -> str | None:
    """The message of the first bound or check `value` fails, else None."""
    if isinstance(item, Check):
        try:
            item.fn(value)
        except ValueError as exc:
            return str(exc)
        return None
    if not isinstance(item, Bounds):
        return None
    for bound, op, ok in (
        (item.gt, ">", operator.gt),
        (item.ge, ">=", operator.ge),
        (item.lt, "<", operator.lt),
        (item.le, "<=", operator.le),
    ):
        if bound is not None and not ok(value, bound):
            return f"must be {op} {bound} (got {value})"
    if item.min_length is not None or item.max_length is not None:
        size = len(value)
        unit = "character" if isinstance(value, str) else "item"
        if item.min_length is not None and size < item.min_length:
            plural = "" if item.min_length == 1 else "s"
            return f"must have at least {item.min_length} {unit}{plural} (got {size})"
        if item.max_length is not None and size > item.max_length:
            plural = "" if item.max_length == 1 else "s"
            return f"must have at most {item.max_length} {unit}{plural} (got {size})"
    return None


def _dataclass(cls: type, value: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    if not isinstance(value, Mapping):
        problems.append((loc, f"expected a table, got {_show(value)}"))
        return _MISSING
    hints = _hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = {f.name for f in fields}
    before = len(problems)
    kwargs: dict[str, Any] = {}
    for f in fields:
        if f.name in value:
            kwargs[f.name] = _convert(hints[f.name], value[f.name], (*loc, f.name), problems)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append(((*loc, f.name), "field required"))
    allowed = ", ".join(f.name for f in fields)
    problems.extend(((*loc, key), f"unknown key (allowed: {allowed})") for key in value if key not in names)
    if len(problems) > before:
        return _MISSING
    build: Callable[..., Any] = cls
    try:
        return build(**kwargs)
    except ValueError as exc:  # __post_init__: a rule across fields, reported at the table
        problems.append((loc, str(exc)))
        return _MISSING


__all__ = ["Bounds", "Check", "TableError", "load"]

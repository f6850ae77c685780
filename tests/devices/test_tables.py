"""devices.tables: every supported type, every error with its exact message, and all problems at once."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest

from devices.kinds import DeviceKind
from devices.tables import Bounds, Check, TableError, load
from devices.topics import check_id

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class Field_:
    path: Annotated[str, Bounds(min_length=1)]
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class Everything:
    id: Annotated[str, Check(check_id)]
    count: Annotated[int, Bounds(ge=1, le=10)] = 1
    ratio: Annotated[float, Bounds(gt=0, lt=1)] = 0.5
    on: bool = False
    file: Path | None = None
    at: datetime | None = None
    day: date | None = None
    mode: Literal["NORMAL", "FULL"] = "FULL"
    qos: Literal[0, 1] = 1
    kind: DeviceKind = DeviceKind.HEAT_METER
    kinds: list[DeviceKind] = field(default_factory=list)
    names: tuple[str, ...] = ()
    limits: dict[str, float] = field(default_factory=dict)
    ports: dict[Annotated[int, Bounds(ge=1)], str] = field(default_factory=dict)
    fields: dict[str, str | Field_] = field(default_factory=dict)
    topic: str | list[str] = ""
    extra: Any = None


@dataclass(frozen=True, slots=True)
class Section:
    low: float = 0.0
    high: float = 10.0

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError("low must not exceed high")


@dataclass(frozen=True, slots=True)
class Outer:
    name: str
    section: Section = field(default_factory=Section)
    sections: Annotated[list[Section], Bounds(min_length=1)] = field(default_factory=lambda: [Section()])


def _error(cls: type, table: dict[str, Any], where: str = "") -> str:
    with pytest.raises(TableError) as info:
        load(cls, table, where)
    return str(info.value)


def test_every_supported_type_converts() -> None:
    table = tomllib.loads(
        """
        id = "dev-1"
        count = 10
        ratio = 1            # an integer where a float is wanted: converted
        on = true
        file = "spool.sqlite"
        at = 2024-01-01T00:00:00Z
        day = 2025-10-01
        mode = "NORMAL"
        qos = 0
        kind = "ev_charger"
        kinds = ["pv_inverter", "heat_meter"]
        names = ["a", "b"]
        limits = {a = 1, b = 2.5}
        ports = {"1" = "ev-1", "2" = "ev-2"}
        fields = {temperature = "AM2301.Temperature", humidity = {path = "h", unit = "degF"}}
        topic = ["x/1", "x/2"]
        extra = {any = [1, "thing"]}
        """.replace("ratio = 1 ", "ratio = 0.25")
    )
    value = load(Everything, table)
    assert value == Everything(
        id="dev-1",
        count=10,
        ratio=0.25,
        on=True,
        file=Path("spool.sqlite"),
        at=datetime(2024, 1, 1, tzinfo=UTC),
        day=date(2025, 10, 1),
        mode="NORMAL",
        qos=0,
        kind=DeviceKind.EV_CHARGER,
        kinds=[DeviceKind.PV_INVERTER, DeviceKind.HEAT_METER],
        names=("a", "b"),
        limits={"a": 1.0, "b": 2.5},
        ports={1: "ev-1", 2: "ev-2"},
        fields={"temperature": "AM2301.Temperature", "humidity": Field_("h", "degF")},
        topic=["x/1", "x/2"],
        extra={"any": [1, "thing"]},
    )
    assert type(value.limits["a"]) is float
    assert type(value.names) is tuple
    assert load(Everything, {"id": "d", "ratio": 0.5, "topic": "one"}).topic == "one"


def test_defaults_and_default_factories_are_the_dataclass_own() -> None:
    value = load(Outer, {"name": "x"})
    assert value == Outer("x", Section(0.0, 10.0), [Section()])
    assert load(Everything, {"id": "d"}) == Everything(id="d")


def test_an_integer_becomes_a_float_but_not_the_other_way_round() -> None:
    assert load(Section, {"low": 1, "high": 2}) == Section(1.0, 2.0)
    assert _error(Everything, {"id": "d", "count": 2.0}) == "count: expected an integer, got 2.0"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"count": "abc"}, "count: expected an integer, got 'abc'"),
        ({"count": True}, "count: expected an integer, got True"),  # a bool is not a count
        ({"ratio": "x"}, "ratio: expected a number, got 'x'"),
        ({"ratio": False}, "ratio: expected a number, got False"),
        ({"on": 1}, "on: expected a boolean, got 1"),
        ({"id": 7}, "id: expected a string, got 7"),
        ({"file": 3}, "file: expected a path (a string), got 3"),
        ({"at": "2024-01-01"}, "at: expected a date-time, got '2024-01-01'"),
        (
            {"day": datetime(2025, 1, 1, tzinfo=UTC)},
            "day: expected a local date (YYYY-MM-DD), not a date-time",
        ),
        ({"mode": "normal"}, "mode: must be one of 'NORMAL', 'FULL'"),
        ({"qos": 2}, "qos: must be one of 0, 1"),
        ({"qos": True}, "qos: must be one of 0, 1"),
        (
            {"kind": "toaster"},
            "kind: must be one of 'electricity_meter', 'heat_meter', 'ev_charger', 'building_sensor', "
            "'pv_inverter', 'weather_station'",
        ),
        ({"kinds": "heat_meter"}, "kinds: expected a list, got 'heat_meter'"),
        ({"limits": [1]}, "limits: expected a table, got [1]"),
        ({"limits": {"a": "x"}}, "limits.a: expected a number, got 'x'"),
        ({"ports": {"one": "ev-1"}}, "ports.one: expected an integer key, got 'one'"),
        ({"ports": {"0": "ev-1"}}, "ports.0: must be >= 1 (got 0)"),
        ({"fields": {"t": 5}}, "fields.t: expected a string or a table, got 5"),
        ({"fields": {"t": {"unit": "degF"}}}, "fields.t.path: field required"),
        ({"fields": {"t": {"path": ""}}}, "fields.t.path: must have at least 1 character (got 0)"),
        ({"topic": 1}, "topic: expected a string or a list, got 1"),
        ({"topic": ["a", 2]}, "topic.1: expected a string, got 2"),
        ({"count": 0}, "count: must be >= 1 (got 0)"),
        ({"count": 11}, "count: must be <= 10 (got 11)"),
        ({"ratio": 0}, "ratio: must be > 0 (got 0.0)"),
        ({"ratio": 1}, "ratio: must be < 1 (got 1.0)"),
        (
            {"id": "a b"},
            "id: invalid id 'a b': use 1-64 characters from A-Z a-z 0-9 _ . - , starting with a letter or digit",
        ),
        (
            {"cuont": 2},
            "cuont: unknown key (allowed: id, count, ratio, on, file, at, day, mode, qos, kind, kinds, "
            "names, limits, ports, fields, topic, extra)",
        ),
    ],
)
def test_each_error_has_its_exact_message(table: dict[str, Any], message: str) -> None:
    assert _error(Everything, {"id": "d", **table}) == message


def test_a_missing_required_key_and_a_wrong_container() -> None:
    assert _error(Everything, {}) == "id: field required"
    assert _error(Outer, {"name": "x", "section": 3}) == "section: expected a table, got 3"
    assert _error(Outer, {"name": "x", "sections": []}) == "sections: must have at least 1 item (got 0)"


def test_every_problem_is_reported_at_once_with_list_indexes_as_numbers() -> None:
    table = {"section": {"low": "a", "hihg": 1}, "sections": [{}, {"low": 2, "high": 1}, 5], "x": 1}
    assert _error(Outer, table, "cfg") == (
        "cfg.name: field required; "
        "cfg.section.low: expected a number, got 'a'; "
        "cfg.section.hihg: unknown key (allowed: low, high); "
        "cfg.sections.1: low must not exceed high; "
        "cfg.sections.2: expected a table, got 5; "
        "cfg.x: unknown key (allowed: name, section, sections)"
    )


def test_cross_field_checks_run_only_on_valid_fields_and_report_the_table() -> None:
    assert _error(Section, {"low": 5, "high": 1}) == "low must not exceed high"
    assert _error(Outer, {"name": "x", "section": {"low": 5, "high": 1}}) == "section: low must not exceed high"
    # an invalid field: its own message, not the cross-field one computed from garbage
    assert _error(Section, {"low": 5, "high": "1"}) == "high: expected a number, got '1'"


def test_table_error_keeps_the_problems_and_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="count") as info:
        load(Everything, {"id": "d", "count": 0, "qos": 3})
    assert isinstance(info.value, TableError)
    assert info.value.problems == (("count", "must be >= 1 (got 0)"), ("qos", "must be one of 0, 1"))


def test_only_dataclasses_load() -> None:
    with pytest.raises(TypeError, match="not a dataclass"):
        load(dict, {})


def test_it_imports_nothing_beyond_the_standard_library() -> None:
    code = (
        "import sys\nbefore = set(sys.modules)\nimport devices.tables\n"
        "new = sorted(m.split('.')[0] for m in set(sys.modules) - before)\n"
        "print(','.join(sorted(set(new) - set(sys.stdlib_module_names))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "devices"

"""Conditions: ``{ property, operator, value }`` filters applied to events before any reduction.

Each operator is a registry entry that validates its ``value`` at parse time and compiles to a SQL
predicate over the typed derived columns (see :mod:`traits.values`). Every predicate is wrapped in
``coalesce(..., false)`` so an absent, ``null`` or unconvertible property makes the condition false
(SQL's NULL never leaks into ``match = "any"``); only ``not_exists`` is true for absent values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from engine import iso8601
from engine.errors import ConfigError
from engine.store import DerivedColumn
from traits.values import VALUE_TYPES, instant_before, kind_column, path_problem, sql_str, ts_literal


#: ``ref(kind, path)``: the quoted column of a derived column (kind: text/number/.../``kind``).
ColumnRef = Callable[[str, str], str]


class _Invalid(Exception):
    """Raised by value validators; becomes a ConfigError naming the trait and key."""


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _number(v: object) -> float:
    if not _is_number(v):
        raise _Invalid("must be a finite number")
    return float(v)


def _string(v: object) -> str:
    if not isinstance(v, str):
        raise _Invalid("must be a string")
    return v


def _scalar(v: object) -> str | float | bool:
    if isinstance(v, bool | str):
        return v
    if _is_number(v):
        return float(v)
    raise _Invalid("must be a string, a number or a boolean")


def _one_of(v: object) -> tuple[str | float, ...]:
    if not isinstance(v, list) or not v:
        raise _Invalid("must be a non-empty array of strings or numbers")
    out: list[str | float] = []
    for item in v:
        if isinstance(item, str):
            out.append(item)
        elif _is_number(item):
            out.append(float(item))
        else:
            raise _Invalid("must be a non-empty array of strings or numbers")
    return tuple(out)


def _strings(v: object) -> tuple[str, ...]:
    if not isinstance(v, list) or not v or not all(isinstance(i, str) for i in v):
        raise _Invalid("must be a non-empty array of strings")
    return tuple(v)


def _range(v: object) -> tuple[float, float]:
    if not isinstance(v, list) or len(v) != 2 or not all(_is_number(i) for i in v):
        raise _Invalid("must be [low, high], two numbers")
    low, high = float(v[0]), float(v[1])
    if low > high:
        raise _Invalid(f"low ({v[0]}) must not be greater than high ({v[1]})")
    return low, high


def to_instant(v: object) -> datetime:
    """An ISO date or date-time (string or TOML value) as a UTC instant; a bare date is midnight."""
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).astimezone(UTC)
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day, tzinfo=UTC)
    if isinstance(v, str):
        parsed = iso8601.parse(v)
        if parsed is not None:
            return parsed
    raise _Invalid("must be an ISO-8601 date or date-time, e.g. \"2025-01-31\"")


def _instant(v: object) -> datetime:
    return to_instant(v)


def _positive(v: object) -> float:
    n = _number(v)
    if n <= 0:
        raise _Invalid("must be a number greater than 0")
    return n


def _nothing(v: object) -> None:
    raise _Invalid("takes no value; remove the 'value' key")


def _num(v: float) -> str:
    return f"CAST({float(v)!r} AS DOUBLE)"


def _literal(v: str | float | bool) -> tuple[str, str]:
    """The value type a constant compares as, and its SQL literal."""
    if isinstance(v, bool):
        return "boolean", "true" if v else "false"
    if isinstance(v, str):
        return "text", sql_str(v)
    return "number", _num(v)


@dataclass(frozen=True, slots=True, kw_only=True)
class Operator:
    """How one operator validates its value, which conversions it reads, and its SQL."""

    name: str
    validate: Callable[[object], Any]
    reads: Callable[[Any], tuple[str, ...]]
    sql: Callable[[ColumnRef, str, Any, datetime], str]
    takes_value: bool = True


def _cmp(op: str) -> Callable[[ColumnRef, str, Any, datetime], str]:
    return lambda ref, p, v, _as_of: f"{ref('number', p)} {op} {_num(v)}"


def _equals(ref: ColumnRef, p: str, v: Any, _as_of: datetime) -> str:
    kind, lit = _literal(v)
    return f"{ref(kind, p)} = {lit}"


def _not_equals(ref: ColumnRef, p: str, v: Any, _as_of: datetime) -> str:
    kind, lit = _literal(v)
    return f"{ref(kind, p)} <> {lit}"


def _in_lists(ref: ColumnRef, p: str, values: tuple[str | float, ...]) -> list[tuple[str, str]]:
    texts = [sql_str(x) for x in values if isinstance(x, str)]
    nums = [_num(x) for x in values if not isinstance(x, str)]
    out = []
    if texts:
        out.append((ref("text", p), ", ".join(texts)))
    if nums:
        out.append((ref("number", p), ", ".join(nums)))
    return out


def _equals_one_of(ref: ColumnRef, p: str, v: Any, _as_of: datetime) -> str:
    return "(" + " OR ".join(f"coalesce({c} IN ({vals}), false)" for c, vals in _in_lists(ref, p, v)) + ")"


def _not_equals_one_of(ref: ColumnRef, p: str, v: Any, as_of: datetime) -> str:
    # Needs a value convertible to at least one of the list's types, and equal to none of them.
    lists = _in_lists(ref, p, v)
    some = " OR ".join(f"{c} IS NOT NULL" for c, _ in lists)
    return f"(({some}) AND NOT {_equals_one_of(ref, p, v, as_of)})"


def _reads_literal(v: Any) -> tuple[str, ...]:
    return (_literal(v)[0],)


def _reads_one_of(v: Any) -> tuple[str, ...]:
    kinds = []
    if any(isinstance(x, str) for x in v):
        kinds.append("text")
    if any(not isinstance(x, str) for x in v):
        kinds.append("number")
    return tuple(kinds)


def _const(*kinds: str) -> Callable[[Any], tuple[str, ...]]:
    return lambda _v: kinds


def _within_last_days(ref: ColumnRef, p: str, v: Any, as_of: datetime) -> str:
    low = instant_before(as_of, days=v)
    if low is None:  # N days reach past year 1: every datetime up to as_of is within them
        return f"{ref('datetime', p)} <= {ts_literal(as_of)}"
    return f"{ref('datetime', p)} BETWEEN {ts_literal(low)} AND {ts_literal(as_of)}"


def _exists(ref: ColumnRef, p: str, _v: Any, _as_of: datetime) -> str:
    k = ref("kind", p)
    return f"({k} IS NOT NULL AND {k} <> 'NULL')"


def _not_exists(ref: ColumnRef, p: str, _v: Any, _as_of: datetime) -> str:
    k = ref("kind", p)
    return f"({k} IS NULL OR {k} = 'NULL')"


_OPS = [
    Operator(name="equals", validate=_scalar, reads=_reads_literal, sql=_equals),
    Operator(name="not_equals", validate=_scalar, reads=_reads_literal, sql=_not_equals),
    Operator(name="equals_one_of", validate=_one_of, reads=_reads_one_of, sql=_equals_one_of),
    Operator(name="not_equals_one_of", validate=_one_of, reads=_reads_one_of, sql=_not_equals_one_of),
    Operator(
        name="contains", validate=_string, reads=_const("text"),
        sql=lambda ref, p, v, _a: f"contains({ref('text', p)}, {sql_str(v)})",
    ),
    Operator(
        name="not_contains", validate=_string, reads=_const("text"),
        sql=lambda ref, p, v, _a: f"NOT contains({ref('text', p)}, {sql_str(v)})",
    ),
    Operator(
        name="starts_with", validate=_string, reads=_const("text"),
        sql=lambda ref, p, v, _a: f"starts_with({ref('text', p)}, {sql_str(v)})",
    ),
    Operator(
        name="ends_with", validate=_string, reads=_const("text"),
        sql=lambda ref, p, v, _a: f"ends_with({ref('text', p)}, {sql_str(v)})",
    ),
    Operator(
        name="contains_one_of", validate=_strings, reads=_const("text"),
        sql=lambda ref, p, v, _a: "("
        + " OR ".join(f"contains({ref('text', p)}, {sql_str(s)})" for s in v)
        + ")",
    ),
    Operator(name="greater_than", validate=_number, reads=_const("number"), sql=_cmp(">")),
    Operator(name="greater_than_or_equal", validate=_number, reads=_const("number"), sql=_cmp(">=")),
    Operator(name="less_than", validate=_number, reads=_const("number"), sql=_cmp("<")),
    Operator(name="less_than_or_equal", validate=_number, reads=_const("number"), sql=_cmp("<=")),
    Operator(
        name="between", validate=_range, reads=_const("number"),
        sql=lambda ref, p, v, _a: f"{ref('number', p)} BETWEEN {_num(v[0])} AND {_num(v[1])}",
    ),
    Operator(
        name="before_date", validate=_instant, reads=_const("datetime"),
        sql=lambda ref, p, v, _a: f"{ref('datetime', p)} < {ts_literal(v)}",
    ),
    Operator(
        name="after_date", validate=_instant, reads=_const("datetime"),
        sql=lambda ref, p, v, _a: f"{ref('datetime', p)} > {ts_literal(v)}",
    ),
    Operator(name="within_last_days", validate=_positive, reads=_const("datetime"), sql=_within_last_days),
    Operator(name="exists", validate=_nothing, reads=_const(), sql=_exists, takes_value=False),
    Operator(name="not_exists", validate=_nothing, reads=_const(), sql=_not_exists, takes_value=False),
    Operator(
        name="is_true", validate=_nothing, reads=_const("boolean"), takes_value=False,
        sql=lambda ref, p, _v, _a: f"{ref('boolean', p)} = true",
    ),
    Operator(
        name="is_false", validate=_nothing, reads=_const("boolean"), takes_value=False,
        sql=lambda ref, p, _v, _a: f"{ref('boolean', p)} = false",
    ),
]

#: The registry of condition operators, by name.
OPERATORS: dict[str, Operator] = {op.name: op for op in _OPS}


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """One filter on an event property; ``value`` is normalised (numbers as float, dates as UTC)."""

    property: str
    operator: str
    value: Any = None

    def derived_columns(self) -> list[DerivedColumn]:
        """The typed columns this condition reads (always including the JSON kind)."""
        op = OPERATORS[self.operator]
        return [kind_column(self.property)] + [
            VALUE_TYPES[k].column(self.property) for k in op.reads(self.value)
        ]

    def sql(self, ref: ColumnRef, as_of: datetime) -> str:
        """A never-NULL SQL predicate: true when the condition holds for the row."""
        op = OPERATORS[self.operator]
        return f"coalesce({op.sql(ref, self.property, self.value, as_of)}, false)"

    def describe(self) -> str:
        op = OPERATORS[self.operator]
        if not op.takes_value:
            return f"{self.property} {self.operator}"
        value = self.value
        if isinstance(value, datetime):
            value = value.isoformat()
        return f"{self.property} {self.operator} {value!r}"

    def semantic(self) -> dict[str, Any]:
        return {"property": self.property, "operator": self.operator, "value": self.value}


_CONDITION_KEYS = {"property", "operator", "value"}


def parse_condition(raw: object, *, path: object, section: str, index: int) -> Condition:
    """Validate one ``{ property, operator, value }`` table of ``conditions``."""
    key = f"conditions[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError("must be a table { property, operator, value }", path=path, section=section, key=key)
    unknown = sorted(set(raw) - _CONDITION_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} (valid: operator, property, value)",
            path=path, section=section, key=key,
        )
    prop = raw.get("property")
    problem = path_problem(prop)
    if problem:
        raise ConfigError(f"'property' {problem}", path=path, section=section, key=f"{key}.property")
    name = raw.get("operator")
    if not isinstance(name, str):
        raise ConfigError("'operator' is required (a string)", path=path, section=section, key=f"{key}.operator")
    op = OPERATORS.get(name)
    if op is None:
        raise ConfigError(
            f"unknown operator {name!r} (valid: {', '.join(sorted(OPERATORS))})",
            path=path, section=section, key=f"{key}.operator",
        )
    try:
        if op.takes_value:
            if "value" not in raw:
                raise _Invalid("is required for this operator")
            value = op.validate(raw["value"])
        else:
            if "value" in raw:
                op.validate(raw["value"])
            value = None
    except _Invalid as exc:
        raise ConfigError(
            f"operator {name!r}: value {exc}", path=path, section=section, key=f"{key}.value"
        ) from None
    return Condition(property=prop, operator=name, value=value)

"""Event conditions of a prediction (``traits.md`` § Conditions), compiled to DuckDB SQL.

A minimal, self-contained implementation used until the traits engine's shared condition objects
land: predictions only need a condition as a boolean SQL expression over an event row, evaluated
once for all events in the query that loads them (never per event in Python). The semantics follow
``traits.md``: a condition on an absent or ``null`` property is false for every operator except
``not_exists``; a property that cannot be converted to the type the operator needs is false.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

_NUMERIC_JSON = "('BIGINT', 'UBIGINT', 'DOUBLE', 'HUGEINT')"
_DECIMAL = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """One ``{ property, operator, value }`` filter on an event's properties."""

    property: str
    operator: str
    value: Any = None

    def sql(self, *, as_of: datetime, column: str = "properties") -> str:
        """A boolean SQL expression over ``column`` that is never NULL."""
        return f"coalesce(({OPERATORS[self.operator].compile(self, _Prop(self.property, column), as_of)}), false)"


def _lit(value: Any) -> str:
    """A SQL literal (strings quoted, numbers as float)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(float(value))
    return "'" + str(value).replace("'", "''") + "'"


class _Prop:
    """SQL for reading one property by dotted path as each type of ``traits.md``'s table."""

    def __init__(self, dotted: str, column: str) -> None:
        path = "$" + "".join('."' + part.replace('"', '\\"') + '"' for part in dotted.split("."))
        self.path = _lit(path)
        self.column = column

    @property
    def kind(self) -> str:
        return f"json_type({self.column}, {self.path})"

    @property
    def raw(self) -> str:
        return f"json_extract_string({self.column}, {self.path})"

    @property
    def present(self) -> str:
        return f"({self.kind} IS NOT NULL AND {self.kind} <> 'NULL')"

    @property
    def text(self) -> str:
        return f"(CASE WHEN {self.kind} IN ('VARCHAR', 'BOOLEAN', {_NUMERIC_JSON[1:-1]}) THEN {self.raw} END)"

    @property
    def number(self) -> str:
        return (
            f"(CASE WHEN {self.kind} IN {_NUMERIC_JSON} THEN TRY_CAST({self.raw} AS DOUBLE) "
            f"WHEN {self.kind} = 'VARCHAR' AND regexp_matches(trim({self.raw}), '{_DECIMAL}') "
            f"THEN TRY_CAST(trim({self.raw}) AS DOUBLE) END)"
        )

    @property
    def boolean(self) -> str:
        return (
            f"(CASE WHEN {self.kind} = 'BOOLEAN' THEN {self.raw} = 'true' "
            f"WHEN {self.kind} = 'VARCHAR' AND lower({self.raw}) IN ('true', 'false') "
            f"THEN lower({self.raw}) = 'true' END)"
        )

    @property
    def datetime(self) -> str:
        return (
            f"(CASE WHEN {self.kind} = 'VARCHAR' THEN TRY_CAST({self.raw} AS TIMESTAMPTZ) "
            f"WHEN {self.kind} IN {_NUMERIC_JSON} THEN "
            f"make_timestamptz(CAST(TRY_CAST({self.raw} AS DOUBLE) * 1000 AS BIGINT)) END)"
        )


def _typed(prop: _Prop, value: Any) -> str:
    """The property converted to the type of ``value`` (the rule of ``equals``)."""
    if isinstance(value, bool):
        return prop.boolean
    if isinstance(value, (int, float)):
        return prop.number
    return prop.text


def _one_of(prop: _Prop, values: Sequence[Any]) -> str:
    parts = [f"{_typed(prop, v)} = {_lit(v)}" for v in values]
    return "(" + " OR ".join(parts) + ")" if parts else "false"


def _date(value: str) -> str:
    text = value if "T" in value or " " in value else value + "T00:00:00Z"
    return f"TRY_CAST({_lit(text)} AS TIMESTAMPTZ)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Operator:
    """An operator: which values it takes (checked at parse time) and its SQL."""

    check: Callable[[Any], str | None]
    compile: Callable[[Condition, _Prop, datetime], str]


def _scalar(v: Any) -> str | None:
    ok = isinstance(v, (str, bool, int, float)) and not (isinstance(v, float) and not math.isfinite(v))
    return None if ok else "must be a string, number or boolean"


def _string(v: Any) -> str | None:
    return None if isinstance(v, str) else "must be a string"


def _number(v: Any) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return None if ok else "must be a number"


def _array(v: Any) -> str | None:
    ok = isinstance(v, list) and all(isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in v)
    return None if ok else "must be an array of strings or numbers"


def _strings(v: Any) -> str | None:
    return None if isinstance(v, list) and all(isinstance(x, str) for x in v) else "must be an array of strings"


def _pair(v: Any) -> str | None:
    ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(_number(x) is None for x in v) and v[0] <= v[1]
    return None if ok else "must be [low, high] numbers with low <= high"


def _iso(v: Any) -> str | None:
    if not isinstance(v, str):
        return "must be an ISO date or date-time string"
    try:
        datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return "must be an ISO date or date-time string"
    return None


def _none(v: Any) -> str | None:
    return None if v is None else "takes no value"


def _text_op(template: str) -> Callable[[Condition, _Prop, datetime], str]:
    return lambda c, p, _: template.format(t=p.text, v=_lit(c.value))


def _num_op(sym: str) -> Callable[[Condition, _Prop, datetime], str]:
    return lambda c, p, _: f"{p.number} {sym} {_lit(c.value)}"


#: The operator registry of ``traits.md``; unknown operators are configuration errors listing these.
OPERATORS: dict[str, Operator] = {
    "equals": Operator(check=_scalar, compile=lambda c, p, _: f"{_typed(p, c.value)} = {_lit(c.value)}"),
    "not_equals": Operator(check=_scalar, compile=lambda c, p, _: f"{_typed(p, c.value)} <> {_lit(c.value)}"),
    "equals_one_of": Operator(check=_array, compile=lambda c, p, _: _one_of(p, c.value)),
    "not_equals_one_of": Operator(
        check=_array,
        compile=lambda c, p, _: f"({p.present} AND NOT coalesce({_one_of(p, c.value)}, false))"
        if c.value else p.present,
    ),
    "contains": Operator(check=_string, compile=_text_op("contains({t}, {v})")),
    "not_contains": Operator(check=_string, compile=_text_op("NOT contains({t}, {v})")),
    "starts_with": Operator(check=_string, compile=_text_op("starts_with({t}, {v})")),
    "ends_with": Operator(check=_string, compile=_text_op("ends_with({t}, {v})")),
    "contains_one_of": Operator(
        check=_strings,
        compile=lambda c, p, _: "(" + " OR ".join(f"contains({p.text}, {_lit(v)})" for v in c.value) + ")"
        if c.value else "false",
    ),
    "greater_than": Operator(check=_number, compile=_num_op(">")),
    "greater_than_or_equal": Operator(check=_number, compile=_num_op(">=")),
    "less_than": Operator(check=_number, compile=_num_op("<")),
    "less_than_or_equal": Operator(check=_number, compile=_num_op("<=")),
    "between": Operator(
        check=_pair,
        compile=lambda c, p, _: f"{p.number} BETWEEN {_lit(c.value[0])} AND {_lit(c.value[1])}",
    ),
    "before_date": Operator(check=_iso, compile=lambda c, p, _: f"{p.datetime} < {_date(c.value)}"),
    "after_date": Operator(check=_iso, compile=lambda c, p, _: f"{p.datetime} > {_date(c.value)}"),
    "within_last_days": Operator(
        check=_number,
        compile=lambda c, p, as_of: (
            f"{p.datetime} BETWEEN {_lit(as_of.isoformat())}::TIMESTAMPTZ - to_microseconds("
            f"CAST(round({float(c.value)} * 86400e6) AS BIGINT)) AND {_lit(as_of.isoformat())}::TIMESTAMPTZ"
        ),
    ),
    "exists": Operator(check=_none, compile=lambda c, p, _: p.present),
    "not_exists": Operator(check=_none, compile=lambda c, p, _: f"NOT {p.present}"),
    "is_true": Operator(check=_none, compile=lambda c, p, _: f"{p.boolean} = true"),
    "is_false": Operator(check=_none, compile=lambda c, p, _: f"{p.boolean} = false"),
}


def parse_conditions(raw: Any, *, path: str | Path | None, section: str) -> tuple[Condition, ...]:
    """Validate a ``conditions`` array; every problem names the file, the definition and the key."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("must be an array of { property, operator, value } tables", path=path,
                          section=section, key="conditions")
    out = []
    for i, item in enumerate(raw):
        key = f"conditions[{i}]"
        if not isinstance(item, dict):
            raise ConfigError("must be a table { property, operator, value }", path=path,
                              section=section, key=key)
        extra = sorted(set(item) - {"property", "operator", "value"})
        if extra:
            raise ConfigError(f"unknown key {extra[0]!r} (valid: operator, property, value)",
                              path=path, section=section, key=key)
        prop, op = item.get("property"), item.get("operator")
        if not isinstance(prop, str) or not prop.strip():
            raise ConfigError("'property' must be a non-empty string", path=path, section=section, key=key)
        if op not in OPERATORS:
            raise ConfigError(f"unknown operator {op!r} (valid: {', '.join(sorted(OPERATORS))})",
                              path=path, section=section, key=f"{key}.operator")
        problem = OPERATORS[op].check(item.get("value"))
        if problem:
            raise ConfigError(f"operator {op!r}: 'value' {problem}", path=path, section=section,
                              key=f"{key}.value")
        value = item.get("value")
        out.append(Condition(property=prop, operator=op, value=tuple(value) if isinstance(value, list) else value))
    return tuple(out)


def conditions_sql(conditions: Sequence[Condition], *, match: str, as_of: datetime,
                   column: str = "properties") -> str:
    """All (``match='all'``) or any of the conditions as one SQL boolean; no conditions: true."""
    if not conditions:
        return "true"
    joiner = " AND " if match == "all" else " OR "
    return "(" + joiner.join(c.sql(as_of=as_of, column=column) for c in conditions) + ")"

"""Property paths and value conversions, compiled to typed derived columns of ``events``.

Trait definitions read the same few properties millions of times. Instead of parsing JSON per
event per trait, every (property path, conversion) a definition needs becomes one typed column of
``events`` (see :meth:`engine.store.Store.ensure_derived_columns`), computed once at ingest. Each
path also gets a ``kind:`` column holding the JSON kind of the raw value, which is how a counting
event with no value is told apart as *missing* (absent or ``null``) or *rejected* (present but not
convertible). The conversions follow ``traits.md``'s value table exactly; this module is pure.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from engine import iso8601
from engine.store import DerivedColumn

#: Characters a plain path may use inside a derived column name; other paths are hashed.
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9_.\-]+$")
def path_problem(prop: object) -> str | None:
    """Why ``prop`` is not a property path (``None`` when it is one): names what is wrong."""
    if prop is None:
        return "is required: a dotted path such as \"order.total\""
    if not isinstance(prop, str) or not prop:
        return f"must be a non-empty dotted path such as \"order.total\", not {prop!r}"
    if "" in prop.split("."):
        return f"{prop!r} is not a dotted path: it has an empty segment (a leading, trailing or double '.')"
    return None


#: Whitespace trimmed around numeric strings (ASCII only, so SQL and Python agree).
WHITESPACE = iso8601.WHITESPACE
#: A decimal number: what a numeric string must look like after trimming.
NUMBER_RE = r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?"
#: Epoch milliseconds representable as a timestamp (years 1..9999).
EPOCH_MS_MIN = -62135596800000
EPOCH_MS_MAX = 253402300799999
#: Page and screen names are readable as these properties (as in Unify).
NAME_PROPERTIES = {"page_name": "page", "screen_name": "screen"}
#: JSON kinds (DuckDB ``json_type``) that are numbers.
NUMERIC_KINDS = ("BIGINT", "UBIGINT", "DOUBLE")


def instant_before(as_of: datetime, **delta: int) -> datetime | None:
    """``as_of - delta``, or ``None`` (no bound) when that is before year 1: a window reaching
    past the first representable instant holds every earlier event, so it is simply unbounded."""
    try:
        return as_of - timedelta(**delta)
    except OverflowError:
        return None


def sql_str(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def ts_literal(value: datetime) -> str:
    """A TIMESTAMPTZ literal exact to the microsecond."""
    return f"TIMESTAMPTZ '{value.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S.%f')}+00'"


def path_segments(path: str) -> list[str]:
    """The keys of a dotted property path."""
    return path.split(".")


def column_name(prefix: str, path: str) -> str:
    """The deterministic derived column name of ``prefix`` (kind/txt/num/bool/ts) for ``path``.

    DuckDB column names ignore case while property paths do not (``channelType`` and
    ``ChannelType`` are two properties), so a path with an uppercase letter carries a hash of its
    exact spelling: ``txt:channelType#<8 hex>``.
    """
    digest = hashlib.sha256(path.encode()).hexdigest()
    if not _PLAIN_PATH.match(path):
        return f"{prefix}:_h_{digest[:16]}"
    if path != path.lower():
        return f"{prefix}:{path}#{digest[:8]}"
    return f"{prefix}:{path}"


def json_expression(path: str) -> str:
    """SQL for the raw JSON value at ``path`` of an event row (SQL NULL when absent)."""
    pointer = "/" + "/".join(s.replace("~", "~0").replace("/", "~1") for s in path_segments(path))
    extract = f"json_extract(properties, {sql_str(pointer)})"
    if path in NAME_PROPERTIES:
        return f"(CASE WHEN type = '{NAME_PROPERTIES[path]}' THEN to_json(name) ELSE {extract} END)"
    return extract


def kind_column(path: str) -> DerivedColumn:
    """The JSON kind of the value at ``path`` (``NULL`` text for JSON null, SQL NULL if absent)."""
    return DerivedColumn(
        name=column_name("kind", path), sql_type="VARCHAR", expression=f"json_type({json_expression(path)})"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueType:
    """A conversion of a JSON value: its name in definitions, column prefix and SQL/Polars types."""

    name: str
    prefix: str
    sql_type: str
    polars: str

    def column(self, path: str) -> DerivedColumn:
        """The derived column holding ``path`` converted to this type (NULL: no value)."""
        return DerivedColumn(
            name=column_name(self.prefix, path),
            sql_type=self.sql_type,
            expression=_CONVERSIONS[self.name](json_expression(path)),
        )


def _text_sql(j: str) -> str:
    kinds = ", ".join(f"'{k}'" for k in (*NUMERIC_KINDS, "BOOLEAN"))
    return (
        f"(CASE WHEN json_type({j}) = 'VARCHAR' THEN json_extract_string({j}, '$') "
        f"WHEN json_type({j}) IN ({kinds}) THEN CAST({j} AS VARCHAR) END)"
    )


def _finite(x: str) -> str:
    # + 0.0 turns -0.0 into 0.0 so equal numbers are one value everywhere (distinct, min, ties).
    return f"(CASE WHEN isfinite({x}) THEN {x} + 0.0 END)"


def _number_sql(j: str) -> str:
    kinds = ", ".join(f"'{k}'" for k in NUMERIC_KINDS)
    s = f"trim(json_extract_string({j}, '$'), {sql_str(WHITESPACE)})"
    return (
        f"(CASE WHEN json_type({j}) IN ({kinds}) THEN {_finite(f'CAST({j} AS DOUBLE)')} "
        f"WHEN json_type({j}) = 'VARCHAR' AND regexp_full_match({s}, {sql_str(NUMBER_RE)}) "
        f"THEN {_finite(f'CAST({s} AS DOUBLE)')} END)"
    )


def _boolean_sql(j: str) -> str:
    return (
        f"(CASE WHEN json_type({j}) = 'BOOLEAN' THEN CAST({j} AS BOOLEAN) "
        f"WHEN json_type({j}) = 'VARCHAR' THEN (CASE lower(json_extract_string({j}, '$')) "
        "WHEN 'true' THEN true WHEN 'false' THEN false END) END)"
    )


def _datetime_sql(j: str) -> str:
    """ISO-8601 strings read as event times are (:mod:`engine.iso8601`: trimmed, every spelling
    ingest accepts) and epoch-millisecond numbers, rounded to the microsecond as ingest does;
    year 0000 and instants past year 9999 are no value (no datetime holds them)."""
    kinds = ", ".join(f"'{k}'" for k in NUMERIC_KINDS)
    s = f"trim(json_extract_string({j}, '$'), {sql_str(WHITESPACE)})"
    ms = f"CAST({j} AS DOUBLE)"
    return (
        f"(CASE WHEN json_type({j}) IN ({kinds}) AND {ms} BETWEEN {EPOCH_MS_MIN} AND {EPOCH_MS_MAX} "
        f"THEN make_timestamptz(CAST(round({ms} * 1000) AS BIGINT)) "
        f"WHEN json_type({j}) = 'VARCHAR' AND NOT starts_with({s}, '0000') THEN {iso8601.timestamp_sql(s)} END)"
    )


_CONVERSIONS = {
    "text": _text_sql,
    "number": _number_sql,
    "boolean": _boolean_sql,
    "datetime": _datetime_sql,
}

#: The registry of value types, by the name used in definitions.
VALUE_TYPES: dict[str, ValueType] = {
    "text": ValueType(name="text", prefix="txt", sql_type="VARCHAR", polars="String"),
    "number": ValueType(name="number", prefix="num", sql_type="DOUBLE", polars="Float64"),
    "boolean": ValueType(name="boolean", prefix="bool", sql_type="BOOLEAN", polars="Boolean"),
    "datetime": ValueType(name="datetime", prefix="ts", sql_type="TIMESTAMPTZ", polars="Datetime"),
}

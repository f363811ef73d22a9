"""Identifiers of events, as one vectorised DuckDB query over ``events`` (pure: builds SQL text).

Each JSON document of an event (``traits``, ``context``, ``properties``, and ``raw`` only when a
custom source needs it) is parsed once with a list of JSON paths into a materialised row of JSON texts
(strings are unquoted without a second parse unless they hold an escape); every place an
identifier may be read becomes one cheap projection of it (``UNION ALL``), then values are
normalised and classified as blocked or not, all in SQL. :func:`normalise` is the same normalisation in Python, for look-ups of an
identifier a user typed (``profiles show email:Ana@Example.com``) and for tests.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import duckdb

from engine.identity.rules import (
    BUILTIN_BLOCKED,
    BUILTIN_BLOCKED_PATTERN,
    IdentityRules,
)

#: Characters trimmed from both ends of every value (ASCII whitespace, as ``str.strip`` would
#: without Unicode spaces, so DuckDB and Python agree).
WHITESPACE = " \t\n\r\x0b\x0c"
#: Characters a phone number drops (a leading ``+`` stays).
PHONE_DROP = " -.()"

_DEVICE_TYPES = ("android", "ios")


def sql_literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _json_path(keys: list[str]) -> str:
    return "$" + "".join(f'."{k}"' for k in keys)


def _jtext(text: str) -> str:
    """JSON text -> identifier text: strings unquoted, numbers as their JSON text, else NULL.

    Works on the JSON *text* (decided on its first character), so a value is parsed again only
    when it is a string holding an escape.
    """
    return (
        f"(CASE left({text}, 1) WHEN '\"' THEN (CASE WHEN contains({text}, '\\') "
        f"THEN CAST({text} AS JSON) ->> '$' ELSE substr({text}, 2, length({text}) - 2) END) "
        f"WHEN '-' THEN {text} "
        f"ELSE CASE WHEN left({text}, 1) BETWEEN '0' AND '9' THEN {text} END END)"
    )


@dataclass(slots=True)
class _Paths:
    """JSON paths read from one document column.

    The column is parsed once into a list of JSON texts (``{alias}``); each path used becomes one
    scalar column of the second materialised row: ``{alias}_{i}`` (identifier text) for
    :meth:`ref`, ``{alias}_{i}_j`` (JSON text) for :meth:`json`.
    """

    alias: str
    paths: list[str] = field(default_factory=list)
    text_used: set[int] = field(default_factory=set)
    json_used: set[int] = field(default_factory=set)

    def ref(self, path: str) -> str:
        """Column holding the value at ``path`` as identifier text (see :func:`_jtext`)."""
        i = self.index(path)
        self.text_used.add(i)
        return f"{self.alias}_{i}"

    def json(self, path: str) -> str:
        """Column holding the JSON text of the value at ``path``."""
        i = self.index(path)
        self.json_used.add(i)
        return f"{self.alias}_{i}_j"

    def element(self, path: str) -> str:
        """The JSON text at ``path`` as an element of the parsed list (first row only)."""
        return f"{self.alias}[{self.index(path)}]"

    def index(self, path: str) -> int:
        if path not in self.paths:
            self.paths.append(path)
        return self.paths.index(path) + 1

    def columns(self) -> list[str]:
        return [f"{_jtext(f'{self.alias}[{i}]')} AS {self.alias}_{i}" for i in sorted(self.text_used)] + [
            f"{self.alias}[{i}] AS {self.alias}_{i}_j" for i in sorted(self.json_used)
        ]


def identifiers_sql(rules: IdentityRules, *, source: str = "events", key: str = "message_id") -> str:
    """SQL giving one row per identifier occurrence: ``eid, type, value, blocked``.

    Values are normalised (trimmed, email lower-cased, phone stripped) and empty values dropped;
    rows are not de-duplicated (an email in ``traits`` and ``context.traits`` gives two rows) so
    the caller decides how to count. Only types listed in ``rules`` are produced.

    Parameters
    ----------
    rules
        The identity rules (types, extra sources, blocked values and patterns).
    source
        The table or subquery of events to read (columns as in ``events``).
    key
        The column of ``source`` that becomes ``eid``, naming the event (``rowid`` keeps the
        caller's joins on integers).
    """
    wanted = set(rules.types)
    traits = _Paths("tx")
    context = _Paths("cx")
    props = _Paths("px")
    raw = _Paths("rx")
    items: list[str] = []

    def add(type_: str, value_sql: str, where: str | None = None) -> None:
        if type_ in wanted:
            cond = f"{value_sql} IS NOT NULL" + (f" AND {where}" if where else "")
            items.append(
                f"SELECT eid, {sql_literal(type_)} AS type, {value_sql} AS v FROM ev WHERE {cond}"
            )

    # the two identifier columns are read straight from the events (no JSON involved)
    if "user_id" in wanted:
        items.append(f"SELECT {key} AS eid, 'user_id' AS type, user_id AS v FROM {source} WHERE user_id IS NOT NULL")
    if "anonymous_id" in wanted:
        items.append(
            f"SELECT {key} AS eid, 'anonymous_id' AS type, anonymous_id AS v FROM {source} "
            "WHERE anonymous_id IS NOT NULL"
        )
    for field_ in ("email", "phone"):
        add(field_, traits.ref(_json_path([field_])))
        add(field_, context.ref(_json_path(["traits", field_])))
    extras: list[str] = []
    if any(t in wanted for d in _DEVICE_TYPES for t in (f"{d}.id", f"{d}.idfa", f"{d}.push_token")):
        # computed once per event, not once per device identifier type
        dev_text = _jtext(context.element("$.device.type"))
        extras.append(f"lower({trim_sql(dev_text)}) AS device_type")
    tracking = f"{context.json('$.device.adTrackingEnabled')} = 'true'"
    for dev in _DEVICE_TYPES:
        cond = f"device_type = {sql_literal(dev)}"
        if f"{dev}.id" in wanted:
            add(f"{dev}.id", context.ref("$.device.id"), cond)
        if f"{dev}.idfa" in wanted:
            add(f"{dev}.idfa", context.ref("$.device.advertisingId"), f"{cond} AND {tracking}")
        if f"{dev}.push_token" in wanted:
            add(f"{dev}.push_token", context.ref("$.device.token"), cond)
    ga_path = '$.integrations."Google Analytics".clientId'
    if "ga_client_id" in wanted:
        add("ga_client_id", context.ref(ga_path))
    for rule in rules.identifiers:
        for src in rule.sources:
            keys = src.split(".")
            root = {"traits": traits, "context": context, "properties": props}.get(keys[0])
            if root is None:  # see needs_raw
                add(rule.type, raw.ref(_json_path(keys)))
            else:
                add(rule.type, root.ref(_json_path(keys[1:])))
    external = context.json("$.externalIds")

    def doc(col: str, paths: _Paths, guard: str | None = None) -> str:
        if not paths.paths:
            return f"NULL::VARCHAR[] AS {paths.alias}"
        lst = "[" + ", ".join(sql_literal(p) for p in paths.paths) + "]"
        expr = f"CAST(json_extract({col}, {lst}) AS VARCHAR[])"
        if guard:
            expr = f"CASE WHEN {guard} THEN {expr} END"
        return f"{expr} AS {paths.alias}"


    docs = ",\n            ".join(
        [
            # group traits describe the account, not the user (identity.md): never read them.
            doc("traits", traits, "type <> 'group'"),
            doc("context", context),
            doc("properties", props),
            doc("raw", raw),
        ]
    )
    # one plain projection per place (UNION ALL), cheaper than unnesting a list of structs
    places = "\n        UNION ALL ".join(items) if items else "SELECT NULL AS eid, NULL AS type, NULL AS v"
    types_list = ", ".join(sql_literal(t) for t in rules.types)
    columns = ",\n            ".join(
        ["eid", *extras]
        + [c for paths in (traits, context, props, raw) for c in paths.columns()]
    )
    return f"""
    WITH ev AS MATERIALIZED (
        SELECT {columns}
        FROM (
            SELECT {key} AS eid,
                {docs}
            FROM {source}
        )
    ),
    cand AS (
        {places}
        UNION ALL
        SELECT eid, lower({trim_sql("(x ->> 'type')")}) AS type,
               {_jtext("CAST(x -> 'id' AS VARCHAR)")} AS v
        FROM (
            SELECT eid, unnest(CAST(CAST({external} AS JSON) AS JSON[])) AS x
            FROM ev WHERE left({external}, 1) = '['
        )
        WHERE x ->> 'collection' = 'users' AND coalesce(x ->> 'encoding', 'none') = 'none'
    ),
    norm AS (
        SELECT eid, type, {normalise_sql("type", trim_sql("v"))} AS value
        FROM cand WHERE type IN ({types_list})
    )
    SELECT eid, type, value, {blocked_sql(rules, "type", "value")} AS blocked
    FROM norm WHERE value <> ''
    """


def needs_raw(rules: IdentityRules) -> bool:
    """Whether a custom source reads the whole message (``raw``), not only its documents."""
    return any(
        src.split(".")[0] not in ("traits", "context", "properties")
        for rule in rules.identifiers for src in rule.sources
    )


def documents(rules: IdentityRules) -> tuple[str, ...]:
    """The JSON columns of ``events`` that :func:`identifiers_sql` reads for ``rules``:
    ``traits`` and ``context`` always, ``properties`` and ``raw`` only for custom sources there
    (a JSON column is the costliest thing a scan of ``events`` reads)."""
    roots = {src.split(".")[0] for rule in rules.identifiers for src in rule.sources}
    return ("traits", "context", *(["properties"] if "properties" in roots else []),
            *(["raw"] if needs_raw(rules) else []))


def trim_sql(value_sql: str) -> str:
    """SQL trimming :data:`WHITESPACE`; the cheap end-character test skips most values."""
    return (
        f"(CASE WHEN ord({value_sql}) <= 32 OR ord({value_sql}[-1]) <= 32 "
        f"THEN trim({value_sql}, {sql_literal(WHITESPACE)}) ELSE {value_sql} END)"
    )


def normalise_sql(type_sql: str, value_sql: str) -> str:
    """SQL normalising a trimmed value by type: email lower-cased, phone punctuation dropped."""
    return (
        f"CASE {type_sql} WHEN 'email' THEN lower({value_sql}) "
        f"WHEN 'phone' THEN regexp_replace({value_sql}, '[ .()\\-]', '', 'g') "
        f"ELSE {value_sql} END"
    )


def project_blocked(rules: IdentityRules) -> dict[str, tuple[str, ...]]:
    """Per identifier type, the project's blocked values as that type normalises them.

    identity.md: project values block *exactly*, compared after normalisation. Normalising the
    configured value the same way keeps ``Test@Example.com`` blocking that email (emails are
    lower-cased), while ``Guest`` blocks the user id ``Guest`` and not ``guest``.
    """
    out: dict[str, tuple[str, ...]] = {}
    for rule in rules.identifiers:
        values = sorted({v for v in (normalise(rule.type, b) for b in rules.blocked_values) if v is not None})
        if values:
            out[rule.type] = tuple(values)
    return out


def blocked_sql(rules: IdentityRules, type_sql: str, value_sql: str) -> str:
    """SQL that is true when a normalised value is blocked (built-ins, project values, patterns)."""
    parts = [
        f"lower({value_sql}) IN ({', '.join(sql_literal(v) for v in sorted(BUILTIN_BLOCKED))})",
        f"regexp_full_match({value_sql}, {sql_literal(BUILTIN_BLOCKED_PATTERN)})",
    ]
    parts += [
        f"({type_sql} = {sql_literal(t)} AND {value_sql} IN ({', '.join(sql_literal(v) for v in values)}))"
        for t, values in project_blocked(rules).items()
    ]
    parts += [f"regexp_full_match({value_sql}, {sql_literal(p)})" for p in rules.blocked_patterns]
    return "(" + " OR ".join(parts) + ")"


# -- the same rules in Python (look-ups, tests) ------------------------------------------------
def text_value(value: Any) -> str | None:
    """A raw JSON value as identifier text: strings as themselves, numbers as JSON text."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return None


def normalise(type_: str, value: Any) -> str | None:
    """The normalised identifier value, ``None`` when absent (not text, empty after trimming).

    Examples
    --------
    >>> normalise("email", "  Ana@Example.COM ")
    'ana@example.com'
    >>> normalise("phone", "+1 (555) 010-99.12")
    '+15550109912'
    >>> normalise("user_id", 42)
    '42'
    """
    text = text_value(value)
    if text is None:
        return None
    text = text.strip(WHITESPACE)
    if type_ == "email":
        text = sql_lower(text)
    elif type_ == "phone":
        text = text.translate({ord(c): None for c in PHONE_DROP})
    return text or None


@lru_cache(maxsize=4096)
def sql_lower(text: str) -> str:
    """``text`` lower-cased by DuckDB's ``lower``, the function the SQL side uses.

    Python's ``str.lower`` differs on a few letters (a final ``Σ`` becomes ``ς``, ``İ`` becomes two
    code points), so an e-mail typed into ``profiles show`` or listed in ``blocked_values`` would
    never equal the stored one. Called for look-ups and configured values only, never per event.
    """
    return _lowering().execute("SELECT lower(?)", [text]).fetchall()[0][0]


@lru_cache(maxsize=1)
def _lowering() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def is_blocked(rules: IdentityRules, type_: str, value: str) -> bool:
    """Whether a normalised value of ``type_`` is blocked, exactly as :func:`blocked_sql` decides."""
    if sql_lower(value) in BUILTIN_BLOCKED or value in project_blocked(rules).get(type_, ()):
        return True
    if re.fullmatch(BUILTIN_BLOCKED_PATTERN, value):
        return True
    return any(re.fullmatch(p, value) for p in rules.blocked_patterns)

"""Identifiers of events, as one vectorised DuckDB query over ``events`` (pure: builds SQL text).

Each JSON document of an event (``traits``, ``context``, ``properties``, and ``raw`` only when a
source needs it) is parsed once with a list of JSON paths into a materialised row of JSON texts
(strings are unquoted without a second parse unless they hold an escape); every place an
identifier may be read becomes one cheap projection of it (``UNION ALL``), then values are
normalised and classified as blocked or not, all in SQL. :func:`normalise` is the same normalisation in Python, for look-ups of an
identifier a user typed (``profiles show email:Ana@Example.com``) and for tests.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from engine.identity.rules import (
    BUILTIN_BLOCKED,
    BUILTIN_BLOCKED_PATTERN,
    SOURCE_ROOTS,
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
    """JSON paths parsed from one document column, in order; ``ref`` gives the list element."""

    alias: str
    paths: list[str] = field(default_factory=list)

    def ref(self, path: str) -> str:
        """The value at ``path`` as identifier text (see :func:`_jtext`)."""
        return _jtext(self.json(path))

    def json(self, path: str) -> str:
        """The JSON text of the value at ``path``."""
        return f"{self.alias}[{self._index(path)}]"

    def _index(self, path: str) -> int:
        if path not in self.paths:
            self.paths.append(path)
        return self.paths.index(path) + 1


def identifiers_sql(rules: IdentityRules, *, source: str = "events") -> str:
    """SQL giving one row per identifier occurrence: ``message_id, type, value, blocked``.

    Values are normalised (trimmed, email lower-cased, phone stripped) and empty values dropped;
    rows are not de-duplicated (an email in ``traits`` and ``context.traits`` gives two rows) so
    the caller decides how to count. Only types listed in ``rules`` are produced.

    Parameters
    ----------
    rules
        The identity rules (types, extra sources, blocked values and patterns).
    source
        The table or subquery of events to read (columns as in ``events``).
    """
    wanted = set(rules.types)
    traits = _Paths("tx")
    context = _Paths("cx")
    props = _Paths("px")
    raw = _Paths("rx")
    items: list[str] = []

    def add(type_: str, value_sql: str) -> None:
        if type_ in wanted:
            items.append(f"SELECT message_id, {sql_literal(type_)} AS type, {value_sql} AS v FROM ev")

    add("user_id", "user_id")
    add("anonymous_id", "anonymous_id")
    for key in ("email", "phone"):
        add(key, traits.ref(_json_path([key])))
        add(key, context.ref(_json_path(["traits", key])))
    device_type = f"lower(trim({context.ref('$.device.type')}, {sql_literal(WHITESPACE)}))"
    tracking = f"({context.json('$.device.adTrackingEnabled')} = 'true')"
    for dev in _DEVICE_TYPES:
        cond = f"{device_type} = {sql_literal(dev)}"
        add(f"{dev}.id", f"CASE WHEN {cond} THEN {context.ref('$.device.id')} END")
        add(
            f"{dev}.idfa",
            f"CASE WHEN {cond} AND {tracking} THEN {context.ref('$.device.advertisingId')} END",
        )
        add(f"{dev}.push_token", f"CASE WHEN {cond} THEN {context.ref('$.device.token')} END")
    ga_path = '$.integrations."Google Analytics".clientId'
    if "ga_client_id" in wanted:
        add("ga_client_id", f"coalesce({context.ref(ga_path)}, {raw.ref(ga_path)})")
    for rule in rules.identifiers:
        for src in rule.sources:
            keys = src.split(".")
            root = {"traits": traits, "context": context, "properties": props}.get(keys[0])
            if root is None:
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
            # the whole message is parsed only when it can hold what is asked for
            doc("raw", raw, "contains(CAST(raw AS VARCHAR), 'Google Analytics')"
                if raw.paths == [ga_path] else None),
        ]
    )
    # one plain projection per place (UNION ALL), cheaper than unnesting a list of structs
    places = "\n        UNION ALL ".join(items) if items else "SELECT NULL AS message_id, NULL AS type, NULL AS v"
    types_list = ", ".join(sql_literal(t) for t in rules.types)
    return f"""
    WITH ev AS MATERIALIZED (
        SELECT message_id, user_id, anonymous_id,
            {docs}
        FROM {source}
    ),
    cand AS (
        SELECT * FROM ({places}) WHERE v IS NOT NULL
        UNION ALL
        SELECT message_id, lower({trim_sql("(x ->> 'type')")}) AS type,
               {_jtext("CAST(x -> 'id' AS VARCHAR)")} AS v
        FROM (
            SELECT message_id, unnest(CAST(CAST({external} AS JSON) AS JSON[])) AS x
            FROM ev WHERE left({external}, 1) = '['
        )
        WHERE x ->> 'collection' = 'users' AND coalesce(x ->> 'encoding', 'none') = 'none'
    ),
    norm AS (
        SELECT message_id, type, {normalise_sql("type", trim_sql("v"))} AS value
        FROM cand WHERE type IN ({types_list})
    )
    SELECT message_id, type, value, {blocked_sql(rules, "value")} AS blocked
    FROM norm WHERE value <> ''
    """


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


def blocked_sql(rules: IdentityRules, value_sql: str) -> str:
    """SQL that is true when a normalised value is blocked (built-ins, project values, patterns)."""
    exact = sorted(BUILTIN_BLOCKED | {v.strip(WHITESPACE).lower() for v in rules.blocked_values})
    parts = [
        f"lower({value_sql}) IN ({', '.join(sql_literal(v) for v in exact)})",
        f"regexp_full_match({value_sql}, {sql_literal(BUILTIN_BLOCKED_PATTERN)})",
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
        text = text.lower()
    elif type_ == "phone":
        text = text.translate({ord(c): None for c in PHONE_DROP})
    return text or None


def is_blocked(rules: IdentityRules, value: str) -> bool:
    """Whether a normalised value is blocked, exactly as :func:`blocked_sql` decides."""
    lowered = value.lower()
    if lowered in BUILTIN_BLOCKED or lowered in {v.strip(WHITESPACE).lower() for v in rules.blocked_values}:
        return True
    if re.fullmatch(BUILTIN_BLOCKED_PATTERN, value):
        return True
    return any(re.fullmatch(p, value) for p in rules.blocked_patterns)

"""The message contract of ``events.md`` as one vectorised DuckDB query: record text -> row + reasons.

Pure: this module only builds SQL text (and the canonical-JSON helpers every reader shares); it
never touches a connection. :mod:`ingest.load` runs the query over each chunk of ``(line, text)``
records, so validation and normalisation cost one set-based pass per chunk, never a Python loop
per record.

Each field of the Segment Spec that becomes a typed column is declared once in :data:`FIELDS`
(its JSON spellings and its *kind*); each kind knows its normalised SQL value and its quarantine
reasons (:data:`KINDS`). Message-level rules (known type, required identifiers, event time range)
live in :func:`message_reasons`. Every reason is a sentence that names the rule it breaks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from engine import iso8601
from engine.store import id_hash_sql

#: Segment's own limit on one serialised message, in bytes.
MAX_MESSAGE_BYTES = 32 * 1024
#: Event times after ``now + FUTURE_DAYS`` are refused (clock bugs, ms/s mix-ups).
FUTURE_DAYS = 100
#: Epoch-millisecond numbers beyond this magnitude are not read as times (year ~5138).
_MAX_EPOCH_MS = 10**14
#: Whitespace trimmed from identifiers and records (JSON whitespace plus form feed / vertical tab).
_WS = iso8601.WHITESPACE

MESSAGE_TYPES = ("track", "identify", "alias", "page", "screen", "group")


@dataclass(frozen=True, slots=True, kw_only=True)
class Field:
    """One message field read into a typed column.

    Parameters
    ----------
    name
        The Segment Spec name, used in quarantine reasons.
    column
        The ``events`` column (and the SQL alias) it becomes.
    spellings
        The JSON keys accepted for it, first present (non-null) wins.
    kind
        A key of :data:`KINDS`: how the value is normalised and validated.
    """

    name: str
    column: str
    spellings: tuple[str, ...]
    kind: str


FIELDS: tuple[Field, ...] = (
    Field(name="type", column="type", spellings=("type",), kind="text"),
    Field(name="event", column="event", spellings=("event",), kind="text"),
    Field(name="name", column="name", spellings=("name",), kind="text"),
    Field(name="messageId", column="message_id", spellings=("messageId", "message_id"), kind="identifier"),
    Field(name="userId", column="user_id", spellings=("userId", "user_id"), kind="identifier"),
    Field(name="anonymousId", column="anonymous_id", spellings=("anonymousId", "anonymous_id"), kind="identifier"),
    Field(name="previousId", column="previous_id", spellings=("previousId", "previous_id"), kind="identifier"),
    Field(name="groupId", column="group_id", spellings=("groupId", "group_id"), kind="identifier"),
    Field(name="timestamp", column="timestamp_sent", spellings=("timestamp",), kind="time"),
    Field(
        name="originalTimestamp",
        column="original_timestamp",
        spellings=("originalTimestamp", "original_timestamp"),
        kind="time",
    ),
    Field(name="sentAt", column="sent_at", spellings=("sentAt", "sent_at"), kind="time"),
    Field(name="receivedAt", column="received_sent", spellings=("receivedAt", "received_at"), kind="time"),
    Field(name="properties", column="properties", spellings=("properties",), kind="object"),
    Field(name="traits", column="traits", spellings=("traits",), kind="object"),
    Field(name="context", column="context", spellings=("context",), kind="object"),
)

def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quote(key: str) -> str:
    return '"' + key.replace('"', '""') + '"'


_A_TYPE = (
    "CASE {t} WHEN 'BOOLEAN' THEN 'a boolean' WHEN 'OBJECT' THEN 'an object' "
    "WHEN 'ARRAY' THEN 'an array' WHEN 'VARCHAR' THEN 'a string' WHEN 'NULL' THEN 'null' ELSE 'a number' END"
)


def _json_kind(expr: str) -> str:
    """The JSON type of a *minified* JSON value from its first character (no second parse)."""
    return (
        f"CASE left({expr}, 1) WHEN '\"' THEN 'VARCHAR' WHEN '{{' THEN 'OBJECT' WHEN '[' THEN 'ARRAY' "
        f"WHEN 't' THEN 'BOOLEAN' WHEN 'f' THEN 'BOOLEAN' WHEN 'n' THEN 'NULL' "
        f"ELSE CASE WHEN {expr} IS NOT NULL THEN 'NUMBER' END END"
    )


def _unquoted(expr: str) -> str:
    """A JSON string literal without escapes, quotes cut off (``substr`` is twice as cheap as ``[2:-2]``)."""
    return f"substr({expr}, 2, length({expr}) - 2)"


def _string_of(expr: str) -> str:
    """The value of a JSON string literal: slice the quotes off unless it holds escapes."""
    return f"CASE WHEN contains({expr}, chr(92)) THEN CAST({expr} AS JSON) ->> '$' ELSE {_unquoted(expr)} END"


def _shown(f: Field) -> str:
    """The sent value as text for a reason: strings unquoted, anything else as JSON, cut at 64."""
    return f"left(coalesce(s_{f.column}, j_{f.column}), 64)"


# -- kinds: normalised value and reasons ---------------------------------------------------------
def _text_value(f: Field) -> str:
    j, t = f"j_{f.column}", f"t_{f.column}"
    return f"CASE WHEN {t} = 'VARCHAR' THEN s_{f.column} WHEN {t} <> 'NULL' THEN {j} END"


def _text_reasons(f: Field) -> list[str]:
    return []  # type / event rules are message rules: they depend on the message type


#: :data:`_WS` as a regular-expression character class.
_WS_CLASS = "[" + _WS.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r").replace("\f", "\\f").replace("\v", "\\v") + "]"


def _trimmed(expr: str) -> str:
    """``trim`` only values that need it: DuckDB's ``trim`` with a character set is slow."""
    ws = _WS_CLASS
    return f"CASE WHEN regexp_matches({expr}, '^{ws}|{ws}$') THEN trim({expr}, {_sql_str(_WS)}) ELSE {expr} END"


def _identifier_value(f: Field) -> str:
    j, t = f"j_{f.column}", f"t_{f.column}"
    return (
        f"CASE WHEN {t} = 'VARCHAR' THEN nullif({_trimmed(f's_{f.column}')}, '') "
        f"WHEN {t} = 'NUMBER' THEN {j} END"
    )


def _identifier_reasons(f: Field) -> list[str]:
    t = f"t_{f.column}"
    a_type = _A_TYPE.format(t=t)
    return [f"CASE WHEN {t} IN ('BOOLEAN', 'OBJECT', 'ARRAY') THEN '{f.name} is ' || {a_type} END"]


def _epoch_ms(expr: str) -> str:
    return (
        f"CASE WHEN abs({expr}) < {_MAX_EPOCH_MS} "
        f"THEN make_timestamp(CAST(round(({expr}) * 1000) AS BIGINT))::TIMESTAMPTZ END"
    )


def _time_steps(f: Field) -> list[str]:
    """Helper columns of a time field, each computed once (repeating them inside one expression
    made the query text, and DuckDB's binding and planning of it per chunk, several times larger):
    ``r_``, a string not in the common spelling, trimmed; then ``e_``, its ISO-8601 parts."""
    t, s, r = f"t_{f.column}", f"s_{f.column}", f"r_{f.column}"
    return [
        f"CASE WHEN {t} = 'VARCHAR' AND NOT regexp_full_match({s}, {_sql_str(iso8601.FAST)}) "
        f"THEN trim({s}, {_sql_str(_WS)}) END AS {r}",
        f"{iso8601.parts_sql(r)} AS e_{f.column}",
    ]


def _time_value(f: Field) -> str:
    """ISO-8601 strings (no offset = UTC), epoch-ms numbers or digit strings; NULL if it does not parse.

    The common spelling goes straight to DuckDB's cast; only other strings are trimmed of ASCII
    whitespace and pay for the regular expression that rewrites them (:func:`_time_steps`).
    """
    j, t, s, r, e = (f"{x}_{f.column}" for x in "jtsre")
    return (
        f"CASE WHEN {t} = 'VARCHAR' THEN CASE "
        f"WHEN {r} IS NULL THEN TRY_CAST({s} AS TIMESTAMPTZ) "
        f"WHEN regexp_full_match({r}, '-?[0-9]+') THEN {_epoch_ms(f'TRY_CAST({r} AS DOUBLE)')} "
        f"ELSE TRY_CAST({iso8601.canonical_sql(e)} AS TIMESTAMPTZ) END "
        f"WHEN {t} = 'NUMBER' THEN {_epoch_ms(f'TRY_CAST({j} AS DOUBLE)')} END"
    )


def _time_present(f: Field) -> str:
    """Whether a time field was sent: JSON null and blank strings are absent (as for identifiers)."""
    t, s, v = f"t_{f.column}", f"s_{f.column}", f"v_{f.column}"
    return (
        f"CASE WHEN {v} IS NOT NULL THEN true WHEN {t} IS NULL OR {t} = 'NULL' THEN false "
        f"WHEN {t} = 'VARCHAR' THEN NOT regexp_full_match({s}, '{_WS_CLASS}*') ELSE true END"
    )


def _time_reasons(f: Field) -> list[str]:
    """None per field: only the fields the event time is taken from must parse (:func:`message_reasons`)."""
    return []


def _unparsed(f: Field) -> str:
    """The reason for a time field that was sent but does not parse."""
    quoted = "'''"
    return (
        f"CASE WHEN v_{f.column} IS NULL THEN "
        f"'{f.name} {quoted} || {_shown(f)} || {quoted} is not ISO-8601 or epoch milliseconds' END"
    )


# -- the common shape: plain values, read without kinds or reasons ------------------------------------
#: A character of a JSON string literal that needs no unescaping (nor the signature's separator, chr(31)).
_PLAIN = r'[^"\\\x1f]'
#: The same, not one of :data:`_WS` (trimming would change the value).
_PLAIN_NON_WS = r'[^"\\\x1f \t\n\r\f\v]'


def _common_identifier(f: Field) -> str:
    j = f"j_{f.column}"
    return f"CASE WHEN left({j}, 1) = '\"' THEN {_unquoted(j)} ELSE {j} END"


def _common_time(f: Field) -> str:
    j = f"j_{f.column}"
    return (
        f"CASE WHEN left({j}, 1) = '\"' THEN TRY_CAST({_unquoted(j)} AS TIMESTAMPTZ) "
        f"ELSE {_epoch_ms(f'TRY_CAST({j} AS DOUBLE)')} END"
    )


def _object_value(f: Field) -> str:
    return f"CASE WHEN t_{f.column} = 'OBJECT' THEN j_{f.column} END"


def _object_reasons(f: Field) -> list[str]:
    t = f"t_{f.column}"
    return [
        f"CASE WHEN {t} IS NOT NULL AND {t} NOT IN ('NULL', 'OBJECT') THEN "
        f"'{f.name} is not an object (it is ' || {_A_TYPE.format(t=t)} || ')' END"
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class Kind:
    """How one kind of field becomes a typed value (SQL) and which reasons it can raise.

    ``steps`` are helper columns (``expr AS name``) computed, in order, before ``value``, which
    reads them. ``common`` is the common-shape formulation (see :func:`_common_shape`): the regular
    expression its JSON text (``shown``, a SQL expression of ``j_<column>``) must match when
    the field is sent, and its value when it does, which must equal ``value`` there.
    """

    value: Callable[[Field], str]
    reasons: Callable[[Field], list[str]]
    common: str
    common_value: Callable[[Field], str]
    shown: Callable[[Field], str] = lambda f: f"j_{f.column}"
    steps: Callable[[Field], list[str]] = lambda f: []


KINDS: dict[str, Kind] = {
    "text": Kind(
        value=_text_value, reasons=_text_reasons, common=f'"{_PLAIN}*"', common_value=lambda f: _unquoted(f"j_{f.column}")
    ),
    "identifier": Kind(
        value=_identifier_value, reasons=_identifier_reasons,
        common=f'"{_PLAIN_NON_WS}(?:{_PLAIN}*{_PLAIN_NON_WS})?"|-?[0-9]+', common_value=_common_identifier,
    ),
    "time": Kind(
        value=_time_value, reasons=_time_reasons, common=f'"{iso8601.FAST}"|-?[0-9]+', common_value=_common_time,
        steps=_time_steps,
    ),
    "object": Kind(
        value=_object_value, reasons=_object_reasons, common="[{]", common_value=lambda f: f"j_{f.column}",
        shown=lambda f: f"left(j_{f.column}, 1)",
    ),
}


# -- message-level rules -------------------------------------------------------------------------
def _iso(expr: str) -> str:
    return f"strftime({expr}, '%Y-%m-%dT%H:%M:%S.%fZ')"


def _time_field(column: str) -> Field:
    return next(f for f in FIELDS if f.column == column)


def _event_time_unparsed() -> str:
    """The fields the event time is taken from (events.md) must parse; other time fields that do
    not parse are stored as NULL (``raw`` keeps them)."""
    ts, orig, sent, recv = map(_time_field, ("timestamp_sent", "original_timestamp", "sent_at", "received_sent"))
    skew = ", ".join(_unparsed(f) for f in (orig, sent, recv))
    return (
        f"CASE WHEN p_timestamp_sent THEN {_unparsed(ts)} "
        f"WHEN p_original_timestamp AND p_sent_at AND p_received_sent THEN nullif(concat_ws('; ', {skew}), '') "
        f"WHEN p_original_timestamp THEN {_unparsed(orig)} "
        f"WHEN p_received_sent THEN {_unparsed(recv)} END"
    )


def _event_time(present: Callable[[Field], str], value: Callable[[Field], str]) -> str:
    """The event time (events.md) from each time field's presence and typed value (SQL builders)."""
    ts, orig, sent, recv = map(_time_field, ("timestamp_sent", "original_timestamp", "sent_at", "received_sent"))
    return (
        f"CASE WHEN {present(ts)} THEN {value(ts)} "
        f"WHEN {present(orig)} AND {present(sent)} AND {present(recv)} "
        f"THEN make_timestamp(epoch_us({value(recv)}) - (epoch_us({value(sent)}) - epoch_us({value(orig)})))::TIMESTAMPTZ "
        f"WHEN {present(orig)} THEN {value(orig)} WHEN {present(recv)} THEN {value(recv)} ELSE now_ END"
    )


#: The event times accepted (events.md): from 1970 to ``FUTURE_DAYS`` after the ingest time.
_AFTER_1970 = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"
_LATEST = f"now_ + INTERVAL {FUTURE_DAYS} DAY"


def _common_shape() -> tuple[str, str]:
    """The common-shape test: ``(SQL of the record's signature, regular expression it must match)``.

    Why: validating every field by its kind and building every reason (:data:`KINDS`,
    :func:`message_reasons`) costs about 0.1 s per field per 200k records, and nearly every
    record has the same plain shape. The signature is each field's JSON text (objects: their
    first character) joined by a separator no JSON text holds (control characters are escaped
    in JSON strings); one regular expression then says that every field is absent or plain
    (:attr:`Kind.common`) and that the type is a known one in lower case, with a non-blank
    string ``event`` for a track. Such a record breaks none of the per-field rules, and its
    values are read without kinds (:attr:`Kind.common_value`). The rules left (identifiers
    required, time fields parse, event time in range) are checked in :func:`chunk_sql`; a record
    failing any test takes the full formulation, so the common shape is never a second set of
    rules, only a shortcut whose agreement with the full one is tested (tests/ingest).
    """
    plain, non_ws = _PLAIN, _PLAIN_NON_WS
    others = "|".join(t for t in MESSAGE_TYPES if t != "track")
    type_event = f'(?:"track"\\x1f"{plain}*{non_ws}{plain}*"|"(?:{others})"\\x1f[^\\x1f]*)'
    rest = [f for f in FIELDS if f.column not in ("type", "event")]
    pattern = "\\x1f".join([type_event] + [f"(?:{KINDS[f.kind].common})?" for f in rest])
    signature = ", chr(31), ".join(KINDS[f.kind].shown(f) for f in FIELDS)
    return f"concat({signature})", pattern


def _common_rules() -> str:
    """The presence rules of :func:`message_reasons` a record of the common shape may still break."""
    return (
        "(j_user_id IS NOT NULL OR j_anonymous_id IS NOT NULL) "
        """AND (j_type <> '"alias"' OR (j_user_id IS NOT NULL AND j_previous_id IS NOT NULL)) """
        """AND (j_type <> '"group"' OR j_group_id IS NOT NULL)"""
    )


def message_reasons() -> list[str]:
    """Rules over the whole message (after each field is normalised), in report order."""
    known = ", ".join(_sql_str(t) for t in MESSAGE_TYPES)
    return [
        "CASE WHEN t_type IS NULL OR t_type = 'NULL' THEN CASE WHEN v_event IS NULL "
        "THEN 'missing type (and no event to make it a track)' END "
        "WHEN t_type <> 'VARCHAR' THEN 'type is ' || " + _A_TYPE.format(t="t_type") + " || ', not a string' "
        f"WHEN NOT list_contains([{known}], msg_type) THEN 'unknown type ''' || left(v_type, 64) || '''' END",
        "CASE WHEN v_user_id IS NULL AND v_anonymous_id IS NULL THEN 'missing userId and anonymousId' END",
        "CASE WHEN msg_type = 'track' AND t_event IS NOT NULL AND t_event NOT IN ('NULL', 'VARCHAR') "
        "THEN 'track event is ' || " + _A_TYPE.format(t="t_event") + " || ', not a string' "
        f"WHEN msg_type = 'track' AND trim(coalesce(v_event, ''), {_sql_str(_WS)}) = '' "
        "THEN 'track without event' END",
        "CASE WHEN msg_type = 'alias' AND v_user_id IS NULL THEN 'alias without userId' END",
        "CASE WHEN msg_type = 'alias' AND v_previous_id IS NULL THEN 'alias without previousId' END",
        "CASE WHEN msg_type = 'group' AND v_group_id IS NULL THEN 'group without groupId' END",
        _event_time_unparsed(),
        f"CASE WHEN event_time < {_AFTER_1970} THEN "
        f"time_source || ' ' || {_iso('event_time')} || ' is before 1970-01-01' "
        f"WHEN event_time > {_LATEST} THEN "
        f"time_source || ' ' || {_iso('event_time')} || ' is more than {FUTURE_DAYS} days after the ingest time ' "
        f"|| {_iso('now_')} END",
    ]


# -- what DuckDB's JSON parser accepts beyond RFC 8259 ---------------------------------------------
#: A JSON string literal (the texts passed ``json_valid``, so every string is well-formed).
_STRING = '"(?:[^"\\\\]|\\\\.)*"'
#: Cheap test for the rows that may hold what DuckDB accepts and RFC 8259 does not: NaN /
#: Infinity in any case (DuckDB reads ``nan``, ``Inf``, ``-Infinity``) at a value position, and
#: trailing commas. A superset of the exact tests below (a word like "Info" inside a string does
#: not start after ``:``, ``[`` or ``,``), so only the rare hinted rows pay for emptying strings.
#: One regular expression per first byte (RE2 then looks for that byte first): 0.077 instead of
#: 0.135 s of CPU per 100k records for the same set as one alternation
#: ``(?:^|[:\\[,])WS*NF|,WS*[\\]}]``.
_LENIENT_HINTS = (
    "^[ \\t\\n\\r]*-?(?:[Nn][Aa][Nn]|[Ii][Nn][Ff])",
    ":[ \\t\\n\\r]*-?(?:[Nn][Aa][Nn]|[Ii][Nn][Ff])",
    "\\[[ \\t\\n\\r]*-?(?:[Nn][Aa][Nn]|[Ii][Nn][Ff])",
    ",[ \\t\\n\\r]*(?:-?(?:[Nn][Aa][Nn]|[Ii][Nn][Ff])|[\\]}])",
)
#: The same, exact, on the text with its strings emptied (a value position, outside strings).
_NON_FINITE = "(?:^|[:\\[,])[ \\t\\n\\r]*-?(?:[Nn][Aa][Nn]|[Ii][Nn][Ff])"
_TRAILING_COMMA = ",[ \\t\\n\\r]*[\\]}]"
#: Deepest nesting of arrays and objects accepted. DuckDB reads any depth, but Python's json
#: (derived messageIds, conflict checks, the JSON-document reader) stops near 1000 levels; real
#: messages nest a handful of levels, so a deeper one is garbage or an attack.
MAX_DEPTH = 512


def _lenient_reasons(raw: str, parsed: str) -> str:
    """NULL, or why a text DuckDB parsed is not JSON (RFC 8259): NaN/Infinity, trailing commas."""
    bare = f"regexp_replace({raw}, {_sql_str(_STRING)}, '\"\"', 'g')"
    hinted = " OR ".join(f"regexp_matches({raw}, {_sql_str(h)})" for h in _LENIENT_HINTS)
    return (
        f"CASE WHEN {parsed} AND ({hinted}) THEN nullif(concat_ws('; ', "
        f"CASE WHEN regexp_matches({bare}, {_sql_str(_NON_FINITE)}) "
        f"THEN 'invalid JSON: NaN and Infinity are not JSON numbers' END, "
        f"CASE WHEN regexp_matches({bare}, {_sql_str(_TRAILING_COMMA)}) "
        f"THEN 'invalid JSON: trailing comma' END), '') END"
    )


def _depth(raw: str, parsed: str) -> str:
    """The nesting depth of a parsed text that may be nested deeper than :data:`MAX_DEPTH`, else NULL.

    Only texts with more than ``MAX_DEPTH`` opening brackets (counted cheaply, strings included)
    are measured exactly: strings removed, the running depth folded over the brackets.
    """
    opening = f"strlen({raw}) - strlen(replace(replace({raw}, '[', ''), '{{', ''))"
    brackets = f"regexp_replace(regexp_replace({raw}, {_sql_str(_STRING)}, '', 'g'), '[^\\[\\]{{}}]', '', 'g')"
    steps = f"list_transform(string_split({brackets}, ''), lambda c: CASE WHEN c IN ('[', '{{') THEN 1 ELSE -1 END)"
    return (
        f"CASE WHEN {parsed} AND strlen({raw}) > {2 * MAX_DEPTH} AND {opening} > {MAX_DEPTH} "
        f"THEN list_reduce({steps}, lambda a, x: {{'d': a.d + x, 'm': greatest(a.m, a.d + x)}}, {{'d': 0, 'm': 0}}).m END"
    )


def chunk_sql(source: str, now: datetime, *, common: bool = True) -> str:
    """The query that turns ``source(line BIGINT, text VARCHAR)`` into validated event rows.

    Output columns: ``line``, ``raw`` (the record text, trimmed), ``reasons`` (``NULL`` when the
    record is accepted, else the broken rules joined by ``"; "``), then every typed column of
    ``events`` except the bookkeeping ones, then ``id_hash`` (:func:`engine.store.id_hash_sql`),
    then ``common`` (whether the record took the common-shape path, :func:`_common_shape`);
    ``message_id`` and ``id_hash`` are ``NULL`` when the message has no id (the caller derives
    both, see :func:`derived_message_id`). Blank records are dropped. Rows come back in no fixed
    order (the known-type test is planned as a join): match them by ``line``.

    Parameters
    ----------
    source
        A table or view name holding the chunk.
    now
        The ingest wall-clock time (timezone-aware): the default ``receivedAt`` and the end of
        the accepted time range.
    common
        Read records of the common shape without kinds and reasons (the default); ``False``
        sends every record through the full formulation (the tests compare the two).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now_lit = f"TIMESTAMPTZ {_sql_str(now.astimezone(timezone.utc).isoformat())}"
    keys = [key for f in FIELDS for key in f.spellings]
    shape = _sql_str(json.dumps({key: "JSON" for key in keys}))
    # json_transform parses once into a struct; a JSON null and a missing key are both NULL (absent)
    picks = []
    for f in FIELDS:
        slots = [f"x.{_quote(key)}" for key in f.spellings]
        first = slots[0] if len(slots) == 1 else f"coalesce({', '.join(slots)})"
        picks.append(f"CAST({first} AS VARCHAR) AS j_{f.column}")
    times = [f for f in FIELDS if f.kind == "time"]
    signature, pattern = _common_shape()
    # regexp_matches with anchors: RE2's full match is about half as fast here
    shaped = f"status = 'ok' AND regexp_matches({signature}, {_sql_str('^(?:' + pattern + ')$')}) AND {_common_rules()}"
    common_times = ", ".join(f"CASE WHEN common0 THEN {KINDS['time'].common_value(f)} END AS c_{f.column}" for f in times)
    common_time = _event_time(lambda f: f"j_{f.column} IS NOT NULL", lambda f: f"c_{f.column}")
    times_parse = " AND ".join(f"(j_{f.column} IS NULL OR c_{f.column} IS NOT NULL)" for f in times)
    in_range = f"c_event_time >= {_AFTER_1970} AND c_event_time <= {_LATEST}"
    # the full formulation, computed only for the records that are not of the common shape
    types = ", ".join(f"CASE WHEN NOT common THEN {_json_kind(f'j_{f.column}')} END AS t_{f.column}" for f in FIELDS)
    strings = ", ".join(
        f"CASE WHEN NOT common AND left(j_{f.column}, 1) = '\"' THEN {_string_of(f'j_{f.column}')} END AS s_{f.column}"
        for f in FIELDS
        if f.kind != "object"
    )
    values = ", ".join(
        f"CASE WHEN common THEN {f'c_{f.column}' if f.kind == 'time' else KINDS[f.kind].common_value(f)} "
        f"ELSE {KINDS[f.kind].value(f)} END AS v_{f.column}"
        for f in FIELDS
    )
    present = ", ".join(f"CASE WHEN NOT common THEN {_time_present(f)} END AS p_{f.column}" for f in times)
    steps = [KINDS[f.kind].steps(f) for f in FIELDS]
    helpers = "".join(
        f"), v{i} AS (\n    SELECT *, {', '.join(step[i] for step in steps if len(step) > i)} FROM v{i - 1 if i else ''}\n"
        for i in range(max(map(len, steps)))
    )
    last = f"v{max(map(len, steps)) - 1}" if any(steps) else "v"
    field_reasons = [r for f in FIELDS for r in KINDS[f.kind].reasons(f)]
    all_reasons = ",\n            ".join(field_reasons + message_reasons())
    big = MAX_MESSAGE_BYTES
    return f"""
WITH k0 AS (
    SELECT line, raw, strlen(raw) AS nbytes, strlen(raw) <= {big} AND json_valid(raw) AS parsed
    FROM (SELECT line, CASE WHEN ends_with(text, chr(13)) THEN rtrim(text, chr(13)) ELSE text END AS raw
          FROM {source})
    WHERE CASE WHEN strlen(raw) > 16 THEN true ELSE trim(raw, {_sql_str(_WS)}) <> '' END
), k1 AS (
    SELECT *, {_lenient_reasons("raw", "parsed")} AS lenient, {_depth("raw", "parsed")} AS depth FROM k0
), k AS (
    SELECT line, raw, nbytes, lenient, depth,
        CASE WHEN nbytes > {big} THEN 'big'
             WHEN NOT parsed THEN 'invalid'
             WHEN lenient IS NOT NULL THEN 'lenient'
             WHEN depth > {MAX_DEPTH} THEN 'deep'
             WHEN NOT regexp_matches(raw, '^[ \t\n\r]*[{{]') THEN 'notobj'
             ELSE 'ok' END AS status
    FROM k1
), x AS (
    SELECT line, raw, nbytes, status, lenient, depth,
        CASE WHEN status = 'ok' THEN json_transform(raw, {shape}) END AS x,
        CASE WHEN status = 'notobj' THEN json_type(raw) END AS top_type
    FROM k
), t AS (
    SELECT line, raw, nbytes, status, lenient, depth, top_type, {", ".join(picks)}, {now_lit} AS now_ FROM x
), c0 AS (
    SELECT *, {f"coalesce({shaped}, false)" if common else "false"} AS common0 FROM t
), c1 AS (
    SELECT *, {common_times} FROM c0
), c2 AS (
    SELECT *, CASE WHEN common0 THEN {common_time} END AS c_event_time FROM c1
), c AS (
    SELECT *, coalesce(common0 AND {times_parse} AND {in_range}, false) AS common FROM c2
), v AS (
    SELECT *, {types}, {strings} FROM c
{helpers}), w AS (
    SELECT *, {values} FROM {last}
), p AS (
    SELECT *, {present} FROM w
), m AS (
    SELECT *,
        CASE WHEN common THEN v_type
             WHEN t_type = 'VARCHAR' THEN lower(trim(v_type, {_sql_str(_WS)}))
             WHEN (t_type IS NULL OR t_type = 'NULL') AND v_event IS NOT NULL THEN 'track' END AS msg_type,
        CASE WHEN common THEN c_event_time
             ELSE {_event_time(lambda f: f"p_{f.column}", lambda f: f"v_{f.column}")} END AS event_time,
        CASE WHEN common THEN NULL WHEN p_timestamp_sent THEN 'timestamp'
             WHEN p_original_timestamp AND p_sent_at AND p_received_sent
                THEN 'clock-skew-corrected time (receivedAt - (sentAt - originalTimestamp))'
             WHEN p_original_timestamp THEN 'originalTimestamp'
             ELSE 'receivedAt' END AS time_source
    FROM p
), q AS (
    SELECT *,
        CASE WHEN common THEN NULL
            WHEN status = 'big' THEN 'message is ' || nbytes || ' bytes, over the 32 KiB limit'
            WHEN status = 'invalid' THEN 'invalid JSON'
            WHEN status = 'lenient' THEN lenient
            WHEN status = 'deep' THEN 'message is nested ' || depth || ' levels deep, over the limit of {MAX_DEPTH}'
            WHEN status = 'notobj' THEN 'message is ' || {_A_TYPE.format(t="upper(top_type)")} || ', not a JSON object'
            ELSE nullif(concat_ws('; ',
            {all_reasons}
            ), '')
        END AS reasons
    FROM m
)
SELECT
    line, raw, reasons,
    v_message_id AS message_id,
    msg_type AS type,
    CASE msg_type WHEN 'track' THEN v_event WHEN 'page' THEN 'Page Viewed'
                  WHEN 'screen' THEN 'Screen Viewed' END AS event,
    CASE msg_type WHEN 'page' THEN v_name WHEN 'screen' THEN v_name END AS name,
    event_time AS timestamp,
    v_user_id AS user_id,
    v_anonymous_id AS anonymous_id,
    v_previous_id AS previous_id,
    v_group_id AS group_id,
    v_original_timestamp AS original_timestamp,
    v_sent_at AS sent_at,
    coalesce(v_received_sent, now_) AS received_at,
    v_properties AS properties,
    v_traits AS traits,
    v_context AS context,
    CASE WHEN reasons IS NULL THEN md5(raw) END AS payload_hash,
    CASE WHEN reasons IS NULL THEN {id_hash_sql('v_message_id')} END AS id_hash,
    common
FROM q
"""


# -- canonical JSON (derived messageIds, conflict checks) ----------------------------------------
def canonical_json(message: Any) -> str:
    """Keys sorted, compact separators, UTF-8 kept: the same message always gives the same text."""
    return json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def derived_message_id(raw: str) -> str:
    """``"derived-" + sha256(canonical JSON)[:32]`` of a message without ``messageId`` (events.md).

    Examples
    --------
    >>> derived_message_id('{"b": 1, "a": "x"}') == derived_message_id('{"a":"x","b":1}')
    True
    """
    digest = hashlib.sha256(canonical_json(json.loads(raw)).encode("utf-8")).hexdigest()
    return "derived-" + digest[:32]


def same_payload(raw_a: str, raw_b: str) -> bool:
    """Whether two message texts are the same message up to key order and whitespace."""
    return canonical_json(json.loads(raw_a)) == canonical_json(json.loads(raw_b))

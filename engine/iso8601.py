"""The ISO-8601 spellings the engine reads, as DuckDB SQL and as Python, in one place.

Event times (events.md) and the ``datetime`` values of traits and predictions (traits.md:
"ISO-8601 strings (as event times)") must accept exactly the same strings, and a date typed in a
definition (``before_date``, ``between``) is read the same way, so all of them are built from
this one grammar: extended or basic format, ``T`` / ``t`` / space, reduced precision (``hh``,
``hh:mm``), ``.`` or ``,`` fractions (cut to microseconds), ``Z`` / ``z`` / ``±hh[[:]mm]``, no
offset meaning UTC. Basic format needs its ``T`` (bare digits are not ISO-8601). Week and
ordinal dates are not accepted (docs/ingest.md).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

#: Whitespace trimmed around time strings (JSON whitespace plus form feed / vertical tab).
WHITESPACE = " \t\n\r\f\v"

_OFFSET = "(?:[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)"
#: The common spelling, which DuckDB's cast reads as it is: extended format, ``T`` or space,
#: ``.`` fractions, ``Z`` or an offset (one regular expression, the fast path).
FAST = "[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.][0-9]+)?)?(?:Z|" + _OFFSET + ")?)?"
#: Every accepted spelling, as named parts.
_PARTS = ["y", "mo", "d", "h", "mi", "sec", "f", "tz"]
_TAIL = "(?:[.,]([0-9]+))?)?)?(Z|z|" + _OFFSET + ")?"
EXTENDED = "^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[Tt ]([0-9]{2})(?::([0-9]{2})(?::([0-9]{2})" + _TAIL + ")?$"
BASIC = "^([0-9]{4})([0-9]{2})([0-9]{2})[Tt]([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})" + _TAIL + "$"

_SHAPES = (re.compile(EXTENDED, re.ASCII), re.compile(BASIC, re.ASCII))


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def parts_sql(s: str) -> str:
    """SQL: the named parts (``y, mo, d, h, mi, sec, f, tz``) of the string expression ``s`` in
    any accepted spelling, else NULL."""
    names = "[" + ", ".join(_sql_str(n) for n in _PARTS) + "]"
    return " ".join(
        f"WHEN regexp_matches({s}, {_sql_str(pattern)}) THEN regexp_extract({s}, {_sql_str(pattern)}, {names})"
        for pattern in (EXTENDED, BASIC)
    ).join(["CASE ", " END"])


def canonical_sql(p: str) -> str:
    """SQL: the extended spelling DuckDB reads (``YYYY-MM-DD hh:mm:ss[.ffffff]±hh[:mm]``) of the
    parts ``p`` (an expression or column holding :func:`parts_sql`). Fractions are cut to
    microseconds (as DuckDB's own cast does)."""
    return (
        f"{p}.y || '-' || {p}.mo || '-' || {p}.d || ' ' || coalesce(nullif({p}.h, ''), '00') || ':' "
        f"|| coalesce(nullif({p}.mi, ''), '00') || ':' || coalesce(nullif({p}.sec, ''), '00') "
        f"|| CASE WHEN {p}.f <> '' THEN '.' || left({p}.f, 6) ELSE '' END "
        f"|| CASE WHEN {p}.tz IN ('', 'Z', 'z') THEN '+00' ELSE {p}.tz END"
    )


def timestamp_sql(s: str) -> str:
    """SQL: the TIMESTAMPTZ of the string expression ``s`` (already trimmed), NULL when it is not
    an accepted spelling or not a real instant (a 13th month, a 61st second)."""
    return (
        f"CASE WHEN regexp_full_match({s}, {_sql_str(FAST)}) THEN TRY_CAST({s} AS TIMESTAMPTZ) "
        f"ELSE TRY_CAST({canonical_sql(parts_sql(s))} AS TIMESTAMPTZ) END"
    )


def parse(text: str) -> datetime | None:
    """Python: the UTC instant of ``text`` (trimmed) in any accepted spelling, else ``None``;
    what :func:`timestamp_sql` gives (``24:00:00`` is the next midnight, as DuckDB reads it)."""
    text = text.strip(WHITESPACE)
    match = next((m for m in (shape.fullmatch(text) for shape in _SHAPES) if m), None)
    if match is None:
        return None
    y, mo, d, h, mi, sec, frac, tz = match.groups()
    hour, minute, second = int(h or 0), int(mi or 0), int(sec or 0)
    micros = int(((frac or "") + "000000")[:6])
    extra = timedelta(0)
    if hour == 24 and minute == second == micros == 0:
        hour, extra = 0, timedelta(days=1)
    try:
        moment = datetime(int(y), int(mo), int(d), hour, minute, second, micros, tzinfo=UTC)
        if tz not in (None, "Z", "z"):
            digits = tz[1:].replace(":", "")
            shift = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
            moment -= shift if tz[0] == "+" else -shift
        return moment + extra
    except (ValueError, OverflowError):
        return None

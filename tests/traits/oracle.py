"""A deliberately naive pure-Python reading of traits.md: one event, one trait, one profile at a time.

It shares nothing with the engine but the parsed definitions (plain data): conversions, operators,
windows, sessions and reductions are re-implemented here straight from the spec's tables.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tests.ingest.oracle import parse_iso

ABSENT = object()
WS = " \t\n\r\f\v"
NUM = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- reading and converting ------------------------------------------------------------------
def read(ev: Any, path: str) -> Any:
    """The raw JSON value at ``path``; ABSENT when a key is missing."""
    if path == "page_name" and ev.type == "page" or path == "screen_name" and ev.type == "screen":
        return ABSENT if ev.name is None else ev.name
    node: Any = ev.properties
    for key in path.split("."):
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return ABSENT
    return node


def is_missing(raw: Any) -> bool:
    return raw is ABSENT or raw is None


def to_text(raw: Any) -> str | None:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int | float):
        return json.dumps(raw)
    return None


def to_number(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        x = float(raw)
    elif isinstance(raw, str):
        s = raw.strip(WS)
        if not NUM.fullmatch(s):
            return None
        x = float(s)
    else:
        return None
    return x + 0.0 if math.isfinite(x) else None


def to_boolean(raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return None


def round_half_away(x: float) -> int:
    """Round as DuckDB's ``round`` does (half away from zero), exact for large doubles too."""
    whole = math.floor(abs(x))
    return int(math.copysign(whole + (abs(x) - whole >= 0.5), x))


def to_datetime(raw: Any) -> datetime | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        if not (-62135596800000 <= raw <= 253402300799999):
            return None
        return EPOCH + timedelta(microseconds=round_half_away(float(raw) * 1000))
    if isinstance(raw, str):
        # traits.md: "ISO-8601 strings (as event times, events.md)": the events oracle's reading
        return parse_iso(raw.strip(WS))
    return None


CONVERT = {"text": to_text, "number": to_number, "boolean": to_boolean, "datetime": to_datetime}


# -- conditions --------------------------------------------------------------------------------
def condition(c: Any, ev: Any, as_of: datetime) -> bool:
    raw = read(ev, c.property)
    op, v = c.operator, c.value
    if op == "not_exists":
        return is_missing(raw)
    if is_missing(raw):
        return False
    if op == "exists":
        return True
    if op in ("equals", "not_equals"):
        kind = "boolean" if isinstance(v, bool) else "text" if isinstance(v, str) else "number"
        x = CONVERT[kind](raw)
        if x is None:
            return False
        return (x == v) if op == "equals" else (x != v)
    if op in ("equals_one_of", "not_equals_one_of"):
        t, n = to_text(raw), to_number(raw)
        hit = any((isinstance(o, str) and t == o) or (not isinstance(o, str) and n == o) for o in v)
        convertible = (any(isinstance(o, str) for o in v) and t is not None) or (
            any(not isinstance(o, str) for o in v) and n is not None
        )
        return hit if op == "equals_one_of" else (convertible and not hit)
    if op in ("contains", "not_contains", "starts_with", "ends_with", "contains_one_of"):
        t = to_text(raw)
        if t is None:
            return False
        return {
            "contains": lambda: v in t,
            "not_contains": lambda: v not in t,
            "starts_with": lambda: t.startswith(v),
            "ends_with": lambda: t.endswith(v),
            "contains_one_of": lambda: any(s in t for s in v),
        }[op]()
    if op in ("greater_than", "greater_than_or_equal", "less_than", "less_than_or_equal", "between"):
        n = to_number(raw)
        if n is None:
            return False
        return {
            "greater_than": lambda: n > v,
            "greater_than_or_equal": lambda: n >= v,
            "less_than": lambda: n < v,
            "less_than_or_equal": lambda: n <= v,
            "between": lambda: v[0] <= n <= v[1],
        }[op]()
    if op in ("before_date", "after_date", "within_last_days"):
        d = to_datetime(raw)
        if d is None:
            return False
        if op == "before_date":
            return d < v
        if op == "after_date":
            return d > v
        return as_of - timedelta(days=v) <= d <= as_of
    if op in ("is_true", "is_false"):
        b = to_boolean(raw)
        return b is not None and b == (op == "is_true")
    raise AssertionError(op)


def conditions_hold(trait: Any, ev: Any, as_of: datetime) -> bool:
    results = [condition(c, ev, as_of) for c in trait.conditions]
    if not results:
        return True
    return all(results) if trait.match == "all" else any(results)


# -- windows -----------------------------------------------------------------------------------
def in_window(w: Any, t: datetime, as_of: datetime) -> bool:
    key = type(w).key
    if key == "all_time":
        return True
    if key == "within_days":
        return as_of - timedelta(days=w.days) < t
    if key == "within_hours":
        return as_of - timedelta(hours=w.hours) < t
    if key == "between_days_ago":
        return as_of - timedelta(days=w.end_days) < t <= as_of - timedelta(days=w.start_days)
    if key == "between":
        return w.start <= t <= w.end
    raise AssertionError(key)


def counting_events(trait: Any, evs: list[Any], as_of: datetime) -> list[Any]:
    """The counting events of one profile, in canonical order."""
    base = sorted(
        (e for e in evs
         if e.type in ("track", "page", "screen") and e.event == trait.event and e.timestamp <= as_of
         and conditions_hold(trait, e, as_of)),
        key=lambda e: (e.timestamp, e.message_id),
    )
    if type(trait.window).key != "session_minutes":
        return [e for e in base if in_window(trait.window, e.timestamp, as_of)]
    if not base:
        return []
    gap = timedelta(minutes=trait.window.minutes)
    if as_of - base[-1].timestamp >= gap:
        return []
    start = 0
    for i in range(1, len(base)):
        if base[i].timestamp - base[i - 1].timestamp >= gap:
            start = i
    return base[start:]


# -- reductions --------------------------------------------------------------------------------
def value(trait: Any, evs: list[Any], as_of: datetime) -> Any:
    counting = counting_events(trait, evs, as_of)
    if trait.type == "event_counter":
        return len(counting)
    conv = CONVERT[trait.value_type]
    vals = [(e, conv(read(e, trait.property))) for e in counting]
    vals = [(e, x) for e, x in vals if x is not None]
    xs = [x for _, x in vals]
    if trait.type == "aggregation":
        if not xs:
            return None
        total = 0.0
        for x in sorted(xs):
            total += x
        return {"sum": total, "avg": total / len(xs), "min": min(xs), "max": max(xs)}[trait.function]
    if trait.type == "first":
        return xs[0] if xs else None
    if trait.type == "last":
        return xs[-1] if xs else None
    if trait.type == "most_frequent":
        counts = Counter(xs)
        ok = [(n, x) for x, n in counts.items() if n >= trait.min_frequency]
        if not ok:
            return None
        best = max(n for n, _ in ok)
        return min(x for n, x in ok if n == best)
    if trait.type == "unique_list_count":
        return len(set(xs))
    if trait.type == "unique_list":
        first_seen: list[Any] = []
        for x in xs:
            if x not in first_seen:
                first_seen.append(x)
        return sorted(first_seen[: trait.max_items])
    raise AssertionError(trait.type)


def compute(traits: Any, events: list[Any], profiles: list[str], as_of: datetime) -> dict[str, dict[str, Any]]:
    """``{profile_id: {trait: value}}`` for every profile."""
    by_profile: dict[str, list[Any]] = {p: [] for p in profiles}
    for e in events:
        if e.profile_id is not None:
            by_profile.setdefault(e.profile_id, []).append(e)
    return {p: {t.name: value(t, evs, as_of) for t in traits} for p, evs in sorted(by_profile.items())}


def stats(trait: Any, events: list[Any], as_of: datetime) -> tuple[int, int, int, list[str]]:
    """(counted, missing, rejected, first 5 rejected message ids) over all resolved events."""
    by_profile: dict[str, list[Any]] = {}
    for e in events:
        if e.profile_id is not None:
            by_profile.setdefault(e.profile_id, []).append(e)
    counted = missing = 0
    rejected: list[Any] = []
    for evs in by_profile.values():
        for e in counting_events(trait, evs, as_of):
            counted += 1
            if trait.type == "event_counter":
                continue
            raw = read(e, trait.property)
            if is_missing(raw):
                missing += 1
            elif CONVERT[trait.value_type](raw) is None:
                rejected.append(e)
    rejected.sort(key=lambda e: (e.timestamp, e.message_id))
    return counted, missing, len(rejected), [e.message_id for e in rejected[:5]]


def bare_date(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)

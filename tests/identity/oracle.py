"""A deliberately naive identity oracle: ``identity.md``'s per-event loop, literally, in Python.

It shares no code with the engine (its own extraction, normalisation and blocking), keeps
everything in dicts and rescans the identifiers of every profile involved at every step (an
identifier -> profile dict only finds ``P``, so a 100k-event benchmark sample finishes). Events are dicts in the store's
shape: ``message_id, type, timestamp (aware datetime), user_id, anonymous_id, traits, context,
properties`` (the JSON columns as Python values).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

_PERIOD = {
    "ever": None,
    "daily": timedelta(days=1),
    "weekly": timedelta(days=7),
    "monthly": timedelta(days=30),
    "annually": timedelta(days=365),
}
_BLOCKED = {"null", "undefined", "anonymous", "-1", "unknown", "none", "n/a"}


def profile_id(message_id: str) -> str:
    return "prf_" + hashlib.sha256(message_id.encode()).hexdigest()[:16]


def _get(doc: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(doc, dict) or k not in doc:
            return None
        doc = doc[k]
    return doc


def _text(v: Any) -> str | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return str(v) if isinstance(v, int) else repr(v)
    return None


def _lower(s: str) -> str:
    """Lower-casing per code point (Unicode's simple case mapping): a final sigma is no special
    case, and the one letter whose full mapping is two code points (U+0130) maps to ``i``."""
    return "".join("i" if c == "\u0130" else c.lower() for c in s)


def _norm(type_: str, v: Any) -> str | None:
    s = _text(v)
    if s is None:
        return None
    s = s.strip(" \t\n\r\x0b\x0c")
    if type_ == "email":
        s = _lower(s)
    if type_ == "phone":
        for ch in " -.()":
            s = s.replace(ch, "")
    return s if s != "" else None


def raw_identifiers(ev: dict[str, Any], rules: Any) -> list[tuple[str, Any]]:
    """Every (type, raw value) the spec's table of places yields, before normalisation."""
    out: list[tuple[str, Any]] = [("user_id", ev.get("user_id")), ("anonymous_id", ev.get("anonymous_id"))]
    traits = ev.get("traits") if ev["type"] != "group" else None
    ctx = ev.get("context")
    for key in ("email", "phone"):
        out.append((key, _get(traits, key)))
        out.append((key, _get(ctx, "traits", key)))
    dtype = _text(_get(ctx, "device", "type"))
    dtype = dtype.strip(" \t\n\r\x0b\x0c").lower() if dtype is not None else None
    if dtype in ("android", "ios"):
        out.append((f"{dtype}.id", _get(ctx, "device", "id")))
        if _get(ctx, "device", "adTrackingEnabled") is True:
            out.append((f"{dtype}.idfa", _get(ctx, "device", "advertisingId")))
        out.append((f"{dtype}.push_token", _get(ctx, "device", "token")))
    out.append(("ga_client_id", _get(ctx, "integrations", "Google Analytics", "clientId")))
    ext = _get(ctx, "externalIds")
    if isinstance(ext, list):
        for x in ext:
            if not isinstance(x, dict) or x.get("collection") != "users":
                continue
            if x.get("encoding", "none") not in ("none", None):
                continue
            t = x.get("type")
            if isinstance(t, str):
                out.append((t.strip(" \t\n\r\x0b\x0c").lower(), x.get("id")))
    for rule in rules.identifiers:
        for src in rule.sources:
            keys = src.split(".")
            if keys[0] == "traits":
                out.append((rule.type, _get(traits, *keys[1:])))
            elif keys[0] == "context":
                out.append((rule.type, _get(ctx, *keys[1:])))
            elif keys[0] == "properties":
                out.append((rule.type, _get(ev.get("properties"), *keys[1:])))
            else:
                out.append((rule.type, _get(ev.get("raw"), *keys)))
    return out


def blocked(rules: Any, type_: str, value: str) -> bool:
    if value.lower() in _BLOCKED or value in {_norm(type_, v) for v in rules.blocked_values}:
        return True
    if value and set(value) <= {"0", "-"}:
        return True
    return any(re.fullmatch(p, value) for p in rules.blocked_patterns)


@dataclass
class OracleResult:
    profiles: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # id -> (by, at)
    identifiers: dict[str, dict[tuple[str, str], tuple[datetime, str]]] = field(default_factory=dict)
    event_profiles: dict[str, str] = field(default_factory=dict)
    merges: list[tuple[str, str, str, datetime]] = field(default_factory=list)
    violations: list[tuple[str, datetime, str, int, str, str]] = field(default_factory=list)
    blocked: Counter = field(default_factory=Counter)
    traits: dict[str, dict[str, Any]] = field(default_factory=dict)
    unresolved: set[str] = field(default_factory=set)


def oracle_resolve(events: list[dict[str, Any]], rules: Any) -> OracleResult:
    """The spec's algorithm, one event at a time in canonical order."""
    rule_of = {r.type: r for r in rules.identifiers}
    prio = {r.type: r.priority for r in rules.identifiers}
    res = OracleResult()
    # live profiles: id -> {identifier: (gain time, gain message)}; creation order for "oldest"
    live: dict[str, dict[tuple[str, str], tuple[datetime, str]]] = {}
    created: dict[str, tuple[datetime, str]] = {}
    forward: dict[str, str] = {}  # merged profile -> the profile it went into
    owner: dict[tuple[str, str], str] = {}  # identifier -> the live profile holding it
    at_time: dict[str, str] = {}  # event -> profile it joined at its time

    for ev in sorted(events, key=lambda e: (e["timestamp"], e["message_id"])):
        mid, t = ev["message_id"], ev["timestamp"]
        seen: set[tuple[str, str]] = set()
        ids: list[tuple[str, str]] = []
        blocked_here: set[tuple[str, str]] = set()
        for type_, raw in raw_identifiers(ev, rules):
            if type_ not in rule_of:
                continue
            value = _norm(type_, raw)
            if value is None:
                continue
            if blocked(rules, type_, value):
                blocked_here.add((type_, value))
                continue
            if (type_, value) not in seen:
                seen.add((type_, value))
                ids.append((type_, value))
        for b in blocked_here:
            res.blocked[b] += 1
        ids.sort(key=lambda i: (prio[i[0]], i[0], i[1]))
        while True:
            if not ids:
                res.unresolved.add(mid)
                break
            owners = {owner[i] for i in ids if i in owner}
            merged: dict[tuple[str, str], datetime] = {}
            for p in owners:
                for i, (gained, _) in live[p].items():
                    merged[i] = gained
            for i in ids:
                merged.setdefault(i, t)
            broken = None
            for rule in rules.identifiers if owners else ():  # "if P is empty: create", no check
                period = _PERIOD[rule.period]
                n = sum(
                    1
                    for (ty, _), gained in merged.items()
                    if ty == rule.type and (period is None or t - period < gained <= t)
                )
                if n > rule.limit:
                    broken = rule
                    break
            if broken is None:
                if not owners:
                    pid = profile_id(mid)
                    live[pid] = {}
                    created[pid] = (t, mid)
                else:
                    pid = min(owners, key=lambda p: created[p])
                    for q in sorted(owners - {pid}, key=lambda p: created[p]):
                        for i in live[q]:
                            owner[i] = pid
                        live[pid].update(live.pop(q))
                        forward[q] = pid
                        res.merges.append((q, pid, mid, t))
                for i in ids:
                    live[pid].setdefault(i, (t, mid))
                    owner[i] = pid
                at_time[mid] = pid
                break
            dropped = ids.pop()
            res.violations.append((mid, t, broken.type, broken.limit, dropped[0], dropped[1]))

    def final(p: str) -> str:
        while p in forward:
            p = forward[p]
        return p

    for pid, idents in live.items():
        res.profiles[pid] = (created[pid][1], created[pid][0])
        res.identifiers[pid] = dict(idents)
    res.event_profiles = {m: final(p) for m, p in at_time.items()}
    for ev in sorted(events, key=lambda e: (e["timestamp"], e["message_id"])):
        pid = res.event_profiles.get(ev["message_id"])
        if pid is None or ev["type"] != "identify" or not isinstance(ev.get("traits"), dict):
            continue
        current = res.traits.setdefault(pid, {})
        for k, v in ev["traits"].items():
            if v is None:
                current.pop(k, None)
            else:
                current[k] = v
    res.traits = {p: t for p, t in res.traits.items() if t}
    return res

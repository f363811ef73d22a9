"""Build events straight into a store, and read the identity tables in the oracle's shape."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa

from engine.store import Store
from tests.identity.oracle import OracleResult

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def ev(
    mid: str,
    minute: float = 0,
    *,
    type: str = "track",
    user_id: str | None = None,
    anonymous_id: str | None = None,
    traits: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    at: datetime | None = None,
    **raw_extra: Any,
) -> dict[str, Any]:
    """One event in the store's shape; time is ``T0 + minute`` unless ``at`` is given."""
    when = at if at is not None else T0 + timedelta(minutes=minute)
    raw = {
        "messageId": mid,
        "type": type,
        "timestamp": when.isoformat(),
        **({"userId": user_id} if user_id is not None else {}),
        **({"anonymousId": anonymous_id} if anonymous_id is not None else {}),
        **({"traits": traits} if traits is not None else {}),
        **({"context": context} if context is not None else {}),
        **({"properties": properties} if properties is not None else {}),
        **raw_extra,
    }
    return {
        "message_id": mid,
        "type": type,
        "timestamp": when,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "traits": traits,
        "context": context,
        "properties": properties,
        "raw": raw,
    }


def load(store: Store, events: list[dict[str, Any]], *, ingest_id: int = 1) -> None:
    """INSERT events into ``events`` (what ingest would store for these messages)."""
    if not events:
        return

    def js(v: Any) -> str | None:
        return None if v is None else json.dumps(v)

    table = pa.table(
        {
            "message_id": [e["message_id"] for e in events],
            "type": [e["type"] for e in events],
            "event": ["Test" if e["type"] == "track" else None for e in events],
            "timestamp": pa.array([e["timestamp"] for e in events], pa.timestamp("us", tz="UTC")),
            "user_id": [e["user_id"] for e in events],
            "anonymous_id": [e["anonymous_id"] for e in events],
            "properties": [js(e["properties"]) for e in events],
            "traits": [js(e["traits"]) for e in events],
            "context": [js(e["context"]) for e in events],
            "raw": [json.dumps(e["raw"]) for e in events],
            "payload_hash": [hashlib.sha256(json.dumps(e["raw"]).encode()).hexdigest() for e in events],
        }
    )
    store.con.register("_test_events", table)
    try:
        store.con.execute(
            f"""INSERT INTO events (message_id, type, event, timestamp, user_id, anonymous_id,
                properties, traits, context, raw, payload_hash, ingest_id)
            SELECT message_id, type, event, timestamp, user_id, anonymous_id,
                properties::JSON, traits::JSON, context::JSON, raw::JSON, payload_hash, {ingest_id}
            FROM _test_events"""
        )
    finally:
        store.con.unregister("_test_events")


def engine_result(store: Store) -> OracleResult:
    """The identity tables, in the oracle's shape, for a whole-result comparison."""
    con = store.con
    res = OracleResult()
    for pid, by, at in con.execute("SELECT profile_id, created_by, created_at FROM profiles").fetchall():
        res.profiles[pid] = (by, at)
        res.identifiers[pid] = {}
    for pid, ty, value, at, mid in con.execute(
        "SELECT profile_id, type, value, first_seen_at, message_id FROM profile_identifiers"
    ).fetchall():
        res.identifiers.setdefault(pid, {})[(ty, value)] = (at, mid)
    res.event_profiles = dict(con.execute("SELECT message_id, profile_id FROM event_profiles").fetchall())
    res.merges = [
        tuple(r)
        for r in con.execute(
            "SELECT merged_profile_id, into_profile_id, message_id, timestamp FROM identity_merges"
        ).fetchall()
    ]
    res.violations = [
        tuple(r)
        for r in con.execute(
            "SELECT message_id, timestamp, rule_type, limit_value, dropped_type, dropped_value "
            "FROM identity_violations ORDER BY timestamp, message_id, rowid"
        ).fetchall()
    ]
    res.blocked = Counter(
        {(t, v): n for t, v, n in con.execute("SELECT type, value, events FROM identity_blocked").fetchall()}
    )
    for pid, key, value in con.execute("SELECT profile_id, key, value FROM profile_traits").fetchall():
        res.traits.setdefault(pid, {})[key] = json.loads(value)
    all_ids = {r[0] for r in con.execute("SELECT message_id FROM events").fetchall()}
    res.unresolved = all_ids - set(res.event_profiles)
    return res


def assert_same(engine: OracleResult, oracle: OracleResult) -> None:
    """Profile for profile: ids, identifiers (with gain), events, merges, violations, traits."""
    assert set(engine.profiles) == set(oracle.profiles)
    assert engine.profiles == oracle.profiles
    assert engine.identifiers == oracle.identifiers
    assert engine.event_profiles == oracle.event_profiles
    assert engine.unresolved == oracle.unresolved
    key = lambda m: (m[3], m[2], m[0])  # noqa: E731
    assert sorted(engine.merges, key=key) == sorted(oracle.merges, key=key)
    assert engine.violations == oracle.violations
    assert engine.blocked == oracle.blocked
    assert engine.traits == oracle.traits


def event_map(store: Store) -> dict[str, str]:
    """``event_profiles`` as ``message_id -> profile_id`` (empty before the first resolve)."""
    if not store.has_table("event_profiles"):
        return {}
    return dict(store.con.execute("SELECT message_id, profile_id FROM event_profiles").fetchall())


def assert_feed_is_the_diff(store: Store, run_id: int, before: dict[str, str], after: dict[str, str]) -> None:
    """The change feed of an incremental run lists exactly the events whose row it added, moved
    or removed, with their profile before and after (None: no row), once each."""
    rows = store.con.execute(
        "SELECT message_id, profile_id, previous_profile_id FROM identity_event_changes WHERE run_id = ?",
        [run_id],
    ).fetchall()
    feed = {m: (p, q) for m, p, q in rows}
    assert len(feed) == len(rows)
    diff = {m: (after.get(m), before.get(m)) for m in before.keys() | after.keys()
            if after.get(m) != before.get(m)}
    assert feed == diff

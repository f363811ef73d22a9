"""Test stores built by hand: events, profiles and event_profiles, no ingest or resolve needed."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.store import Store

_GENERATION = itertools.count()


@dataclass
class Ev:
    """One stored event as the trait engine sees it."""

    message_id: str
    profile_id: str | None
    event: str
    timestamp: datetime
    properties: dict[str, Any] | None = field(default_factory=dict)
    type: str = "track"
    name: str | None = None


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def make_store(events: list[Ev], profiles: list[str] | None = None, *, store: Store | None = None) -> Store:
    """An in-memory store holding ``events``; every profile id mentioned (and ``profiles``) exists.

    Given ``store``, its events and profiles are replaced instead (cheaper than a new store); its
    derived columns are recomputed for the new rows as ingest would.
    """
    if store is None:
        store = Store.open(None)
    con = store.con
    for table in ("events", "profiles", "event_profiles"):
        con.execute(f"DELETE FROM {table}")
    rows = []
    for e in events:
        props = None if e.properties is None else json.dumps(e.properties, ensure_ascii=False)
        raw = json.dumps({"messageId": e.message_id, "type": e.type})
        rows.append(
            [e.message_id, e.type, e.event, e.name, e.timestamp, props, raw,
             hashlib.sha256(raw.encode()).hexdigest(), 1]
        )
    if rows:
        con.executemany(
            "INSERT INTO events (message_id, type, event, name, timestamp, properties, raw, payload_hash, ingest_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    ids = sorted({e.profile_id for e in events if e.profile_id} | set(profiles or []))
    if ids:
        con.executemany(
            "INSERT INTO profiles VALUES (?, ?, ?)", [[p, "m", datetime(2020, 1, 1, tzinfo=UTC)] for p in ids]
        )
    links = [[e.message_id, e.profile_id] for e in events if e.profile_id]
    if links:
        con.executemany("INSERT INTO event_profiles VALUES (?, ?)", links)
    store.fill_derived_columns("true")
    # the events were replaced behind the engine's back (real events are append-only and a
    # message id never changes content): a new identity state, and no incremental trait state
    store.set_meta("identity_state", f"test-{next(_GENERATION)}")
    con.execute("DELETE FROM meta WHERE key = 'traits_state'")
    return store


def frame_values(store: Store, traits, as_of: datetime) -> dict[str, dict[str, Any]]:
    """``{profile_id: {trait: value}}`` from :func:`engine.compute.trait_frame`."""
    from engine.compute import trait_frame

    frame = trait_frame(store, traits, as_of=as_of)
    return {row["profile_id"]: {k: v for k, v in row.items() if k != "profile_id"} for row in frame.iter_rows(named=True)}


def one(traits_defs: list[dict], events: list[Ev], as_of: datetime, profile: str = "P") -> dict[str, Any]:
    """Parse ``traits_defs``, compute them over ``events`` and return ``profile``'s values."""
    from traits.registry import parse_traits

    traits = parse_traits(traits_defs, path="test.toml")
    with make_store(events, [profile]) as store:
        return frame_values(store, traits, as_of)[profile]

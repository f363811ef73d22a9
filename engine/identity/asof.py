"""Identity as of an instant: which profile each event belongs to when later events do not exist.

The spec's algorithm runs in canonical order ``(timestamp, message_id)`` and only looks back, so
the identity "as of T" is the state after every event with ``timestamp <= T``: what resolving
that prefix from scratch gives, names included (a profile id comes from its creating event).
The stored tables hold it without re-resolving: each resolved event keeps the profile it joined
when it was processed (``event_profiles.joined_profile_id``), profiles only ever merge
(``identity_merges``, each with its event's timestamp) and identifiers never leave a profile.
The profile of an event as of T is its joined profile followed through the merges up to T;
events after T have none. Following is pointer doubling over the merges in SQL (a few joins of
the merge table, however long a chain), not a loop per profile.

When T is at or after every stored event the map is ``event_profiles`` itself, at no cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from engine.errors import IdentityError, NotFoundError
from engine.store import Store

#: Temp tables this module (re)creates on the store's connection.
ROOTS = "_asof_roots"
MAP = "_asof_map"
IDENTIFIERS = "_asof_identifiers"


@dataclass(frozen=True, slots=True)
class EventMap:
    """A relation ``(message_id, profile_id)``: the resolved events as of ``as_of``.

    ``latest`` says it is ``event_profiles`` itself (``as_of`` is at or after every stored
    event), so a consumer may keep using state built from the latest map.
    """

    relation: str
    latest: bool
    as_of: datetime

    @property
    def profiles(self) -> str:
        """A relation of ``profile_id``: the profiles as of ``as_of``. Those of the map, and a
        profile of ``profiles`` created by then (the same for a resolved store; a store built
        by hand may hold profiles without events)."""
        if self.latest:
            return "profiles"
        return (
            f"(SELECT DISTINCT profile_id FROM {self.relation} UNION "
            f"SELECT profile_id FROM profiles WHERE created_at <= TIMESTAMPTZ '{self.as_of.isoformat()}')"
        )


def latest_event_time(store: Store) -> datetime | None:
    """The timestamp of the last stored event (``None`` when there is none)."""
    return store.first_row("SELECT max(timestamp) FROM events")[0]


def is_latest(store: Store, as_of: datetime) -> bool:
    """Whether identity as of ``as_of`` is the latest one: no stored event comes after it."""
    last = latest_event_time(store)
    return last is None or last <= as_of


def has_joined_column(store: Store) -> bool:
    """Whether ``event_profiles`` records the profile each event joined (identity layout >= 5)."""
    return bool(store.first_row(
        "SELECT count(*) FROM information_schema.columns WHERE table_catalog = current_database() "
        "AND table_schema = 'main' AND "
        "table_name = 'event_profiles' AND column_name = 'joined_profile_id'"
    )[0])


def joined_sql(store: Store, alias: str) -> str:
    """The joined-profile column of ``event_profiles`` (``alias``): its final profile for a store
    without merges built by hand (a profile that never merged is the one its events joined)."""
    if has_joined_column(store):
        return f"coalesce({alias}.joined_profile_id, {alias}.profile_id)"
    if store.first_row("SELECT count(*) FROM identity_merges")[0]:
        raise IdentityError(
            "the identity tables were resolved by an older version of profiles, which did not "
            "record what each event joined: run 'profiles resolve' (a full rebuild, once)"
        )
    return f"{alias}.profile_id"


def build_roots(store: Store, as_of: datetime) -> str:
    """Temp table ``_asof_roots(profile_id, root)``: every profile merged away by ``as_of``
    and the profile it had become at ``as_of``. Returns its name."""
    return merge_roots(store.con, ROOTS, as_of)


def merge_roots(con: duckdb.DuckDBPyConnection, name: str, as_of: datetime | None = None) -> str:
    """Temp table ``name(profile_id, root)``: every profile merged away (by ``as_of`` when
    given) and the profile it had become then (its root through ``identity_merges``)."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {name} AS
        SELECT merged_profile_id AS profile_id, into_profile_id AS root
        FROM identity_merges WHERE ? OR timestamp <= ?""",
        [as_of is None, as_of],
    )
    # pointer doubling: each pass follows every pointer one hop further up the chain it now
    # points into, so a chain of length k settles in log2(k) passes
    while con.execute(
        f"SELECT count(*) FROM {name} r JOIN {name} n ON n.profile_id = r.root"
    ).fetchall()[0][0]:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {name} AS
            SELECT r.profile_id, coalesce(n.root, r.root) AS root
            FROM {name} r LEFT JOIN {name} n ON n.profile_id = r.root"""
        )
    return name


def event_map(store: Store, as_of: datetime, *, force: bool = False, later: bool = False) -> EventMap:
    """The resolved events and their profiles as of ``as_of`` (see the module docstring).

    ``force`` builds the temp table even when ``event_profiles`` would do (tests use it to
    check the fast path against the general one). ``later`` keeps the events after ``as_of``
    too, under the profile that the profile they joined was part of at ``as_of`` (explanations
    list them as "after as_of"); one that joined a profile created later keeps that profile's id,
    which names no profile as of ``as_of``.
    """
    if not force and is_latest(store, as_of):
        return EventMap("event_profiles", True, as_of)
    joined = joined_sql(store, "ep")
    build_roots(store, as_of)
    store.con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {MAP} AS
        SELECT ep.message_id, coalesce(r.root, {joined}) AS profile_id
        FROM event_profiles ep JOIN events e ON e.message_id = ep.message_id
        LEFT JOIN {ROOTS} r ON r.profile_id = {joined}
        WHERE e.timestamp <= ? OR ?""",
        [as_of, later],
    )
    return EventMap(MAP, False, as_of)


def drop_temps(store: Store) -> None:
    """Drop this module's temp tables (a map holds a row per resolved event)."""
    for name in (MAP, ROOTS, IDENTIFIERS):
        store.con.execute(f"DROP TABLE IF EXISTS {name}")


def identifiers_as_of(store: Store, as_of: datetime) -> str:
    """Temp table ``_asof_identifiers(profile_id, type, value, first_seen_at, message_id)``:
    the identifiers attached by ``as_of`` and the profile holding each then (the one its gain
    event joined, followed through the merges up to ``as_of``). Returns its name."""
    if store.first_row(
        "SELECT count(*) FROM information_schema.columns WHERE table_catalog = current_database() "
        "AND table_schema = 'main' AND "
        "table_name = 'profile_identifiers' AND column_name = 'origin_profile_id'"
    )[0]:
        # layout 6 records it with the identifier: no join of the event map
        joined, source = "pi.origin_profile_id", "profile_identifiers pi"
    else:
        joined = joined_sql(store, "g")
        source = "profile_identifiers pi JOIN event_profiles g ON g.message_id = pi.message_id"
    build_roots(store, as_of)
    store.con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {IDENTIFIERS} AS
        SELECT coalesce(r.root, {joined}) AS profile_id, pi.type, pi.value, pi.first_seen_at,
               pi.message_id
        FROM {source}
        LEFT JOIN {ROOTS} r ON r.profile_id = {joined}
        WHERE pi.first_seen_at <= ?""",
        [as_of],
    )
    return IDENTIFIERS


def traits_sql(relation: str) -> str:
    """Identify traits per profile of an event map ``relation``: per key the latest identify in
    canonical order wins, a JSON null removes the key (as ``profile_traits`` holds them).
    Columns ``profile_id, key, value, message_id, timestamp``."""
    return f"""SELECT profile_id, key, value, message_id, timestamp FROM (
            SELECT m.profile_id, k.key, k.value, ev.message_id, ev.timestamp,
                   row_number() OVER (PARTITION BY m.profile_id, k.key
                                      ORDER BY ev.timestamp DESC, ev.message_id DESC, k.id) AS rn
            FROM {relation} m JOIN events ev ON ev.message_id = m.message_id,
                 json_each(ev.traits) k
            WHERE ev.type = 'identify' AND json_type(ev.traits) = 'OBJECT'
        )
        WHERE rn = 1 AND json_type(value) <> 'NULL'"""


def profile_as_of(store: Store, profile_id: str, as_of: datetime) -> str:
    """The profile that ``profile_id`` (current or merged away) was, or had become, at ``as_of``.

    Raises
    ------
    NotFoundError
        When it did not exist yet at ``as_of`` (created by a later event).
    """
    emap = event_map(store, as_of)
    joined = joined_sql(store, "ep")

    def profiles_of(where: str) -> list[str]:
        return [r[0] for r in store.con.execute(
            f"""SELECT DISTINCT m.profile_id FROM event_profiles ep
            JOIN {emap.relation} m ON m.message_id = ep.message_id WHERE {where} ORDER BY 1""",
            [profile_id],
        ).fetchall()]

    # the events that joined it all lead to one root: what it was at as_of
    became = profiles_of(f"{joined} = ?")
    if became:
        return became[0]
    if store.first_row(
        "SELECT count(*) FROM profiles WHERE profile_id = ? AND created_at <= ?", [profile_id, as_of]
    )[0]:
        return profile_id  # a profile without events (stores built by hand)
    earlier = profiles_of("ep.profile_id = ?")
    hint = (
        f"; its events then belonged to {', '.join(earlier[:5])}{', ...' if len(earlier) > 5 else ''}"
        if earlier else ""
    )
    raise NotFoundError(f"profile {profile_id!r} did not exist yet as of {as_of.isoformat()}{hint}")

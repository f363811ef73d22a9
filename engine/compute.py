"""Computed traits against the store: the only trait module that touches DuckDB.

``compute_traits`` registers the typed property columns the definitions read, brings the stored
per-profile state (``trait_state``: partial aggregates of the one-pass plan of :mod:`traits.plan`)
up to date, fully or incrementally, and rewrites ``trait_values`` / ``trait_stats`` and appends to
``trait_runs`` in one transaction. ``trait_frame`` returns the same values without writing (for
point-in-time features), ``explain_trait`` says why one profile has its value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl
from rich.table import Table

from engine.errors import NotFoundError, StoreError
from engine.identity.asof import EventMap, drop_temps, event_map, profile_as_of
from engine.identity.resolve import FEED_KEY
from engine.progress import Progress
from engine.store import Store, quote
from traits.base import Trait, ValueTrait
from traits.explain import Explanation, explain
from traits.plan import EVENT_TYPES, Plan, derived_columns, utc
from traits.values import sql_str

_AGG = "__trait_agg"


@dataclass(frozen=True, slots=True, kw_only=True)
class ComputeReport:
    """What a compute run did.

    Parameters
    ----------
    with_value
        Per trait, the profiles with a value: non-null, and for counts and lists non-zero / non-empty.
    """

    as_of: datetime
    profiles: int
    traits: tuple[str, ...]
    seconds: float
    with_value: dict[str, int] = field(default_factory=dict)
    columns_added: tuple[str, ...] = ()
    full: bool = True
    recomputed: int | None = None
    merged: int | None = None
    dropped: int | None = None
    rebuilt: tuple[str, ...] = ()
    #: How an incremental run learnt what identity moved: ``feed`` (the identity's event-level
    #: change feed), ``change log`` (its profile change log, then one scan of the map restricted
    #: to those profiles), ``map`` (fingerprints over the whole map); None: identity unchanged.
    identity_pass: str | None = None

    def __rich__(self) -> Table:
        table = Table(
            title=f"Computed {len(self.traits)} traits for {self.profiles} profiles "
            f"as of {self.as_of.isoformat()} in {self.seconds:.2f} s"
        )
        table.add_column("trait")
        table.add_column("profiles with a value", justify="right")
        for name in self.traits:
            table.add_row(name, f"{self.with_value.get(name, 0)}")
        notes = []
        if self.full:
            notes.append("full recompute")
        else:
            notes.append(
                f"incremental: {self.merged} profiles merged, {self.recomputed} recomputed, "
                f"{self.dropped} dropped"
            )
            if self.rebuilt:
                notes.append(f"rebuilt (definition changed): {', '.join(self.rebuilt)}")
        if self.columns_added:
            notes.append(f"{len(self.columns_added)} property columns added to the events")
        table.caption = "; ".join(notes)
        return table


def definitions_hash(traits: Sequence[Trait]) -> str:
    """One hash of every trait's name and semantic hash, in order."""
    text = "\n".join(f"{t.name}:{t.semantic_hash}" for t in traits)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _require_profiles(store: Store) -> None:
    if not store.has_table("profiles") or not store.has_table("event_profiles"):
        raise StoreError("the store has no profiles yet: run 'profiles resolve' first")
    if store.get_meta("identity_state") is None:
        con = store.con
        no_profiles = con.execute("SELECT count(*) = 0 FROM profiles").fetchall()[0][0]
        has_events = con.execute("SELECT count(*) > 0 FROM events").fetchall()[0][0]
        if no_profiles and has_events:
            raise StoreError("the store has events but no profiles: run 'profiles resolve' first")


def _prepare(store: Store, traits: Sequence[Trait], progress: Progress) -> tuple[str, ...]:
    _require_profiles(store)
    plan_columns = derived_columns(traits)
    existing = {c.name for c in store.derived_columns()}
    missing = [c for c in plan_columns if c.name not in existing]
    if not missing:
        store.ensure_derived_columns(plan_columns)  # still checks the definitions agree
        return ()
    with progress.step("Adding property columns to events", total=len(missing)) as step:
        added = []
        for col in missing:
            added += store.ensure_derived_columns([col])
            step.advance()
    return tuple(added)


def _with_value_sql(traits: Sequence[Trait]) -> str:
    parts = []
    for t in traits:
        c = quote(t.name)
        if t.output_sql_type == "BIGINT":
            parts.append(f"count(*) FILTER (WHERE {c} > 0)")
        elif t.output_sql_type.endswith("[]"):
            parts.append(f"count(*) FILTER (WHERE len({c}) > 0)")
        else:
            parts.append(f"count({c})")
    return "SELECT " + (", ".join(parts) or "0") + " FROM trait_values"


# -- incremental bookkeeping -----------------------------------------------------------------------
#: Version of the stored state layout; another value means a full rebuild.
STATE_VERSION = 4  # 3: most_frequent keeps a histogram, not every value; 4: trait_events.seq
_META = "traits_state"
#: Temporary tables of one run.
_TEMPS = ("__t_ids", "__t_nev", "__t_nevt", "__t_rev", "__t_old", "__t_ren", "__t_orph", "__t_dl", "__t_fp", "__t_new", "__t_slice", "__t_feed", "__t_rmap", "__t_newfp", "__t_touched", "__t_r", "__t_d", "__t_m", "__t_rb", _AGG)


def state_key(trait: Trait) -> str:
    """The prefix of a trait's state columns: its semantic hash (a description edit keeps it)."""
    return "h" + trait.semantic_hash[:12]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Previous:
    """What the stored state is a function of (meta ``traits_state``)."""

    as_of: datetime
    identity: str | None
    watermark: int
    keys: tuple[str, ...]
    names: tuple[str, ...]
    #: ``meta.identity_run`` the state was read at: the change log after it lists what moved.
    run: int | None = None
    #: What ``trait_events`` holds: the event names and derived columns it was built for.
    tev_events: tuple[str, ...] = ()
    tev_columns: tuple[str, ...] = ()
    #: The instant of the identity the state was built with, ``None`` for the latest identity
    #: (``event_profiles``); the next run on another identity updates it as after an identity
    #: change, without the change log (docs/incremental.md).
    map_as_of: str | None = None

    @classmethod
    def load(cls, store: Store) -> _Previous | None:
        raw = store.get_meta(_META)
        if raw is None or not store.has_table("trait_state"):
            return None
        data = json.loads(raw)
        if data.get("v") != STATE_VERSION:
            return None
        return cls(
            as_of=datetime.fromisoformat(data["as_of"]), identity=data["identity"],
            watermark=int(data["watermark"]), keys=tuple(data["keys"]), names=tuple(data["names"]),
            run=data.get("run"), tev_events=tuple(data["tev_events"]), tev_columns=tuple(data["tev_columns"]),
            map_as_of=data.get("map_as_of"),
        )

    def dump(self) -> str:
        return json.dumps({
            "v": STATE_VERSION, "as_of": self.as_of.isoformat(), "identity": self.identity,
            "watermark": self.watermark, "keys": list(self.keys), "names": list(self.names),
            "run": self.run, "tev_events": list(self.tev_events), "tev_columns": list(self.tev_columns),
            "map_as_of": self.map_as_of,
        })

    def covers(self, plan: Plan) -> bool:
        """Whether ``trait_events`` holds every event and column the plan reads."""
        return {t.event for t in plan.traits} <= set(self.tev_events) and {
            c.name for c in plan.columns} <= set(self.tev_columns)


def _fingerprints_sql(source: str = "event_profiles") -> str:
    """Per profile: its event count and a sum of message-id hashes (decides "same events?")."""
    return f"SELECT profile_id, count(*) AS _n, sum(hash(message_id)) AS _fp FROM {source} GROUP BY profile_id"


def _identity_run(store: Store) -> int | None:
    raw = store.get_meta("identity_run")
    return None if raw is None else int(raw)


def _change_log_usable(store: Store, prev: _Previous, run: int | None) -> bool:
    """Whether ``identity_changes`` covers every resolve since the state was built.

    The state must record the run it was read at (a state from before the log existed does
    not) and a later run must have happened; otherwise the fingerprint pass over the whole map
    decides instead. A run may list no profile (nothing moved), so gaps in ``run_id`` are fine.
    """
    return prev.run is not None and run is not None and run > prev.run and store.has_table("identity_changes")


def _feed_usable(store: Store, prev: _Previous) -> bool:
    """Whether every resolve since the state's run wrote its rows of ``identity_event_changes``
    (a full resolve writes none, and stores from before the feed have none before their first
    run with it): then the feed, not a scan of the map, says which events moved."""
    start = store.get_meta(FEED_KEY)
    return start is not None and prev.run is not None and prev.run + 1 >= int(start) and store.has_table(
        "identity_event_changes")


#: ``trait_events.seq``: the row's place in the canonical order ``(timestamp, message_id)`` as one
#: HUGEINT (epoch microseconds * 2^32 + its rank by message id among the rows at that instant), so
#: first / last are one primitive ``arg_min/arg_max(value, seq)`` in the values pass, exact on ties.
#: Only the order of two rows at one instant matters, not their profile: moved rows keep their seq.
SEQ = "epoch_us(timestamp)::HUGEINT * 4294967296 + row_number() OVER (PARTITION BY timestamp ORDER BY message_id)"


def _trait_events_select(
    events: Sequence[str], columns: Sequence[str], *, mapped: str, where: str, seq: bool = True
) -> str:
    """Rows of ``trait_events``: the traits' events with their profile (``mapped``: a relation of
    ``message_id, profile_id`` LEFT JOINed, NULL = not resolved), the derived columns and ``seq``
    (NULL without ``seq``: new rows, ranked by :func:`_rank_new` once they are in the table)."""
    cols = "".join(f", e.{quote(c)}" for c in columns)
    names = ", ".join(sql_str(x) for x in sorted(events)) or "NULL"
    rows = f"""SELECT ep.profile_id, e.ingest_id, e.timestamp, e.message_id, e.event{cols}
        FROM events e LEFT JOIN {mapped} ep ON ep.message_id = e.message_id
        WHERE e.type IN ({", ".join(sql_str(t) for t in EVENT_TYPES)}) AND e.event IN ({names}) AND ({where})"""
    return f"SELECT *, {SEQ if seq else 'NULL::HUGEINT'} AS seq FROM ({rows})"


def _rank_new(store: Store, new: str) -> None:
    """Give the rows of ``new`` (inserted into ``trait_events`` with a NULL seq) their seq: every
    row at one of their instants is ranked again (a new event can come between two stored ones)."""
    if not store.first_row(f"SELECT count(*) FROM {new}")[0]:
        return
    at = f"SELECT DISTINCT timestamp FROM {new}"
    store.con.execute(
        f"""UPDATE trait_events SET seq = r.seq FROM (
            SELECT message_id, {SEQ} AS seq FROM trait_events WHERE timestamp IN ({at})
        ) r WHERE trait_events.message_id = r.message_id AND trait_events.timestamp IN ({at})"""
    )


def _events_current(store: Store, plan: Plan) -> bool:
    """Whether ``trait_events`` is up to date for ``plan``: same identity, no event since, covered,
    keyed by the latest identity (a past one is only right for its own instant)."""
    prev = _Previous.load(store)
    return (
        prev is not None and store.has_table("trait_events") and prev.covers(plan)
        and prev.identity == store.get_meta("identity_state") and prev.watermark == _max_ingest(store)
        and prev.map_as_of is None
    )


def _max_ingest(store: Store) -> int:
    return int(store.first_row("SELECT coalesce(max(ingest_id), -1) FROM events")[0])


def _full_state(store: Store, plan: Plan, top: int, mapped: str = "event_profiles") -> None:
    """``trait_events`` rebuilt from ``events`` and the map (``mapped``: the identity as of the
    plan's instant), then ``trait_state``: the state of every mapped profile (fingerprint +
    partial aggregates) from it, without a join. Written straight to ``trait_state``: a temporary
    copy made inside the transaction stays in memory, and holds every list of the state
    (100 traits at 1M events: ~600 MiB of the peak RSS, growing with the events)."""
    store.con.execute(
        "CREATE OR REPLACE TABLE trait_events AS "
        + _trait_events_select(
            {t.event for t in plan.traits}, [c.name for c in plan.columns], mapped=mapped,
            where=f"e.ingest_id <= {top}",
        )
        # by time: a window edge's events (a slide) are then a few row groups, pruned by min/max
        + " ORDER BY timestamp"
    )
    parts = ", ".join(["f.profile_id", "f._n", "f._fp", *(f"a.{c}" for c in plan.state_columns())])
    store.con.execute(
        f"""CREATE OR REPLACE TABLE trait_state AS
        WITH f AS ({_fingerprints_sql(mapped)}), a AS ({plan.agg_sql(stats=True, state=True, keyed="trait_events")})
        SELECT {parts} FROM f LEFT JOIN a ON a.profile_id = f.profile_id"""
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Update:
    """The incremental plan of one run: which profiles are recomputed, merged or dropped."""

    recomputed: int
    merged: int
    dropped: int
    rebuilt: tuple[str, ...]
    watermark: int
    identity_changed: bool
    as_of_moved: bool
    log_used: bool = False
    #: The identity's event-level change feed replaced the scan of the map (docs/identity.md).
    feed_used: bool = False
    renamed: int = 0
    #: Rows of trait_events without a profile whose event now maps to a recomputed profile.
    now_mapped: int = 0


def _plan_update(
    store: Store, plan: Plan, kept: list[int], prev: _Previous, identity: str | None, top: int,
    *, mapped: str = "event_profiles",
) -> _Update:
    """Fill ``__t_touched(profile_id, kind, _n, _fp)`` with every profile whose state changes.

    * identity changed: fresh fingerprints vs stored ones. A profile whose fingerprint equals the
      stored one plus its new events' (``ingest_id`` above the watermark) only gained events:
      *merge*; a new profile id whose fingerprint equals a vanished profile's plus its new events
      is that profile *renamed* (a late event became its first, identity.md): *merge* from the old
      id's state; any other difference (merged, split, re-resolved, events resolved late):
      *recompute*; a profile no longer mapped: *gone*.
    * ``as_of`` moved: profiles with an event whose counting flag differs between the two
      instants (``Plan.moved_sql``): *recompute*.
    * a session trait does not merge: its merge candidates are recomputed.

    ``mapped`` is the identity the run uses (``event_profiles``, or the map as of a past
    ``as_of``); the identity change log only describes ``event_profiles``, so it is used only
    when this run and the stored state both use it. Its event-level feed
    (``identity_event_changes``), when it covers every run since the state's, gives the fresh
    fingerprints and the recomputed profiles' rows without reading the map; otherwise one scan
    of the map restricted to the profiles the change log names does (``__t_slice``).
    """
    con = store.con
    kplan = plan.subplan(kept)
    identity_changed = identity != prev.identity
    new_events = f"e.ingest_id > {prev.watermark} AND e.ingest_id <= {top}"
    con.execute("CREATE OR REPLACE TEMP TABLE __t_new (message_id VARCHAR, profile_id VARCHAR, ingest_id BIGINT)")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __t_touched "
        "(profile_id VARCHAR, kind VARCHAR, _n BIGINT, _fp HUGEINT, source VARCHAR)"
    )
    run = _identity_run(store)
    use_log = (
        identity_changed and mapped == "event_profiles" and prev.map_as_of is None
        and _change_log_usable(store, prev, run)
    )
    use_feed = use_log and _feed_usable(store, prev)
    if identity_changed:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE __t_nev AS SELECT message_id, ingest_id FROM events e WHERE {new_events}"
        )
        if use_feed:
            # the event-level change feed of the runs since the state's (docs/identity.md): per
            # event moved, its profile now and at the state's run; fresh fingerprints are the
            # stored ones plus the events moved in minus those moved out: no scan of the map
            runs = f"identity_event_changes WHERE run_id > {int(prev.run)} AND run_id <= {int(run)}"
            con.execute(
                # one run lists an event once; over several, its last profile and its first previous
                f"""CREATE OR REPLACE TEMP TABLE __t_feed AS SELECT message_id, profile_id,
                previous_profile_id AS previous_id FROM {runs}"""
                if run == prev.run + 1 else
                f"""CREATE OR REPLACE TEMP TABLE __t_feed AS SELECT * FROM (
                    SELECT message_id, list(profile_id ORDER BY run_id DESC)[1] AS profile_id,
                           list(previous_profile_id ORDER BY run_id)[1] AS previous_id
                    FROM {runs} GROUP BY message_id
                ) WHERE profile_id IS DISTINCT FROM previous_id"""
            )
            con.execute(
                """CREATE OR REPLACE TEMP TABLE __t_fp AS
                WITH d AS (
                    SELECT profile_id, count(*) AS n, sum(hash(message_id)) AS h FROM (
                        SELECT profile_id, message_id FROM __t_feed WHERE profile_id IS NOT NULL) GROUP BY 1
                    UNION ALL
                    SELECT previous_id, -count(*), -sum(hash(message_id)) FROM __t_feed
                    WHERE previous_id IS NOT NULL GROUP BY 1
                ), dd AS (SELECT profile_id, sum(n) AS n, sum(h) AS h FROM d GROUP BY 1)
                SELECT dd.profile_id, coalesce(s._n, 0) + dd.n AS _n, coalesce(s._fp, 0) + dd.h AS _fp
                FROM dd LEFT JOIN trait_state s ON s.profile_id = dd.profile_id
                WHERE coalesce(s._n, 0) + dd.n > 0"""
            )
            stored = """(SELECT profile_id, _n, _fp FROM trait_state WHERE profile_id IN (
                SELECT profile_id FROM __t_feed UNION SELECT previous_id FROM __t_feed))"""
            con.execute(
                """INSERT INTO __t_new SELECT f.message_id, f.profile_id, n.ingest_id
                FROM __t_feed f JOIN __t_nev n ON n.message_id = f.message_id WHERE f.profile_id IS NOT NULL"""
            )
        elif use_log:
            # only the profiles the identity change log names since the state's run can differ
            # (docs/identity.md): one scan of the map restricted to them, kept (``__t_slice``:
            # their events, the new ones marked), gives their fingerprints, their new events'
            # profiles and, below, the recomputed profiles' events
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE __t_ids AS SELECT DISTINCT profile_id FROM identity_changes
                WHERE run_id > {int(prev.run)} AND run_id <= {int(run)}"""
            )
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE __t_slice AS
                SELECT ep.profile_id, ep.message_id, n.ingest_id FROM {mapped} ep
                LEFT JOIN __t_nev n ON n.message_id = ep.message_id
                WHERE ep.profile_id IN (SELECT profile_id FROM __t_ids)"""
            )
            stored = "(SELECT profile_id, _n, _fp FROM trait_state WHERE profile_id IN (SELECT profile_id FROM __t_ids))"
            everyone, new_ones = "__t_slice", "(SELECT * FROM __t_slice WHERE ingest_id IS NOT NULL)"
        else:
            stored = "(SELECT profile_id, _n, _fp FROM trait_state)"
            everyone = mapped
            new_ones = f"""(SELECT ep.message_id, ep.profile_id, n.ingest_id FROM {mapped} ep
                JOIN __t_nev n ON n.message_id = ep.message_id)"""
        if not use_feed:
            con.execute(f"INSERT INTO __t_new SELECT message_id, profile_id, ingest_id FROM {new_ones}")
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE __t_fp AS SELECT profile_id, count(*) AS _n,
                sum(hash(message_id)) AS _fp FROM {everyone} GROUP BY profile_id"""
            )
        con.execute(
            f"""INSERT INTO __t_touched
            WITH nf AS (SELECT profile_id, count(*) AS n, sum(hash(message_id)) AS fp FROM __t_new GROUP BY 1)
            SELECT * FROM (
                SELECT coalesce(f.profile_id, s.profile_id) AS profile_id,
                    CASE WHEN f.profile_id IS NULL THEN 'gone'
                         WHEN coalesce(s._n, 0) + coalesce(nf.n, 0) = f._n
                              AND coalesce(s._fp, 0) + coalesce(nf.fp, 0) = f._fp
                         THEN (CASE WHEN nf.n IS NULL THEN 'same' ELSE 'merge' END)
                         ELSE 'recompute' END AS kind,
                    f._n, f._fp, NULL AS source
                FROM __t_fp f FULL JOIN {stored} s
                    ON s.profile_id = f.profile_id
                LEFT JOIN nf ON nf.profile_id = f.profile_id
            ) WHERE kind <> 'same'"""
        )
        # renamed profiles: a new id holding exactly a vanished id's events plus new ones
        con.execute(
            """UPDATE __t_touched SET kind = 'merge', source = r.source FROM (
                WITH nf AS (SELECT profile_id, count(*) AS n, sum(hash(message_id)) AS fp
                            FROM __t_new GROUP BY 1),
                gone AS (SELECT s.profile_id, s._n, s._fp FROM __t_touched g
                         JOIN trait_state s ON s.profile_id = g.profile_id WHERE g.kind = 'gone')
                SELECT t.profile_id, any_value(gone.profile_id) AS source
                FROM __t_touched t LEFT JOIN nf ON nf.profile_id = t.profile_id
                JOIN gone ON gone._n = t._n - coalesce(nf.n, 0) AND gone._fp = t._fp - coalesce(nf.fp, 0)
                WHERE t.kind = 'recompute' AND gone._n > 0
                  AND NOT EXISTS (SELECT 1 FROM trait_state x WHERE x.profile_id = t.profile_id)
                GROUP BY t.profile_id HAVING count(*) = 1
            ) r WHERE __t_touched.profile_id = r.profile_id"""
        )
    as_of_moved = prev.as_of != plan.as_of
    sessions = any(plan.traits[i].window.is_session for i in kept)
    # identity unchanged and no session window: a moved as_of merges each touched profile's
    # change of counting events (reversible types subtract what leaves a window); only a profile
    # with an event leaving an irreversible trait is recomputed
    delta = bool(as_of_moved and kept and not identity_changed and not sessions)
    if delta:
        con.execute(f"CREATE OR REPLACE TEMP TABLE __t_dl AS {kplan.delta_sql(prev.as_of, keyed='trait_events')}")
        con.execute(
            """INSERT INTO __t_touched SELECT profile_id, CASE WHEN _leave THEN 'recompute' ELSE 'merge' END,
            NULL, NULL, NULL FROM __t_dl"""
        )
    elif as_of_moved and kept:
        events = ", ".join(sorted({sql_str(t.event) for t in kplan.traits}))
        con.execute(
            f"""INSERT INTO __t_touched
            SELECT DISTINCT ep.profile_id, 'recompute', NULL, NULL, NULL
            FROM events e JOIN {mapped} ep ON ep.message_id = e.message_id
            WHERE e.type IN ({", ".join(sql_str(x) for x in EVENT_TYPES)}) AND e.event IN ({events})
              AND ({kplan.moved_sql(prev.as_of)})"""
        )
    if sessions:
        con.execute("UPDATE __t_touched SET kind = 'recompute' WHERE kind = 'merge'")
    # one row per profile: gone > recompute > merge; fingerprints from the identity pass or the state
    con.execute(
        """CREATE OR REPLACE TEMP TABLE __t_touched AS
        SELECT t.profile_id,
            CASE WHEN bool_or(t.kind = 'gone') THEN 'gone'
                 WHEN bool_or(t.kind = 'recompute') THEN 'recompute' ELSE 'merge' END AS kind,
            coalesce(max(t._n), any_value(s._n)) AS _n, coalesce(max(t._fp), any_value(s._fp)) AS _fp,
            max(t.source) AS source
        FROM __t_touched t LEFT JOIN trait_state s ON s.profile_id = t.profile_id
        GROUP BY t.profile_id"""
    )
    counts = dict(con.execute("SELECT kind, count(*) FROM __t_touched GROUP BY kind").fetchall())
    renamed = store.first_row("SELECT count(*) FROM __t_touched WHERE source IS NOT NULL")[0]
    # the new events of trait_events' event names, with their profile (NULL: not resolved)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __t_nevt AS "
        + _trait_events_select(prev.tev_events, prev.tev_columns, mapped="__t_new", where=new_events, seq=False)
    )
    recompute = "SELECT profile_id FROM __t_touched WHERE kind = 'recompute'"
    # the touched profiles' slice of the map; nothing to recompute (the usual append or slide)
    # scans nothing
    rows = recompute if counts.get("recompute") else f"{recompute} LIMIT 0"
    # a recomputed profile's events were, at the last run, in a profile now recomputed or gone,
    # or not resolved, or are new (docs/incremental.md): those rows of trait_events, re-keyed
    # by the map, are all its events, read without scanning ``events``
    # the rows of trait_events this run rewrites, read once: those of recomputed and gone
    # profiles (renamed ones included) and the unresolved ones
    rewrite = bool(counts.get("recompute") or counts.get("gone"))
    con.execute(
        """CREATE OR REPLACE TEMP TABLE __t_old AS SELECT * FROM trait_events
        WHERE profile_id IN (SELECT profile_id FROM __t_touched WHERE kind IN ('recompute', 'gone'))
           OR profile_id IS NULL"""
        if rewrite else "CREATE OR REPLACE TEMP TABLE __t_old AS SELECT * FROM trait_events LIMIT 0"
    )
    if use_feed:
        # the map of those rows and the new ones is their stored profile unless the feed moved
        # them: every recomputed profile's rows are among them, so nothing else is read
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE __t_rmap AS SELECT * FROM (
                SELECT c.message_id, CASE WHEN f.message_id IS NULL THEN c.profile_id ELSE f.profile_id END
                    AS profile_id
                FROM (SELECT message_id, profile_id FROM __t_old
                      UNION ALL SELECT message_id, profile_id FROM __t_nevt) c
                LEFT JOIN __t_feed f ON f.message_id = c.message_id
            ) WHERE profile_id IN ({rows})"""
        )
    else:
        # from the slice when it holds every recomputed profile (it holds every profile the
        # identity change touched; a moved ``as_of`` can add others)
        in_slice = use_log and not store.first_row(
            f"SELECT count(*) FROM ({rows}) r WHERE r.profile_id NOT IN (SELECT profile_id FROM __t_ids)"
        )[0]
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE __t_rmap AS
            SELECT message_id, profile_id FROM {"__t_slice" if in_slice else mapped} WHERE profile_id IN ({rows})"""
        )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE __t_rev AS
        SELECT m.profile_id, c.* EXCLUDE (profile_id) FROM (
            SELECT * FROM __t_old UNION ALL BY NAME SELECT * FROM __t_nevt
        ) c JOIN __t_rmap m ON m.message_id = c.message_id"""
        if counts.get("recompute") else "CREATE OR REPLACE TEMP TABLE __t_rev AS SELECT * FROM __t_nevt LIMIT 0"
    )
    # a renamed profile's rows: its old id's, re-keyed
    con.execute(
        """CREATE OR REPLACE TEMP TABLE __t_ren AS
        SELECT t.profile_id, c.* EXCLUDE (profile_id) FROM __t_old c
        JOIN __t_touched t ON t.source = c.profile_id WHERE t.kind = 'merge'"""
    )
    # rows of recomputed or gone profiles whose event no longer resolves at all (e.g. a rules
    # edit left it without identifiers): they stay, unmapped. An event of such a profile that
    # still resolves is in a recomputed profile (``__t_rmap``) or in the profile a gone one was
    # renamed to (``__t_ren``): any other profile kept or only gained new events
    # (fingerprints), so it holds none of them; no scan of the map is needed
    con.execute(
        """CREATE OR REPLACE TEMP TABLE __t_orph AS
        SELECT NULL::VARCHAR AS profile_id, c.* EXCLUDE (profile_id) FROM __t_old c
        WHERE c.profile_id IN (
                SELECT profile_id FROM __t_touched WHERE kind IN ('recompute', 'gone')
                EXCEPT SELECT source FROM __t_touched WHERE source IS NOT NULL)
          AND c.message_id NOT IN (SELECT message_id FROM __t_rmap)"""
    )
    if kept:
        def cols(alias: str) -> str:
            return ", ".join(["t.profile_id", "t._n", "t._fp", *(f"{alias}.{c}" for c in kplan.state_columns())])

        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE __t_r AS
            WITH a AS ({kplan.agg_sql(stats=True, state=True, keyed="__t_rev")})
            SELECT {cols("a")} FROM __t_touched t LEFT JOIN a ON a.profile_id = t.profile_id
            WHERE t.kind = 'recompute'"""
        )
        if delta:
            con.execute("CREATE OR REPLACE TEMP TABLE __t_d AS SELECT * EXCLUDE (_leave) FROM __t_dl WHERE NOT _leave")
        else:
            merged = "(SELECT * FROM __t_nevt WHERE profile_id IN (SELECT profile_id FROM __t_touched WHERE kind = 'merge'))"
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE __t_d AS {kplan.agg_sql(stats=True, state=True, keyed=merged)}"
            )
        old = (
            "(SELECT s.* REPLACE (t.profile_id AS profile_id) FROM __t_touched t JOIN trait_state s "
            "ON s.profile_id = coalesce(t.source, t.profile_id) WHERE t.kind = 'merge')"
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE __t_m AS
            WITH m AS ({kplan.merge_select(old, "__t_d")})
            SELECT {cols("m")} FROM __t_touched t LEFT JOIN m ON m.profile_id = t.profile_id
            WHERE t.kind = 'merge'"""
        )
    return _Update(
        recomputed=counts.get("recompute", 0), merged=counts.get("merge", 0), dropped=counts.get("gone", 0),
        rebuilt=(), watermark=top, identity_changed=identity_changed, as_of_moved=as_of_moved,
        log_used=use_log, feed_used=use_feed, renamed=renamed,
        now_mapped=store.first_row(
            "SELECT count(*) FROM __t_old WHERE profile_id IS NULL AND message_id IN (SELECT message_id FROM __t_rmap)"
        )[0],
    )


def compute_traits(
    store: Store,
    traits: Sequence[Trait],
    *,
    as_of: datetime,
    full: bool = False,
    progress: Progress | None = None,
) -> ComputeReport:
    """Bring every trait of every profile up to date as of ``as_of``; store values and diagnostics.

    ``full=False`` (the default) updates the stored per-profile state (``trait_state``) in
    proportion to what changed since the last run: new events merge into their profiles' state,
    profiles touched by identity changes or by a moved ``as_of`` are recomputed from their events,
    a trait whose definition changed is rebuilt alone (``docs/incremental.md``). ``full=True``
    rebuilds everything; both give the same rows. All writes happen in one transaction.

    Profiles are those of the identity as of ``as_of`` (:mod:`engine.identity.asof`): an event
    after it neither merges nor creates a profile. When that identity is not the latest one (an
    event comes after ``as_of``) it counts as another identity: this run, and the next one back on
    the latest identity, update as after an identity change (without the change log).
    """
    progress = progress or Progress()
    started = time.perf_counter()
    traits = tuple(traits)
    as_of = utc(as_of)
    added = _prepare(store, traits, progress)
    keys = tuple(state_key(t) for t in traits)
    plan = Plan.build(traits, as_of=as_of, keys=keys)
    con = store.con
    emap = event_map(store, as_of)
    prev = None if full else _Previous.load(store)
    identity = store.get_meta("identity_state")
    if prev is not None and not (prev.covers(plan) and store.has_table("trait_events")):
        prev = None  # a definition reads events or properties trait_events lacks: rebuild all
    if not emap.latest:
        # the identity as of a past instant is another map than event_profiles: a state built
        # on another one is updated as after an identity change (docs/incremental.md)
        identity = f"{identity}@{as_of.isoformat()}"
    ident = _identity_relations(emap)
    kept = [i for i, k in enumerate(keys) if prev is not None and k in prev.keys]
    update: _Update | None = None
    top = _max_ingest(store)
    watermark = top
    try:
        if prev is not None and kept:
            with progress.step(f"Updating {len(kept)} traits"):
                update = _plan_update(store, plan, kept, prev, identity, top, mapped=emap.relation)
            rebuilt = [i for i in range(len(traits)) if i not in kept]
            if rebuilt:
                rplan = plan.subplan(rebuilt)
                with progress.step(f"Rebuilding {len(rebuilt)} changed traits"):
                    con.execute(
                        f"CREATE OR REPLACE TEMP TABLE __t_rb AS "
                        f"{rplan.agg_sql(stats=True, state=True, event_map=emap.relation)}"
                    )
                update = dataclasses.replace(update, rebuilt=tuple(traits[i].name for i in rebuilt))
        step = "Writing trait values" if update is not None else f"Computing {len(traits)} traits"
        with progress.step(step), store.transaction():
            if update is None:
                _full_state(store, plan, top, mapped=emap.relation)
                con.execute(
                    f"CREATE OR REPLACE TABLE trait_values AS {plan.values_sql('trait_state', state=True, **ident)}"
                )
            else:
                _write_update(store, plan, kept, update, prev, ident)
            stats = _stats(store, plan, "trait_state")
            con.execute("DELETE FROM trait_stats")
            if stats:
                con.executemany(
                    "INSERT INTO trait_stats VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [[*row, as_of] for row in stats],
                )
            profiles = con.execute("SELECT count(*) FROM trait_values").fetchall()[0][0]
            seconds = time.perf_counter() - started
            con.execute(
                "INSERT INTO trait_runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                [as_of, definitions_hash(traits), datetime.now(UTC), profiles,
                 [t.name for t in traits], seconds, update is None],
            )
            covered = prev if update is not None else None
            store.set_meta(_META, _Previous(
                as_of=as_of, identity=identity, watermark=watermark, keys=keys,
                names=tuple(t.name for t in traits), run=_identity_run(store),
                tev_events=covered.tev_events if covered else tuple(sorted({t.event for t in traits})),
                tev_columns=covered.tev_columns if covered else tuple(c.name for c in plan.columns),
                map_as_of=None if emap.latest else as_of.isoformat(),
            ).dump())
    finally:
        for name in _TEMPS:
            con.execute(f"DROP TABLE IF EXISTS {name}")
        drop_temps(store)
    counts = con.execute(_with_value_sql(traits)).fetchall()[0] if traits else ()
    return ComputeReport(
        as_of=as_of,
        profiles=profiles,
        traits=tuple(t.name for t in traits),
        seconds=time.perf_counter() - started,
        with_value={t.name: int(n) for t, n in zip(traits, counts, strict=False)},
        columns_added=added,
        full=update is None,
        recomputed=None if update is None else update.recomputed,
        merged=None if update is None else update.merged,
        dropped=None if update is None else update.dropped,
        rebuilt=() if update is None else update.rebuilt,
        identity_pass=None if update is None or not update.identity_changed else (
            "feed" if update.feed_used else "change log" if update.log_used else "map"),
    )


def _identity_relations(emap: EventMap) -> dict[str, str]:
    """``values_sql``'s profiles and map for the identity ``emap``: a past one's profiles are the
    profiles of its map, not ``profiles`` (the latest)."""
    return {"profiles": emap.profiles, "event_map": emap.relation}


def _write_update(
    store: Store, plan: Plan, kept: list[int], update: _Update, prev: _Previous, ident: dict[str, str]
) -> None:
    """Apply an incremental update to ``trait_state`` and ``trait_values`` (inside the transaction)."""
    con = store.con
    # trait_events first: recomputed and gone profiles' rows (and formerly unresolved rows now
    # mapped) are replaced by the recomputed rows, renamed profiles' rows by the re-keyed ones
    # (a rename's old id is gone), those no longer resolving by unmapped ones; new rows added
    if update.recomputed or update.dropped:
        # the clause on unresolved rows reads every message id: only when there are such rows
        now_mapped = " OR (profile_id IS NULL AND message_id IN (SELECT message_id FROM __t_rmap))"
        con.execute(
            f"""DELETE FROM trait_events
            WHERE profile_id IN (SELECT profile_id FROM __t_touched WHERE kind IN ('recompute', 'gone'))
               {now_mapped if update.now_mapped else ""}"""
        )
        for rows in ("__t_rev", "__t_ren", "__t_orph"):
            con.execute(f"INSERT INTO trait_events BY NAME SELECT * FROM {rows}")
    con.execute(
        """INSERT INTO trait_events BY NAME SELECT * FROM __t_nevt
        WHERE profile_id IS NULL OR profile_id NOT IN (SELECT profile_id FROM __t_touched WHERE kind = 'recompute')"""
    )
    _rank_new(store, "__t_nevt")  # every new row is in (here or through __t_rev): rank them
    touched = "SELECT profile_id FROM __t_touched"
    con.execute(f"DELETE FROM trait_state WHERE profile_id IN ({touched})")
    con.execute("INSERT INTO trait_state BY NAME SELECT * FROM __t_r")
    con.execute("INSERT INTO trait_state BY NAME SELECT * FROM __t_m")
    names = tuple(t.name for t in plan.traits)
    if update.rebuilt or names != prev.names:
        rb = [i for i in range(len(plan.traits)) if i not in kept]
        rplan = plan.subplan(rb)
        kplan = plan.subplan(kept)
        cols = ", ".join(
            ["s.profile_id", "s._n", "s._fp", *(f"s.{c}" for c in kplan.state_columns()),
             *(f"r.{c}" for c in rplan.state_columns())]
        )
        source = "__t_rb" if rb else "(SELECT NULL::VARCHAR AS profile_id)"
        con.execute(
            f"""CREATE OR REPLACE TABLE trait_state AS
            SELECT {cols} FROM trait_state s LEFT JOIN {source} r ON r.profile_id = s.profile_id"""
        )
        con.execute(f"CREATE OR REPLACE TABLE trait_values AS {plan.values_sql('trait_state', state=True, **ident)}")
        return
    con.execute(f"DELETE FROM trait_values WHERE profile_id IN ({touched})")
    con.execute(
        # from the touched profiles' new state rows (small temp tables), not a join of trait_state
        f"INSERT INTO trait_values {plan.values_sql(_TOUCHED_STATE, state=True, where=touched, **ident)}"
    )


#: The touched profiles' new state rows (recomputed, merged), as written to ``trait_state``.
_TOUCHED_STATE = "(SELECT * FROM __t_r UNION ALL BY NAME SELECT * FROM __t_m)"


def _stats(store: Store, plan: Plan, source: str) -> list[list[object]]:
    """Per trait: position, name, type, counted, missing, rejected, 5 rejected message ids."""
    if not plan.traits:
        return []
    parts = []
    for i, t in enumerate(plan.traits):
        if isinstance(t, ValueTrait):
            parts += [
                f"sum({plan.part(i, 'counted')})",
                f"sum({plan.part(i, 'missing')})",
                f"sum({plan.part(i, 'rejected')})",
                f"list_transform(list_slice(list_sort(flatten(list({plan.part(i, 'examples')}))), 1, 5), "
                "lambda x: x.m)",
            ]
        else:
            parts += [f"sum({plan.part(i, 'n')})", "0", "0", "CAST([] AS VARCHAR[])"]
    row = store.con.execute(f"SELECT {', '.join(parts)} FROM {source}").fetchall()[0]
    out = []
    for i, t in enumerate(plan.traits):
        counted, missing, rejected, examples = row[4 * i : 4 * i + 4]
        out.append([i, t.name, t.type, int(counted or 0), int(missing or 0), int(rejected or 0), examples or []])
    return out


def trait_frame(
    store: Store, traits: Sequence[Trait], *, as_of: datetime, from_events: bool = False
) -> pl.DataFrame:
    """The values ``compute_traits`` would store, without writing them (point-in-time features).

    Profiles are those of the identity as of ``as_of``. Reads the profile-keyed ``trait_events``
    when the last compute left it up to date (same identity, no event ingested since, every
    column there) and ``as_of`` is after every event, else ``events`` joined to the map as of
    ``as_of``; ``from_events`` forces the join (tests use it as the independent path).
    """
    traits = tuple(traits)
    _prepare(store, traits, Progress())
    plan = Plan.build(traits, as_of=as_of)
    emap = event_map(store, plan.as_of)
    if emap.latest:
        keyed = None if from_events or not _events_current(store, plan) else "trait_events"
        return store.con.sql(plan.frame_sql(keyed=keyed, seq="seq")).pl()
    try:
        return store.con.sql(plan.frame_sql(**_identity_relations(emap))).pl()
    finally:
        drop_temps(store)


def explain_trait(store: Store, profile_id: str, trait: Trait, *, as_of: datetime) -> Explanation:
    """Why ``profile_id`` has its value of ``trait``: every event, counted or why not.

    The profile's events are those of the identity as of ``as_of``: a profile merged away by
    then is explained as the profile it had become; a later event is listed (as after
    ``as_of``) when the profile it joined was part of it then (:mod:`engine.identity.asof`).
    """
    _prepare(store, (trait,), Progress())
    plan = Plan.build((trait,), as_of=as_of)
    try:
        found = store.first_row(
            "SELECT count(*) FROM profiles WHERE profile_id = ?", [profile_id]
        )[0] or store.first_row(
            "SELECT count(*) FROM identity_merges WHERE merged_profile_id = ?", [profile_id]
        )[0]
        if not found:
            raise NotFoundError(f"no profile {profile_id!r}; find one with 'profiles show IDENT'")
        profile_id = profile_as_of(store, profile_id, plan.as_of)
        emap = event_map(store, plan.as_of, later=True)
        frame = store.con.sql(
            plan.explain_sql(0, event_map=emap.relation), params={"profile_id": profile_id}
        ).pl()
    finally:
        drop_temps(store)
    return explain(frame, trait, profile_id=profile_id, as_of=plan.as_of)


def trait_stats(store: Store) -> pl.DataFrame:
    """Diagnostics of the latest compute: counted, missing, rejected and examples per trait."""
    return store.con.sql(
        "SELECT trait, type, counted, missing, rejected, rejected_examples, as_of "
        "FROM trait_stats ORDER BY position"
    ).pl()

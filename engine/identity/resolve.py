"""Identity resolution against the store: events in, identity tables out (the only I/O here).

The result is a function of the event set and the rules (``identity.md``: order independence).
Candidate components (events linked transitively by shared identifiers, limits ignored) are
closed: each resolves independently of the others. So a run with new events touches only the
components their identifiers reach: new events that come after everything stored in their
components continue from the stored state; a late event that changes nothing but its own row is
absorbed; any other late event re-resolves its components from scratch (exact by construction).
A rules change, or an ingest whose event count changed, rebuilds everything (docs/identity.md). Extraction and joins run in DuckDB; the graph runs on
integer arrays in :mod:`engine.identity.graph`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import duckdb
import numpy as np
import pyarrow as pa
from rich.console import Group
from rich.table import Table
from rich.text import Text
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from engine.config import definition_hash
from engine.errors import IdentityError, NotFoundError
from engine.identity.asof import merge_roots
from engine.identity.extract import documents, identifiers_sql, normalise, sql_literal
from engine.identity.graph import (
    Continued,
    GraphInput,
    GraphResult,
    GraphState,
    continue_graph,
    resolve_graph,
)
from engine.identity.rules import IdentityRules
from engine.progress import Progress
from engine.store import Store

#: Tables this module rewrites, in write order.
IDENTITY_TABLES = (
    "profiles",
    "profile_identifiers",
    "event_profiles",
    "identity_merges",
    "identity_violations",
    "profile_traits",
    "identity_trait_nulls",
    "identity_blocked",
    "identity_component_profiles",
    "identity_component_last",
    "identity_identifier_components",
    "identity_ingests",
)
#: Tables of older layouts, dropped by the full rebuild that a layout change forces.
_RETIRED_TABLES = ("identity_components",)
#: Part of the rules hash: a new table layout (or a changed rule semantics) forces one full rebuild.
#: 4: project blocked values are exact per type; 5: event_profiles.joined_profile_id;
#: 6: event_profiles.event_rowid, profile_identifiers.origin_profile_id, identity_trait_nulls
LAYOUT_VERSION = 6
_STATE_KEY = "identity_state"
#: The first run from which every run wrote its rows of ``identity_event_changes`` (a full run
#: writes none: the feed starts again after it).
FEED_KEY = "identity_feed_from"
_RULES_KEY = "identity_rules"
_RUN_KEY = "identity_run"
_TEMP_VIEWS = ("_id_rows", "_new_occ", "_run_ev", "_g_pi", "_c_pi")
_TEMP_TABLES = (
    "_id_occ", "_new_occ", "_ev", "_ids", "_fresh", "_touched", "_old_events", "_old_prof", "_fp_old",
    "_ep_rows", "_occ_comp", "_events_new", "_events_old", "_m_roots", "_traits_new", "_absorbed_f", "_rules",
    "_plan_ev", "_plan_comp", "_late_grp", "_late_ev", "_absorb", "_absorbed", "_c_ev", "_c_prof", "_c_held", "_c_ids", "_c_events",
    "_c_gone", "_c_creators", "_c_idents", "_c_merges", "_c_violations", "_c_pid",
    "_c_remap", "_c_ep", "_c_grp", "_c_relabel", "_c_traits", "_g_events", "_g_idents", "_g_icomp",
    "_g_pcomp", "_g_last", "_g_creators", "_g_merges", "_g_violations", "_g_pid",
    "_g_ep", "_g_fp_new", "_g_blocked",
)
_TOP = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityReport:
    """What a resolution did; numbers as attributes, a one-screen summary via ``__rich__``.

    ``violations_by_rule`` holds ``(rule_type, dropped_type, count)``; ``blocked_values`` the
    most frequent ``(type, value, events)``; ``largest_profiles`` ``(profile_id, identifiers)``
    (the "blob" check: a profile with far more identifiers than people have is suspect).
    """

    events: int
    resolved_events: int
    unresolved_events: int
    profiles: int
    identifiers: int
    merges: int
    violations: int
    violations_by_rule: tuple[tuple[str, str, int], ...]
    blocked: int
    blocked_by_type: tuple[tuple[str, int], ...]
    blocked_values: tuple[tuple[str, str, int], ...]
    largest_profiles: tuple[tuple[str, int], ...]
    components: int | None
    replayed_events: int | None
    up_to_date: bool
    seconds: float
    mode: str = "up to date"  # full | incremental | up to date
    new_events: int = 0
    reresolved_events: int = 0  # new events plus the stored events re-resolved with late ones
    continued_events: int = 0  # new events resolved from the stored state (absorbed ones included)
    absorbed_events: int = 0  # late events that joined their profile without changing the state
    touched_components: int = 0
    run_id: int | None = None
    created: int = 0
    removed: int = 0
    changed: int = 0
    step_seconds: tuple[tuple[str, float], ...] = ()  # extract, graph, write

    def __rich__(self) -> Group:
        head = Table(title="Identity resolution", show_header=False, box=None)
        head.add_column(style="bold")
        head.add_column(justify="right")
        if self.up_to_date:
            head.add_row("status", "already up to date (no new events, same rules)")
        head.add_row("events", f"{self.events:,}")
        head.add_row("resolved events", f"{self.resolved_events:,}")
        head.add_row("unresolved events (no usable identifier)", f"{self.unresolved_events:,}")
        head.add_row("profiles", f"{self.profiles:,}")
        head.add_row("identifiers", f"{self.identifiers:,}")
        head.add_row("merges", f"{self.merges:,}")
        head.add_row("limit violations (identifiers dropped)", f"{self.violations:,}")
        head.add_row("blocked identifier values", f"{self.blocked:,}")
        if not self.up_to_date:
            head.add_row("mode", self.mode)
            head.add_row("new events", f"{self.new_events:,}")
            if self.mode == "incremental":
                head.add_row("existing components re-resolved", f"{self.touched_components:,}")
            head.add_row("events resolved this run", f"{self.reresolved_events:,}")
            head.add_row(
                "profiles created / removed / changed",
                f"{self.created:,} / {self.removed:,} / {self.changed:,}",
            )
        if self.replayed_events is not None:
            head.add_row("events replayed one by one (limit-risky groups)", f"{self.replayed_events:,}")
        head.add_row("seconds", f"{self.seconds:.2f}")
        parts: list[object] = [head]
        if self.violations_by_rule:
            t = Table(title="Violations by rule")
            for col in ("limit broken on", "dropped identifier type", "count"):
                t.add_column(col, justify="right" if col == "count" else "left")
            for rule, dropped, n in self.violations_by_rule:
                t.add_row(rule, dropped, f"{n:,}")
            parts.append(t)
        if self.blocked_values:
            t = Table(title="Blocked values (most frequent)")
            for col in ("type", "value", "events"):
                t.add_column(col, justify="right" if col == "events" else "left")
            for ty, value, n in self.blocked_values:
                t.add_row(ty, value, f"{n:,}")
            parts.append(t)
        if self.largest_profiles:
            t = Table(title="Largest profiles (identifier count)")
            t.add_column("profile")
            t.add_column("identifiers", justify="right")
            for pid, n in self.largest_profiles:
                t.add_row(pid, f"{n:,}")
            parts.append(t)
        if not self.events:
            parts.append(Text("No events in the store: run 'profiles ingest PATH' first."))
        return Group(*parts)


def resolve(store: Store, rules: IdentityRules, *, progress: Progress | None = None) -> IdentityReport:
    """Bring the identity tables up to date with the stored events (see ``identity.md``).

    Parameters
    ----------
    store
        An open, writable store.
    rules
        The project's identity rules (:func:`engine.identity.rules.parse_identity`).
    progress
        Progress display; silent by default.
    """
    progress = progress or Progress()
    started = time.perf_counter()
    con = store.con
    state = _state(con, rules)
    if store.get_meta(_STATE_KEY) == state:
        return _report(con, started, up_to_date=True, result=None)
    rules_hash = definition_hash({"rules": rules.semantic(), "v": LAYOUT_VERSION})
    full = store.get_meta(_RULES_KEY) != rules_hash or _ingests_changed(con)
    run_id = int(store.get_meta(_RUN_KEY) or 0) + 1
    marks = [time.perf_counter()]
    result: GraphResult | None = None
    continued: _Continuation | None = None
    try:
        with progress.step("Extracting identifiers"):
            plan = _extract_all(con, rules) if full else _plan(con, rules)
        marks.append(time.perf_counter())
        with progress.step("Resolving identities"):
            _register(con, {"_rules": pa.table({
                "tidx": np.arange(len(rules.identifiers), dtype=np.int64),
                "rule_type": [x.type for x in rules.identifiers],
                "limit_value": [x.limit for x in rules.identifiers]})})
            if plan.continued_events or plan.absorbed_events:
                continued = _continue(con, rules)
            if not full:
                # the one scan of event_profiles: the rows of the profiles re-resolved or merged away
                _stored_rows(con, merged_away=continued is not None)
                if plan.late_events:
                    plan = replace(plan, old_events=_extract_late(con, rules))
            if full or plan.late_events:
                result = resolve_graph(_graph_input(con, rules))
        marks.append(time.perf_counter())
        with progress.step("Writing identity tables"):
            with store.transaction():
                _ensure_layout(store)
                if full:
                    # what every profile was before the rebuild, so the change log lists the
                    # differences (removed profiles included), not every profile as created
                    _fingerprints(con, "_fp_old", "SELECT profile_id FROM profiles")
                    for table in (*IDENTITY_TABLES, *_RETIRED_TABLES):
                        con.execute(f"DROP TABLE IF EXISTS {table}" if table in _RETIRED_TABLES
                                    else f"DELETE FROM {table}")
                if result is not None:
                    _write(con, result, full=full, run_id=run_id)
                if continued is not None:
                    _write_continued(con, run_id=run_id)
                _write_feed(store, run_id=run_id, full=full, continued=continued is not None,
                            reresolved=result is not None)
                _write_counts(con, full=full)
                store.set_meta(_STATE_KEY, state)
                store.set_meta(_RULES_KEY, rules_hash)
                store.set_meta(_RUN_KEY, str(run_id))
            changes = dict(con.execute(
                "SELECT kind, count(*) FROM identity_changes WHERE run_id = ? GROUP BY 1", [run_id]
            ).fetchall())
        marks.append(time.perf_counter())
    finally:
        kinds = dict(con.execute(
            "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_catalog = 'temp'"
        ).fetchall())
        for name in dict.fromkeys((*_TEMP_VIEWS, *_TEMP_TABLES)):
            if name in kinds:
                con.execute(f"DROP {'VIEW' if kinds[name] == 'VIEW' else 'TABLE'} {name}")
    report = _report(con, started, up_to_date=False, result=result)
    return replace(
        report,
        mode="full" if full else "incremental",
        new_events=plan.new_events,
        reresolved_events=plan.late_events + plan.old_events + plan.continued_events + plan.absorbed_events,
        continued_events=plan.continued_events + plan.absorbed_events,
        absorbed_events=plan.absorbed_events,
        touched_components=plan.touched_components,
        replayed_events=(report.replayed_events or 0) + (continued.events if continued else 0),
        run_id=run_id,
        created=int(changes.get("created", 0)),
        removed=int(changes.get("removed", 0)),
        changed=int(changes.get("changed", 0)),
        step_seconds=tuple(zip(("extract", "graph", "write"), np.diff(marks).tolist())),
        seconds=time.perf_counter() - started,
    )


def find_profile(store: Store, ident: str) -> str:
    """The profile id for ``IDENT``: a profile id (``prf_...``) or ``type:value`` of an identifier.

    The value is normalised as the engine does (trimmed; email lower-cased; phone without spaces,
    dashes, dots and brackets), so ``email: Ana@Example.com`` finds ``email:ana@example.com``.

    Raises
    ------
    NotFoundError
        When nothing matches; the message says what was tried and what to do.
    """
    con = store.con
    text = ident.strip()
    if not store.has_table("profiles") or con.execute("SELECT count(*) FROM profiles").fetchall()[0][0] == 0:
        raise NotFoundError(
            f"no profile {text!r}: the store has no profiles yet; run 'profiles resolve' "
            "(after 'profiles ingest PATH')"
        )
    if text.startswith("prf_"):
        row = store.first_row("SELECT profile_id FROM profiles WHERE profile_id = ?", [text])
        if row:
            return row[0]
        merged = store.first_row(
            "SELECT into_profile_id FROM identity_merges WHERE merged_profile_id = ?", [text]
        )
        if merged:
            return find_profile(store, merged[0])
        raise NotFoundError(f"no profile {text!r}: check the id (profiles export lists them)")
    type_, sep, raw_value = text.partition(":")
    type_ = type_.strip().lower()
    value = normalise(type_, raw_value) if sep else None
    if not sep or not type_ or value is None:
        raise NotFoundError(
            f"{text!r} is neither a profile id (prf_...) nor type:value of an identifier "
            "(e.g. user_id:42, email:ana@example.com)"
        )
    row = store.first_row(
        "SELECT profile_id FROM profile_identifiers WHERE type = ? AND value = ?", [type_, value]
    )
    if row:
        return row[0]
    known = [r[0] for r in con.execute("SELECT DISTINCT type FROM profile_identifiers ORDER BY 1").fetchall()]
    if type_ not in known:
        raise NotFoundError(
            f"no profile has an identifier of type {type_!r} "
            f"(types in this store: {', '.join(known) or 'none'})"
        )
    blocked = store.first_row(
        "SELECT 1 FROM identity_blocked WHERE type = ? AND value = ?", [type_, value]
    )
    hint = (
        "it is a blocked value (identity rules), so it never identifies a profile"
        if blocked
        else "check the spelling, or run 'profiles resolve' if its events were ingested since"
    )
    raise NotFoundError(f"no profile has {type_}:{value}: {hint}")


# -- steps ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Plan:
    """How a run splits its work (event counts): new events re-resolved from scratch with the
    ``old_events`` of their components (late), new events continuing from the stored state."""

    new_events: int
    late_events: int = 0
    old_events: int = 0
    continued_events: int = 0
    absorbed_events: int = 0
    touched_components: int = 0


@dataclass(frozen=True, slots=True)
class _Continuation:
    """The continued events' graph result and how many state profiles it started from."""

    result: Continued
    profiles: int
    events: int


def _state(con: duckdb.DuckDBPyConnection, rules: IdentityRules) -> str:
    """What the identity tables are a function of: the rules and the (append-only) event set."""
    n, last, lo, hi = con.execute(
        "SELECT count(*), max(ingest_id), min(timestamp)::VARCHAR, max(timestamp)::VARCHAR FROM events"
    ).fetchall()[0]
    return definition_hash({"rules": rules.semantic(), "events": [n, last, lo, hi], "v": LAYOUT_VERSION})


def _ingests_changed(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether an ingest already resolved has a different event count now (rebuild then)."""
    return bool(
        con.execute(
            """SELECT count(*) FROM identity_ingests r
            LEFT JOIN (SELECT ingest_id, count(*) AS n FROM events GROUP BY 1) e USING (ingest_id)
            WHERE coalesce(e.n, 0) <> r.events"""
        ).fetchall()[0][0]
    )


def _extract(con: duckdb.DuckDBPyConnection, rules: IdentityRules) -> None:
    """Extract and number every event (a full rebuild; the benchmark's bare baseline uses it too)."""
    con.execute("CREATE OR REPLACE TEMP VIEW _run_ev AS SELECT rowid AS _rid, * FROM events")
    _occurrences(con, rules, "_id_occ", "events", "rowid")
    _number(con, rules)


def _extract_all(con: duckdb.DuckDBPyConnection, rules: IdentityRules) -> _Plan:
    con.execute("CREATE OR REPLACE TEMP TABLE _touched (component BIGINT)")
    _extract(con, rules)
    con.execute("CREATE OR REPLACE TEMP VIEW _new_occ AS SELECT * FROM _id_occ")
    n = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    return _Plan(new_events=n, late_events=n)


def _plan(con: duckdb.DuckDBPyConnection, rules: IdentityRules) -> _Plan:
    """Extract the new events and split them by candidate group (new events linked through
    shared identifiers or stored components): a group whose new events all come after the last
    event of every stored component it touches continues from the stored state; any other (a
    late event) is re-resolved from scratch with those components' events."""
    # the new ingests' id range as constants, so the scans of ``events`` skip the row groups of
    # the resolved history (ingest ids grow with the table) instead of reading every row
    lo, hi = con.execute(
        "SELECT min(ingest_id), max(ingest_id) FROM events "
        "WHERE ingest_id NOT IN (SELECT ingest_id FROM identity_ingests)"
    ).fetchall()[0]
    # the new events' columns that identity reads, copied once: extraction, ranking and identify
    # traits read the copy rather than scanning the table again
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _events_new AS SELECT {_event_columns(rules)} FROM events
        WHERE ingest_id BETWEEN {int(lo or 0)} AND {int(hi or -1)}
          AND ingest_id NOT IN (SELECT ingest_id FROM identity_ingests)"""
    )
    con.execute("CREATE OR REPLACE TEMP VIEW _run_ev AS SELECT * FROM _events_new")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _fresh AS SELECT _rid AS eid, message_id, timestamp, type FROM _events_new"
    )
    n_new = con.execute("SELECT count(*) FROM _fresh").fetchall()[0][0]
    _occurrences(con, rules, "_new_occ", "_events_new", "_rid")
    # the new events' identifiers with their stored component (NULL: never seen; the write of a
    # continuation adds those without looking them up again)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _occ_comp AS
        SELECT o.eid, o.type, o.value, c.component
        FROM _new_occ o LEFT JOIN identity_identifier_components c USING (type, value)
        WHERE NOT o.blocked"""
    )
    rows = con.execute(
        """SELECT dense_rank() OVER (ORDER BY eid) - 1 AS ev,
                  dense_rank() OVER (ORDER BY type, value) - 1 AS id, eid, component
        FROM _occ_comp ORDER BY ev"""
    ).fetchnumpy()
    ev = np.asarray(rows["ev"], dtype=np.int64)
    if len(ev) == 0:
        con.execute("CREATE OR REPLACE TEMP TABLE _touched (component BIGINT)")
        con.execute("CREATE OR REPLACE TEMP TABLE _plan_ev (eid BIGINT, grp BIGINT)")
        con.execute("CREATE OR REPLACE TEMP TABLE _plan_comp (component BIGINT, grp BIGINT)")
        con.execute("CREATE OR REPLACE TEMP TABLE _old_prof (profile_id VARCHAR)")
        return _Plan(new_events=n_new)
    ident = np.asarray(rows["id"], dtype=np.int64)
    comp_col = rows["component"]
    has_comp = ~np.ma.getmaskarray(comp_col)
    old = np.asarray(np.ma.filled(comp_col, -1), dtype=np.int64)
    comps, comp_node = np.unique(old[has_comp], return_inverse=True)
    n_id = int(ident.max()) + 1
    n_nodes = n_id + len(comps)
    starts = np.flatnonzero(np.r_[True, ev[1:] != ev[:-1]])
    hub = ident[starts][ev]
    src = np.r_[hub, ident[has_comp]]
    dst = np.r_[ident, n_id + comp_node]
    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n_nodes, n_nodes))
    _, group = connected_components(graph.tocsr(), directed=False)
    con.register("_plan_ev_a", pa.table({"eid": np.asarray(rows["eid"], dtype=np.int64)[starts],
                                          "grp": group[ident[starts]].astype(np.int64)}))
    con.register("_plan_comp_a", pa.table({"component": comps, "grp": group[n_id:].astype(np.int64)}))
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE _plan_ev AS SELECT * FROM _plan_ev_a")
        con.execute("CREATE OR REPLACE TEMP TABLE _plan_comp AS SELECT * FROM _plan_comp_a")
    finally:
        con.unregister("_plan_ev_a")
        con.unregister("_plan_comp_a")
    # late events: before the last stored event of a component of their group
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _late_ev AS
        WITH last AS (
            SELECT p.grp, l.timestamp, l.message_id FROM _plan_comp p
            JOIN identity_component_last l USING (component)
            QUALIFY row_number() OVER (PARTITION BY p.grp ORDER BY l.timestamp DESC, l.message_id DESC) = 1
        )
        SELECT p.eid, p.grp, f.message_id, f.timestamp, f.type = 'identify' AS identify
        FROM _plan_ev p JOIN _fresh f USING (eid) JOIN last l USING (grp)
        WHERE f.timestamp < l.timestamp OR (f.timestamp = l.timestamp AND f.message_id < l.message_id)"""
    )
    _absorbable(con, rules)
    # a group is re-resolved from scratch unless every late event of it is absorbed
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _late_grp AS SELECT DISTINCT grp FROM _late_ev
        WHERE eid NOT IN (SELECT eid FROM _absorb)"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _absorbed AS
        SELECT a.eid, a.message_id, a.profile_id, a.joined_profile_id, a.identify
        FROM _absorb a JOIN _late_ev l USING (eid) WHERE l.grp NOT IN (SELECT grp FROM _late_grp)"""
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _touched AS SELECT component FROM _plan_comp WHERE grp IN (SELECT grp FROM _late_grp)"
    )
    late, cont, absorbed = con.execute(
        """SELECT count(*) FILTER (WHERE grp IN (SELECT grp FROM _late_grp)),
                  count(*) FILTER (WHERE grp NOT IN (SELECT grp FROM _late_grp)
                                   AND eid NOT IN (SELECT eid FROM _absorbed)),
                  count(*) FILTER (WHERE eid IN (SELECT eid FROM _absorbed)) FROM _plan_ev"""
    ).fetchall()[0]
    touched = con.execute("SELECT count(*) FROM _plan_comp").fetchall()[0][0]
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _old_prof AS SELECT profile_id FROM identity_component_profiles
        WHERE component IN (SELECT component FROM _touched)"""
    )
    return _Plan(new_events=n_new, late_events=late, continued_events=cont,
                 absorbed_events=absorbed, touched_components=touched)


def _absorbable(con: duckdb.DuckDBPyConnection, rules: IdentityRules) -> None:
    """``_absorb(eid, message_id, profile_id, joined_profile_id, identify)``: the late events that
    change nothing but their own row, read off the stored tables.

    A late event at canonical position T whose identifiers were all attached before T to
    profiles that end in one profile F, and were in one profile Q at T (trivially so for a
    single identifier; for several, no merge into F's lineage after T), with F's identifiers
    gained before T within every limit at T (Q's are a subset): the spec joins it to Q without
    gaining or merging anything, so no later step changes. Its row is ``(message_id, F)`` and
    F's traits may change (identify). Its joined profile is the one its identifier's gain event
    joined (``profile_identifiers.origin_profile_id``): that profile's lineage holds the
    identifier, so it leads to Q at T (as-of maps). Merges into F's lineage are the merges whose
    surviving profile's root is F (``identity_merges`` only: no per-event table is read).
    """
    rules_rows = ", ".join(
        f"({sql_literal(r.type)}, {r.limit}, {-1 if r.period_micros is None else r.period_micros})"
        for r in rules.identifiers
    )
    merge_roots(con, "_m_roots")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _absorb AS
        WITH occ AS (
            SELECT l.eid, l.message_id AS mid, l.timestamp AS ts, l.identify, pi.profile_id,
                   pi.first_seen_at < l.timestamp
                   OR (pi.first_seen_at = l.timestamp AND pi.message_id < l.message_id) AS before,
                   pi.origin_profile_id AS joined
            FROM _late_ev l JOIN _new_occ o USING (eid)
            LEFT JOIN profile_identifiers pi USING (type, value)
            WHERE NOT o.blocked
        ),
        cand AS (
            SELECT eid, any_value(mid) AS message_id, any_value(ts) AS ts, any_value(identify) AS identify,
                   any_value(profile_id) AS profile_id, any_value(joined) AS joined_profile_id,
                   count(*) AS n
            FROM occ GROUP BY eid
            HAVING count(*) = count(profile_id) AND bool_and(before) AND count(DISTINCT profile_id) = 1
        ),
        merged_after AS (
            SELECT DISTINCT c.eid FROM (SELECT * FROM cand WHERE n > 1) c
            JOIN (SELECT m.*, coalesce(r.root, m.into_profile_id) AS root FROM identity_merges m
                  LEFT JOIN _m_roots r ON r.profile_id = m.into_profile_id) m ON m.root = c.profile_id
            WHERE m.timestamp > c.ts OR (m.timestamp = c.ts AND m.message_id > c.message_id)
        ),
        over AS (
            SELECT DISTINCT c.eid FROM cand c
            JOIN profile_identifiers pi ON pi.profile_id = c.profile_id
            JOIN (VALUES {rules_rows}) AS r(type, lim, period) ON r.type = pi.type
            WHERE (pi.first_seen_at < c.ts OR (pi.first_seen_at = c.ts AND pi.message_id < c.message_id))
              AND (r.period < 0 OR epoch_us(pi.first_seen_at) > epoch_us(c.ts) - r.period)
            GROUP BY c.eid, pi.type, r.lim HAVING count(*) > r.lim
        )
        SELECT eid, message_id, profile_id, joined_profile_id, identify FROM cand
        WHERE eid NOT IN (SELECT eid FROM merged_after) AND eid NOT IN (SELECT eid FROM over)"""
    )


def _stored_rows(con: duckdb.DuckDBPyConnection, *, merged_away: bool) -> None:
    """``_ep_rows``: the ``event_profiles`` rows (with their ``rowid``) of the profiles this run
    re-resolves (``_old_prof``) or merges away (``_c_remap``), in one scan of the table: the
    writes then delete them by ``rowid`` and the fingerprints read them from here."""
    gone = "UNION ALL SELECT old_id FROM _c_remap" if merged_away else ""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _ep_rows AS
        SELECT rowid AS rid, message_id, profile_id, joined_profile_id, event_rowid FROM event_profiles
        WHERE profile_id IN (SELECT profile_id FROM _old_prof {gone})"""
    )


def _extract_late(con: duckdb.DuckDBPyConnection, rules: IdentityRules) -> int:
    """``_id_occ`` / ``_ev`` / ``_ids`` for the late groups: their new events and every event of
    the stored components they touch (``_old_events``), to re-resolve from scratch.

    The stored events are found by the ``events`` rowid recorded when they were resolved
    (``event_profiles.event_rowid``), checked against their ``message_id``: a rowid that no
    longer names its event (rows deleted and compacted since) falls back to a ``message_id``
    look-up, so the rowid is only ever a hint."""
    # the components' events: resolved ones by profile, and those a limit left unresolved (every
    # identifier dropped: they are in identity_violations) by their dropped identifiers
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _old_events AS
        SELECT message_id, event_rowid FROM _ep_rows WHERE profile_id IN (SELECT profile_id FROM _old_prof)
        UNION ALL
        SELECT DISTINCT v.message_id, NULL FROM identity_violations v
        JOIN identity_identifier_components c ON c.type = v.dropped_type AND c.value = v.dropped_value
        WHERE c.component IN (SELECT component FROM _touched)
          AND v.message_id NOT IN (SELECT message_id FROM _ep_rows)"""
    )
    # one read of the stored events' columns (the JSON documents cannot be fetched by row: any
    # read of them scans the column, so it is done once)
    columns = _event_columns(rules)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _events_old AS SELECT {columns} FROM events
        WHERE rowid IN (SELECT event_rowid FROM _old_events)"""
    )
    con.execute(
        """DELETE FROM _events_old WHERE (_rid, message_id) NOT IN
        (SELECT (event_rowid, message_id) FROM _old_events)"""
    )
    missing = con.execute(
        "SELECT (SELECT count(*) FROM _old_events) - (SELECT count(*) FROM _events_old)"
    ).fetchall()[0][0]
    if missing:
        con.execute(
            f"""INSERT INTO _events_old SELECT {columns} FROM events WHERE message_id IN (
                SELECT message_id FROM _old_events WHERE message_id NOT IN (SELECT message_id FROM _events_old))"""
        )
    con.execute(
        "CREATE OR REPLACE TEMP VIEW _run_ev AS SELECT * FROM _events_new UNION ALL SELECT * FROM _events_old"
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _id_occ AS SELECT * FROM _new_occ
        WHERE eid IN (SELECT eid FROM _plan_ev WHERE grp IN (SELECT grp FROM _late_grp))"""
    )
    n_old = con.execute("SELECT count(*) FROM _old_events").fetchall()[0][0]
    if n_old:
        _occurrences(con, rules, "_id_occ_old", "_events_old", "_rid")
        con.execute("INSERT INTO _id_occ SELECT * FROM _id_occ_old")
        con.execute("DROP TABLE _id_occ_old")
    _number(con, rules)
    return n_old


def _occurrences(con: duckdb.DuckDBPyConnection, rules: IdentityRules, name: str, source: str, key: str) -> None:
    # events are keyed by rowid (an integer) until the output joins bring message_id back;
    # one row per (event, identifier): an email in traits and context.traits counts once
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS "
        f"SELECT DISTINCT eid, type, value, blocked "
        f"FROM ({identifiers_sql(rules, source=source, key=key)})"
    )


def _event_columns(rules: IdentityRules) -> str:
    """The columns of ``events`` identity reads (``properties`` and ``raw`` only when a custom
    source needs them), with the ``rowid`` as ``_rid``."""
    return f"rowid AS _rid, message_id, timestamp, type, user_id, anonymous_id, {', '.join(documents(rules))}"


def _type_table(rules: IdentityRules) -> str:
    return "(VALUES " + ", ".join(f"({sql_literal(r.type)}, {i})" for i, r in enumerate(rules.identifiers)) + ") AS t(type, tidx)"


def _number(con: duckdb.DuckDBPyConnection, rules: IdentityRules) -> None:
    """Rank the events to resolve canonically and number their identifiers by priority."""
    con.execute("CREATE OR REPLACE TEMP VIEW _id_rows AS SELECT eid, type, value FROM _id_occ WHERE NOT blocked")
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _ev AS
        SELECT _rid AS eid, message_id, timestamp, epoch_us(timestamp) AS ts, type = 'identify' AS identify,
               row_number() OVER (ORDER BY timestamp, message_id) - 1 AS erank
        FROM _run_ev WHERE _rid IN (SELECT eid FROM _id_rows)
        ORDER BY erank"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _ids AS
        SELECT type, value, tidx, row_number() OVER (ORDER BY tidx, value) - 1 AS iid
        FROM (SELECT DISTINCT type, value FROM _id_rows)
        JOIN {_type_table(rules)} USING (type)"""
    )


def _limits(rules: IdentityRules) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.asarray([r.limit for r in rules.identifiers], dtype=np.int64),
        np.asarray([-1 if r.period_micros is None else r.period_micros for r in rules.identifiers], dtype=np.int64),
    )


def _graph_input(con: duckdb.DuckDBPyConnection, rules: IdentityRules) -> GraphInput:
    rows = con.execute(
        "SELECT e.erank, i.iid FROM _id_rows r JOIN _ev e USING (eid) JOIN _ids i USING (type, value)"
    ).fetchnumpy()
    erank = np.asarray(rows["erank"], dtype=np.int64)
    iid = np.asarray(rows["iid"], dtype=np.int64)
    order = np.lexsort((iid, erank))  # numpy sorts the integer pairs faster than the SQL sort
    ts = con.execute("SELECT ts FROM _ev ORDER BY erank").fetchnumpy()["ts"]
    types = con.execute("SELECT tidx FROM _ids ORDER BY iid").fetchnumpy()["tidx"]
    limits, periods = _limits(rules)
    return GraphInput(
        row_event=erank[order],
        row_ident=iid[order],
        ident_type=np.asarray(types, dtype=np.int64),
        event_ts=np.asarray(ts, dtype=np.int64),
        limits=limits,
        periods=periods,
    )


def _continue(con: duckdb.DuckDBPyConnection, rules: IdentityRules) -> _Continuation:
    """Load the stored state of the continued groups' components and run their new events on it.

    The state is the components' profiles (numbered in canonical order of creation) and the
    identifiers they hold with gain times: rows per profile and identifier, not per event.
    """
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _c_ev AS
        SELECT f.eid, f.message_id, f.timestamp, epoch_us(f.timestamp) AS ts,
               f.type = 'identify' AS identify, p.grp,
               row_number() OVER (ORDER BY f.timestamp, f.message_id) - 1 AS erank
        FROM _fresh f JOIN _plan_ev p USING (eid)
        WHERE p.grp NOT IN (SELECT grp FROM _late_grp) AND f.eid NOT IN (SELECT eid FROM _absorbed)
        ORDER BY erank"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _c_prof AS
        SELECT p.profile_id, p.created_by, p.created_at, cp.component,
               row_number() OVER (ORDER BY p.created_at, p.created_by) - 1 AS pnum
        FROM identity_component_profiles cp JOIN profiles p USING (profile_id)
        WHERE cp.component IN (SELECT component FROM _plan_comp WHERE grp IN (SELECT grp FROM _c_ev))"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _c_held AS
        SELECT c.pnum, i.type, i.value, epoch_us(i.first_seen_at) AS gain_ts
        FROM profile_identifiers i JOIN _c_prof c USING (profile_id)"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _c_ids AS
        SELECT type, value, tidx, row_number() OVER (ORDER BY tidx, value) - 1 AS iid FROM (
            SELECT type, value FROM _c_held
            UNION SELECT type, value FROM _new_occ WHERE NOT blocked AND eid IN (SELECT eid FROM _c_ev)
        ) JOIN {_type_table(rules)} USING (type)"""
    )
    rows = con.execute(
        """SELECT e.erank, i.iid FROM _new_occ o JOIN _c_ev e USING (eid) JOIN _c_ids i USING (type, value)
        WHERE NOT o.blocked ORDER BY e.erank, i.iid"""
    ).fetchnumpy()
    held = con.execute(
        "SELECT i.iid, h.pnum, h.gain_ts FROM _c_held h JOIN _c_ids i USING (type, value)"
    ).fetchnumpy()
    ts = con.execute("SELECT ts FROM _c_ev ORDER BY erank").fetchnumpy()["ts"]
    types = con.execute("SELECT tidx FROM _c_ids ORDER BY iid").fetchnumpy()["tidx"]
    n_prof = con.execute("SELECT count(*) FROM _c_prof").fetchall()[0][0]
    limits, periods = _limits(rules)
    data = GraphInput(
        row_event=np.asarray(rows["erank"], dtype=np.int64),
        row_ident=np.asarray(rows["iid"], dtype=np.int64),
        ident_type=np.asarray(types, dtype=np.int64),
        event_ts=np.asarray(ts, dtype=np.int64),
        limits=limits,
        periods=periods,
    )
    state = GraphState(
        profiles=n_prof,
        ident=np.asarray(held["iid"], dtype=np.int64),
        owner=np.asarray(held["pnum"], dtype=np.int64),
        gain_ts=np.asarray(held["gain_ts"], dtype=np.int64),
    )
    c = continue_graph(data, state)
    _prepare_continued(con, c, n_prof)
    return _Continuation(result=c, profiles=n_prof, events=len(ts))


def _prepare_continued(con: duckdb.DuckDBPyConnection, r: Continued, n_prof: int) -> None:
    """Temp tables of a continuation's result, before the write transaction: ``_c_pid`` (every
    profile by number), ``_c_remap`` (stored profiles merged away -> survivor), ``_c_ep`` (the
    new events' rows) and ``_absorbed_f`` (absorbed events under their profile's final id)."""
    resolved = np.flatnonzero(r.event_profile >= 0)
    gone = np.flatnonzero(r.profile_final != np.arange(n_prof))
    creators = np.unique(np.r_[r.event_profile[resolved], r.event_joined[resolved], r.merge_from, r.merge_into])
    creators = creators[creators >= n_prof]
    _register(con, {
        "_c_events": pa.table({"erank": resolved, "pnum": r.event_profile[resolved],
                               "jnum": r.event_joined[resolved]}),
        "_c_gone": pa.table({"pnum": gone, "into": r.profile_final[gone]}),
        "_c_creators": pa.table({"pnum": creators, "erank": creators - n_prof}),
        "_c_idents": pa.table({"iid": r.ident, "pnum": r.ident_profile, "gain": r.ident_gain}),
        "_c_merges": pa.table({"mfrom": r.merge_from, "minto": r.merge_into, "erank": r.merge_event,
                               "seq": np.arange(len(r.merge_from), dtype=np.int64)}),
        "_c_violations": pa.table({"erank": r.violation_event, "tidx": r.violation_type,
                                   "iid": r.violation_ident,
                                   "seq": np.arange(len(r.violation_event), dtype=np.int64)}),
    })
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _c_pid AS
        SELECT pnum, profile_id, created_by, created_at, false AS new FROM _c_prof
        UNION ALL
        SELECT c.pnum, 'prf_' || substr(sha256(e.message_id), 1, 16), e.message_id, e.timestamp, true
        FROM _c_creators c JOIN _c_ev e USING (erank)"""
    )
    _check_ids(con, "_c_pid", "new")
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _c_remap AS
        SELECT f.profile_id AS old_id, t.profile_id AS new_id
        FROM _c_gone g JOIN _c_pid f ON f.pnum = g.pnum JOIN _c_pid t ON t.pnum = g.into"""
    )
    _ep_table(con, "_c", "_c_ev")
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _absorbed_f AS
        SELECT a.eid, a.message_id, a.identify, a.joined_profile_id,
               coalesce(m.new_id, a.profile_id) AS profile_id
        FROM _absorbed a LEFT JOIN _c_remap m ON m.old_id = a.profile_id"""
    )


def _fingerprints(
    con: duckdb.DuckDBPyConnection, name: str, profiles_sql: str, *, events: str = "event_profiles",
    identifiers: str = "profile_identifiers", traits: str = "profile_traits",
) -> None:
    """Temp table ``name(profile_id, fp)``: a hash of each profile's events, identifiers, traits.

    The sources hold those profiles' rows: the store's tables for a full run, else rows already
    in hand (``_ep_rows`` read before, or the rows just written: ``_g_ep``, ``_g_pi``,
    ``_traits_new``), so no per-event table is scanned for them."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {name} AS
        WITH sel AS ({profiles_sql}),
        e AS (SELECT profile_id, count(*) AS n, sum(hash(message_id)) AS h FROM {events}
              WHERE profile_id IN (SELECT profile_id FROM sel) GROUP BY 1),
        i AS (SELECT profile_id, sum(hash(type, value, first_seen_at, message_id)) AS h
              FROM {identifiers} WHERE profile_id IN (SELECT profile_id FROM sel) GROUP BY 1),
        t AS (SELECT profile_id, sum(hash(key, value::VARCHAR, message_id)) AS h FROM {traits}
              WHERE profile_id IN (SELECT profile_id FROM sel) GROUP BY 1)
        SELECT sel.profile_id, hash(e.n, e.h, i.h, t.h) AS fp
        FROM sel LEFT JOIN e USING (profile_id) LEFT JOIN i USING (profile_id)
        LEFT JOIN t USING (profile_id)"""
    )


#: Every profile's identify-trait state: ``profile_traits`` (the latest non-null value per key)
#: plus ``identity_trait_nulls`` (keys whose latest identify value is null), as one relation.
_TRAIT_STATE = """SELECT profile_id, key, value, message_id, timestamp FROM profile_traits
    UNION ALL SELECT profile_id, key, 'null'::JSON, message_id, timestamp FROM identity_trait_nulls"""


def _profile_traits(
    con: duckdb.DuckDBPyConnection, identifies_sql: str, *, stored_sql: str | None = None,
    replace_sql: str | None = None,
) -> None:
    """Write the identify traits of the profiles of ``identifies_sql`` (rows ``rowid,
    profile_id`` of identify events): per key the latest identify in canonical order wins; a
    JSON null removes the key (kept in ``identity_trait_nulls``, so that a later merge still
    knows the key was removed).

    Latest-wins is a maximum, so a profile's state combines: ``stored_sql`` adds state rows
    (``profile_id, key, value, message_id, timestamp``, e.g. of the stored profiles merged into
    it) to the events', and a continuation reads no stored event. ``replace_sql`` names the
    profiles whose stored state rows are deleted before the new ones are written."""
    stored = (
        f"UNION ALL SELECT profile_id, key, value, message_id, timestamp, 0 FROM ({stored_sql})"
        if stored_sql else ""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _traits_new AS
        WITH s AS MATERIALIZED ({identifies_sql}),
        -- a rowid semi-join reads only the identify events' rows (a join on rowid scans them all)
        ev AS MATERIALIZED (SELECT _rid AS rid, message_id, timestamp, traits FROM _run_ev
                            WHERE _rid IN (SELECT rowid FROM s))
        SELECT profile_id, key, value, message_id, timestamp FROM (
            SELECT *, row_number() OVER (PARTITION BY profile_id, key
                                         ORDER BY timestamp DESC, message_id DESC, kid) AS rn
            FROM (
                SELECT s.profile_id, k.key, k.value, ev.message_id, ev.timestamp, k.id::BIGINT AS kid
                FROM s JOIN ev ON ev.rid = s.rowid, json_each(ev.traits) k
                WHERE json_type(ev.traits) = 'OBJECT'
                {stored}
            )
        )
        WHERE rn = 1"""
    )
    if replace_sql:
        for table in ("profile_traits", "identity_trait_nulls"):
            con.execute(f"DELETE FROM {table} WHERE profile_id IN ({replace_sql})")
    con.execute(
        """INSERT INTO profile_traits (profile_id, key, value, message_id, timestamp)
        SELECT profile_id, key, value, message_id, timestamp FROM _traits_new
        WHERE json_type(value) <> 'NULL' ORDER BY profile_id, key"""
    )
    con.execute(
        """INSERT INTO identity_trait_nulls
        SELECT profile_id, key, message_id, timestamp FROM _traits_new
        WHERE json_type(value) = 'NULL' ORDER BY profile_id, key"""
    )


def _register(con: duckdb.DuckDBPyConnection, frames: dict[str, pa.Table]) -> None:
    """Materialise arrow frames as temp tables (a registered view is re-scanned per use)."""
    for name, frame in frames.items():
        con.register(f"{name}_a", frame)
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_a")
        finally:
            con.unregister(f"{name}_a")


def _check_ids(con: duckdb.DuckDBPyConnection, pid_table: str, where: str = "true") -> None:
    # an inner join, not ``IN (SELECT ... FROM profiles)``: the hash table is built on the run's
    # few profiles rather than on every stored one
    n, distinct, clash = con.execute(
        f"""SELECT count(*), count(DISTINCT profile_id),
                  (SELECT count(*) FROM {pid_table} x JOIN profiles p ON p.profile_id = x.profile_id WHERE {where})
        FROM {pid_table} WHERE {where}"""
    ).fetchall()[0]
    if n != distinct or clash:
        raise IdentityError(
            "two creating events hash to the same profile id (sha256 prefix collision); "
            "report this with the store"
        )


#: Columns added to the store's identity tables by this module (layouts 5 and 6), rather than in
#: the store's DDL, so stores built by hand (tests, benchmarks) with the base columns keep
#: working; a store resolved by an older layout gets them on the full rebuild its layout forces.
_ADDED_COLUMNS = (
    ("event_profiles", "joined_profile_id", "VARCHAR"),  # the profile the event joined
    ("event_profiles", "event_rowid", "BIGINT"),  # events.rowid when resolved (a checked hint)
    ("profile_identifiers", "origin_profile_id", "VARCHAR"),  # the profile first holding it
)


def _ensure_layout(store: Store) -> None:
    """The added columns, ``identity_trait_nulls`` (identify keys removed by a null) and
    ``identity_event_changes`` (the event-level change feed)."""
    for table, column, type_ in _ADDED_COLUMNS:
        if not store.first_row(
            "SELECT count(*) FROM information_schema.columns WHERE table_catalog = current_database() "
            "AND table_schema = 'main' AND table_name = ? AND column_name = ?",
            [table, column],
        )[0]:
            store.con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {type_}")
    store.con.execute(
        """CREATE TABLE IF NOT EXISTS identity_trait_nulls (
            profile_id VARCHAR NOT NULL, key VARCHAR NOT NULL,
            message_id VARCHAR NOT NULL, timestamp TIMESTAMPTZ NOT NULL)"""
    )
    # the event-level change feed (:func:`_write_feed`); a store without it gets it here, and
    # its feed starts with that run (nothing to back-fill: consumers fall back before it)
    store.con.execute(
        """CREATE TABLE IF NOT EXISTS identity_event_changes (
            run_id BIGINT NOT NULL, message_id VARCHAR NOT NULL,
            profile_id VARCHAR, previous_profile_id VARCHAR)"""
    )


def _next_component(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute(
        "SELECT coalesce(max(component), -1) + 1 FROM identity_identifier_components"
    ).fetchall()[0][0]


def _ep_table(con: duckdb.DuckDBPyConnection, p: str, ev: str) -> None:
    """``{p}_ep``: the resolved events of ``{p}_events(erank, pnum, jnum)`` with their rows of
    ``ev`` and the ids of their final and joined profiles (``{p}_pid``)."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {p}_ep AS
        SELECT e.*, p.pnum, p.profile_id, p.new, j.profile_id AS joined_profile_id
        FROM {p}_events x JOIN {ev} e USING (erank) JOIN {p}_pid p ON p.pnum = x.pnum
        JOIN {p}_pid j ON j.pnum = x.jnum"""
    )


def _insert_rows(con: duckdb.DuckDBPyConnection, p: str, *, ev: str, ids: str) -> None:
    """The rows a graph result adds, the same for a re-resolution (``_g``) and a continuation
    (``_c``): new profiles, the events' rows, the identifiers attached (with the profile their
    gain event joined), merges and violations in order. ``{p}_pid`` numbers the profiles
    (``new`` marks those created here); ``ev`` / ``ids`` hold the events by rank and the
    identifiers by index."""
    con.execute(
        f"""INSERT INTO profiles SELECT profile_id, created_by, created_at FROM {p}_pid
        WHERE new AND pnum IN (SELECT pnum FROM {p}_ep) ORDER BY profile_id"""
    )
    con.execute(
        f"""INSERT INTO event_profiles (message_id, profile_id, joined_profile_id, event_rowid)
        SELECT message_id, profile_id, joined_profile_id, eid FROM {p}_ep ORDER BY erank"""
    )
    # a view: a full run writes it once, a re-resolution's fingerprints read it again (small)
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW {p}_pi AS
        SELECT p.profile_id, i.type, i.value, g.timestamp AS first_seen_at, g.message_id,
               g.joined_profile_id AS origin_profile_id
        FROM {p}_idents x JOIN {ids} i USING (iid) JOIN {p}_pid p USING (pnum)
        JOIN {p}_ep g ON g.erank = x.gain"""
    )
    con.execute(
        f"""INSERT INTO profile_identifiers
            (profile_id, type, value, first_seen_at, message_id, origin_profile_id)
        SELECT * FROM {p}_pi ORDER BY profile_id, type, value"""
    )
    con.execute(
        f"""INSERT INTO identity_merges
        SELECT f.profile_id, t.profile_id, e.message_id, e.timestamp
        FROM {p}_merges m JOIN {p}_pid f ON f.pnum = m.mfrom JOIN {p}_pid t ON t.pnum = m.minto
        JOIN {ev} e USING (erank) ORDER BY m.seq"""
    )
    con.execute(
        f"""INSERT INTO identity_violations
        SELECT e.message_id, e.timestamp, r.rule_type, r.limit_value, i.type, i.value
        FROM {p}_violations v JOIN {ev} e USING (erank) JOIN _rules r USING (tidx)
        JOIN {ids} i USING (iid) ORDER BY v.seq"""
    )


def _write(
    con: duckdb.DuckDBPyConnection, r: GraphResult, *, full: bool, run_id: int
) -> None:
    """Replace the rows of the re-resolved components (every row when ``full``: the caller
    emptied the tables) from the graph result, inside the caller's transaction; record the
    profile changes. Events are joined back by their canonical rank, an integer."""
    resolved = np.flatnonzero(r.event_profile >= 0)
    creators = np.unique(np.r_[r.event_profile[resolved], r.event_joined[resolved], r.merge_from, r.merge_into])
    survivors = np.unique(r.event_profile[resolved])
    attached = np.flatnonzero(r.ident_profile >= 0)
    last = np.full(r.components, -1, dtype=np.int64)
    np.maximum.at(last, r.event_component, np.arange(len(r.event_component), dtype=np.int64))
    base = _next_component(con)
    _register(con, {
        "_g_events": pa.table({"erank": resolved, "pnum": r.event_profile[resolved],
                               "jnum": r.event_joined[resolved]}),
        "_g_idents": pa.table(
            {"iid": attached, "pnum": r.ident_profile[attached], "gain": r.ident_gain[attached]}
        ),
        "_g_icomp": pa.table({"iid": np.arange(len(r.ident_component), dtype=np.int64),
                              "component": r.ident_component + base}),
        "_g_pcomp": pa.table({"pnum": survivors, "component": r.event_component[survivors] + base}),
        "_g_last": pa.table({"component": np.arange(r.components, dtype=np.int64) + base, "erank": last}),
        "_g_creators": pa.table({"pnum": creators}),
        "_g_merges": pa.table(
            {"mfrom": r.merge_from, "minto": r.merge_into, "erank": r.merge_event,
             "seq": np.arange(len(r.merge_from), dtype=np.int64)}
        ),
        "_g_violations": pa.table(
            {"erank": r.violation_event, "tidx": r.violation_type, "iid": r.violation_ident,
             "seq": np.arange(len(r.violation_event), dtype=np.int64)}
        ),
    })
    if not full:  # a full run took ``_fp_old`` of every profile before emptying the tables
        _fingerprints(con, "_fp_old", "SELECT profile_id FROM _old_prof", events="_ep_rows")
        for table in ("profiles", "profile_identifiers", "profile_traits", "identity_trait_nulls",
                      "identity_component_profiles"):
            con.execute(f"DELETE FROM {table} WHERE profile_id IN (SELECT profile_id FROM _old_prof)")
        con.execute(
            """DELETE FROM event_profiles WHERE rowid IN
            (SELECT rid FROM _ep_rows WHERE profile_id IN (SELECT profile_id FROM _old_prof))"""
        )
        for table in ("identity_merges", "identity_violations"):
            con.execute(f"DELETE FROM {table} WHERE message_id IN (SELECT message_id FROM _old_events)")
        for table in ("identity_component_last", "identity_identifier_components"):
            con.execute(f"DELETE FROM {table} WHERE component IN (SELECT component FROM _touched)")
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _g_pid AS
        SELECT c.pnum, 'prf_' || substr(sha256(e.message_id), 1, 16) AS profile_id,
               e.message_id AS created_by, e.timestamp AS created_at, true AS new
        FROM _g_creators c JOIN _ev e ON e.erank = c.pnum"""
    )
    _check_ids(con, "_g_pid")
    _ep_table(con, "_g", "_ev")
    _insert_rows(con, "_g", ev="_ev", ids="_ids")
    con.execute(
        """INSERT INTO identity_identifier_components
        SELECT i.type, i.value, c.component FROM _g_icomp c JOIN _ids i USING (iid)"""
    )
    con.execute(
        """INSERT INTO identity_component_profiles
        SELECT p.profile_id, c.component FROM _g_pcomp c JOIN _g_pid p USING (pnum)"""
    )
    con.execute(
        """INSERT INTO identity_component_last
        SELECT l.component, e.timestamp, e.message_id FROM _g_last l JOIN _ev e USING (erank)"""
    )
    _profile_traits(con, "SELECT eid AS rowid, profile_id FROM _g_ep WHERE identify")
    _record_changes(con, run_id, new_sql="SELECT profile_id FROM _g_pid JOIN _g_pcomp USING (pnum)")


def _record_changes(con: duckdb.DuckDBPyConnection, run_id: int, *, new_sql: str) -> None:
    """identity_changes of a from-scratch re-resolution: fingerprints before (``_fp_old``) and after."""
    if con.execute("SELECT count(*) FROM _fp_old").fetchall()[0][0] == 0:
        # no profile before in what was re-resolved: every new one is created, no fingerprint
        con.execute(
            f"INSERT INTO identity_changes SELECT {int(run_id)}, profile_id, 'created' FROM ({new_sql}) ORDER BY 2"
        )
        return
    _fingerprints(con, "_g_fp_new", new_sql, events="_g_ep", identifiers="_g_pi",
                  traits="(SELECT * FROM _traits_new WHERE json_type(value) <> 'NULL')")
    con.execute(
        f"""INSERT INTO identity_changes
        SELECT {int(run_id)}, coalesce(n.profile_id, o.profile_id),
               CASE WHEN o.profile_id IS NULL THEN 'created'
                    WHEN n.profile_id IS NULL THEN 'removed' ELSE 'changed' END
        FROM _g_fp_new n FULL JOIN _fp_old o USING (profile_id)
        WHERE n.fp IS DISTINCT FROM o.fp
        ORDER BY 2"""
    )


def _write_continued(con: duckdb.DuckDBPyConnection, *, run_id: int) -> None:
    """Apply the continued groups' result (:func:`_prepare_continued`): only their new events'
    rows are inserted; merged-away stored profiles hand their rows to the survivor; the identify
    traits of the profiles that received an identify or a merge combine their stored states
    with the new identify events (no stored event is read)."""
    # absorbed late events (see _absorbable), under their profile's final id
    con.execute(
        """INSERT INTO event_profiles (message_id, profile_id, joined_profile_id, event_rowid)
        SELECT message_id, profile_id, joined_profile_id, eid FROM _absorbed_f ORDER BY eid"""
    )
    # stored profiles merged away: their rows follow the survivor (deleted by rowid and inserted
    # again, from the rows read before: far cheaper than an UPDATE of a string column)
    con.execute(
        """DELETE FROM event_profiles WHERE rowid IN
        (SELECT rid FROM _ep_rows WHERE profile_id IN (SELECT old_id FROM _c_remap))"""
    )
    con.execute(
        """INSERT INTO event_profiles (message_id, profile_id, joined_profile_id, event_rowid)
        SELECT r.message_id, m.new_id, r.joined_profile_id, r.event_rowid
        FROM _ep_rows r JOIN _c_remap m ON m.old_id = r.profile_id ORDER BY r.rid"""
    )
    con.execute(
        """UPDATE profile_identifiers SET profile_id = m.new_id FROM _c_remap m
        WHERE profile_identifiers.profile_id = m.old_id"""
    )
    # traits: the profiles that got an identify or absorbed another profile (a merge combines
    # keys by time, and a later null in one removes a key of the other)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _c_traits AS
        SELECT DISTINCT profile_id FROM _c_ep
        WHERE identify OR erank IN (SELECT erank FROM _c_merges)
        UNION SELECT profile_id FROM _absorbed_f WHERE identify"""
    )
    _profile_traits(
        con,
        """SELECT eid AS rowid, profile_id FROM _c_ep WHERE identify
        UNION ALL SELECT eid, profile_id FROM _absorbed_f WHERE identify""",
        stored_sql=f"""SELECT coalesce(m.new_id, t.profile_id) AS profile_id, t.key, t.value,
                   t.message_id, t.timestamp
            FROM ({_TRAIT_STATE}) t LEFT JOIN _c_remap m ON m.old_id = t.profile_id
            WHERE coalesce(m.new_id, t.profile_id) IN (SELECT profile_id FROM _c_traits)""",
        replace_sql="SELECT profile_id FROM _c_traits UNION ALL SELECT old_id FROM _c_remap",
    )
    for table in ("profiles", "identity_component_profiles"):
        con.execute(f"DELETE FROM {table} WHERE profile_id IN (SELECT old_id FROM _c_remap)")
    _insert_rows(con, "_c", ev="_c_ev", ids="_c_ids")
    # components: a group keeps its smallest stored component (the others are relabelled to it)
    # or gets a new one
    base = _next_component(con)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _c_grp AS
        SELECT grp, coalesce(min(p.component),
                             {int(base)} + row_number() OVER (PARTITION BY min(p.component) IS NULL ORDER BY grp) - 1)
                   AS component
        FROM (SELECT DISTINCT grp FROM _c_ev) g LEFT JOIN _plan_comp p USING (grp)
        GROUP BY grp"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _c_relabel AS
        SELECT p.component AS old, g.component AS new FROM _plan_comp p JOIN _c_grp g USING (grp)
        WHERE p.component <> g.component"""
    )
    for table in ("identity_identifier_components", "identity_component_profiles"):
        con.execute(
            f"""UPDATE {table} SET component = m.new FROM _c_relabel m
            WHERE {table}.component = m.old"""
        )
    con.execute(
        """DELETE FROM identity_component_last WHERE component IN (SELECT old FROM _c_relabel)
        OR component IN (SELECT component FROM _c_grp)"""
    )
    con.execute(
        """INSERT INTO identity_component_last
        SELECT g.component, e.timestamp, e.message_id FROM _c_ev e JOIN _c_grp g USING (grp)
        QUALIFY row_number() OVER (PARTITION BY e.grp ORDER BY e.erank DESC) = 1"""
    )
    con.execute(
        """INSERT INTO identity_identifier_components
        SELECT DISTINCT o.type, o.value, g.component
        FROM _occ_comp o JOIN _c_ev e USING (eid) JOIN _c_grp g USING (grp)
        WHERE o.component IS NULL"""
    )
    con.execute(
        """INSERT INTO identity_component_profiles
        SELECT DISTINCT s.profile_id, g.component FROM _c_ep s JOIN _c_grp g USING (grp) WHERE s.new"""
    )
    con.execute(
        f"""INSERT INTO identity_changes
        SELECT {int(run_id)}, profile_id, kind FROM (
            SELECT profile_id, CASE WHEN new THEN 'created' ELSE 'changed' END AS kind FROM _c_ep
            UNION SELECT profile_id, 'changed' FROM _absorbed_f
            UNION ALL SELECT old_id, 'removed' FROM _c_remap
        ) ORDER BY 2"""
    )


def _write_feed(store: Store, *, run_id: int, full: bool, continued: bool, reresolved: bool) -> None:
    """``identity_event_changes``: every event whose ``event_profiles`` row this run added, moved
    or removed, as ``(run_id, message_id, profile_id, previous_profile_id)`` (NULL: no row), so
    that consumers keeping state per profile (incremental traits) read the moves instead of
    scanning ``event_profiles``. Made from the rows in hand: the continued and absorbed events,
    the rows of stored profiles merged away, and the re-resolved components' rows before and
    after. A full run lists nothing (diffing every row would cost the rebuild a scan of the
    old table): it empties the feed and it starts again with the next run (``FEED_KEY``)."""
    con = store.con
    if full:
        con.execute("DELETE FROM identity_event_changes")
        store.set_meta(FEED_KEY, str(run_id + 1))
        return
    after, before = [], []
    if continued:
        after += ["SELECT message_id, profile_id FROM _c_ep",
                  "SELECT message_id, profile_id FROM _absorbed_f",
                  "SELECT r.message_id, m.new_id FROM _ep_rows r JOIN _c_remap m ON m.old_id = r.profile_id"]
        before.append("SELECT message_id, profile_id FROM _ep_rows WHERE profile_id IN (SELECT old_id FROM _c_remap)")
    if reresolved:
        after.append("SELECT message_id, profile_id FROM _g_ep")
        before.append("SELECT message_id, profile_id FROM _ep_rows WHERE profile_id IN (SELECT profile_id FROM _old_prof)")
    if after:
        con.execute(
            f"""INSERT INTO identity_event_changes
            SELECT {int(run_id)}, coalesce(a.message_id, b.message_id), a.profile_id, b.profile_id
            FROM ({" UNION ALL ".join(after)}) a FULL JOIN ({" UNION ALL ".join(before)}) b
                ON a.message_id = b.message_id
            WHERE a.profile_id IS DISTINCT FROM b.profile_id ORDER BY 2"""
        )
    if store.get_meta(FEED_KEY) is None:
        store.set_meta(FEED_KEY, str(run_id))


def _write_counts(con: duckdb.DuckDBPyConnection, *, full: bool) -> None:
    """Blocked counts are per event: add the new events' (``_new_occ``); record the ingests."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _g_blocked AS
        SELECT type, value, sum(events)::BIGINT AS events FROM (
            SELECT type, value, events FROM identity_blocked
            WHERE (type, value) IN (SELECT (type, value) FROM _new_occ WHERE blocked)
            UNION ALL
            SELECT type, value, count(*) FROM _new_occ WHERE blocked GROUP BY type, value
        ) GROUP BY type, value"""
    )
    con.execute(
        """DELETE FROM identity_blocked
        WHERE (type, value) IN (SELECT (type, value) FROM _g_blocked)"""
    )
    con.execute("INSERT INTO identity_blocked SELECT * FROM _g_blocked ORDER BY type, value")
    if full:
        con.execute("INSERT INTO identity_ingests SELECT ingest_id, count(*) FROM events GROUP BY 1 ORDER BY 1")
    else:
        con.execute(
            """INSERT INTO identity_ingests SELECT ingest_id, count(*) FROM events
            WHERE ingest_id NOT IN (SELECT ingest_id FROM identity_ingests) GROUP BY 1 ORDER BY 1"""
        )


def _report(
    con: duckdb.DuckDBPyConnection, started: float, *, up_to_date: bool, result: GraphResult | None
) -> IdentityReport:
    events = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    resolved = con.execute("SELECT count(*) FROM event_profiles").fetchall()[0][0]
    profiles = con.execute("SELECT count(*) FROM profiles").fetchall()[0][0]
    identifiers = con.execute("SELECT count(*) FROM profile_identifiers").fetchall()[0][0]
    merges = con.execute("SELECT count(*) FROM identity_merges").fetchall()[0][0]
    by_rule = con.execute(
        """SELECT rule_type, dropped_type, count(*) FROM identity_violations
        GROUP BY ALL ORDER BY 3 DESC, 1, 2"""
    ).fetchall()
    blocked_by_type = con.execute(
        "SELECT type, sum(events)::BIGINT FROM identity_blocked GROUP BY 1 ORDER BY 2 DESC, 1"
    ).fetchall()
    blocked_values = con.execute(
        f"SELECT type, value, events FROM identity_blocked ORDER BY events DESC, type, value LIMIT {_TOP}"
    ).fetchall()
    largest = con.execute(
        f"""SELECT profile_id, count(*) FROM profile_identifiers
        GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {_TOP // 2}"""
    ).fetchall()
    return IdentityReport(
        events=events,
        resolved_events=resolved,
        unresolved_events=events - resolved,
        profiles=profiles,
        identifiers=identifiers,
        merges=merges,
        violations=sum(n for _, _, n in by_rule),
        violations_by_rule=tuple((a, b, int(n)) for a, b, n in by_rule),
        blocked=sum(int(n) for _, n in blocked_by_type),
        blocked_by_type=tuple((a, int(n)) for a, n in blocked_by_type),
        blocked_values=tuple((a, b, int(n)) for a, b, n in blocked_values),
        largest_profiles=tuple((a, int(n)) for a, n in largest),
        components=None if result is None else result.components,
        replayed_events=None if result is None else result.replayed_events,
        up_to_date=up_to_date,
        seconds=time.perf_counter() - started,
    )


"""Identity resolution against the store: events in, identity tables out (the only I/O here).

The result is a function of the event set and the rules (``identity.md``: order independence).
Candidate components (events linked transitively by shared identifiers, limits ignored) are
closed: each resolves from scratch independently of the others. So a run with new events
re-resolves only the components their identifiers touch (plus the new events) and leaves the
rest alone, which makes late events exact by construction; a rules change, or an ingest whose
event count changed, rebuilds everything. Extraction and joins run in DuckDB; the graph runs on
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

from engine.config import definition_hash
from engine.errors import IdentityError, NotFoundError
from engine.identity.extract import identifiers_sql, normalise, sql_literal
from engine.identity.graph import GraphInput, GraphResult, resolve_graph
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
    "identity_blocked",
    "identity_components",
    "identity_identifier_components",
    "identity_ingests",
)
_STATE_KEY = "identity_state"
_RULES_KEY = "identity_rules"
_RUN_KEY = "identity_run"
_TEMP_TABLES = ("_id_occ", "_ev", "_ids", "_fresh", "_touched", "_old_events", "_old_prof", "_fp_old")
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
    reresolved_events: int = 0  # new events plus the events of the components they touched
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
    rules_hash = definition_hash({"rules": rules.semantic(), "v": 2})
    full = store.get_meta(_RULES_KEY) != rules_hash or _ingests_changed(con)
    run_id = int(store.get_meta(_RUN_KEY) or 0) + 1
    marks = [time.perf_counter()]
    try:
        with progress.step("Extracting identifiers"):
            touched = _extract_todo(con, rules, full=full)
        marks.append(time.perf_counter())
        with progress.step("Resolving identities"):
            result = resolve_graph(_graph_input(con, rules))
        marks.append(time.perf_counter())
        with progress.step("Writing identity tables"):
            with store.transaction():
                changes = _write(con, rules, result, full=full, run_id=run_id)
                store.set_meta(_STATE_KEY, state)
                store.set_meta(_RULES_KEY, rules_hash)
                store.set_meta(_RUN_KEY, str(run_id))
        new_events = con.execute("SELECT count(*) FROM _fresh").fetchall()[0][0]
        reresolved = con.execute("SELECT count(*) FROM _ev").fetchall()[0][0]
        marks.append(time.perf_counter())
    finally:
        con.execute("DROP VIEW IF EXISTS _id_rows")
        for name in _TEMP_TABLES:
            con.execute(f"DROP TABLE IF EXISTS {name}")
    report = _report(con, started, up_to_date=False, result=result)
    return replace(
        report,
        mode="full" if full else "incremental",
        new_events=new_events,
        reresolved_events=reresolved,
        touched_components=touched,
        run_id=run_id,
        created=changes.get("created", 0),
        removed=changes.get("removed", 0),
        changed=changes.get("changed", 0),
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
def _state(con: duckdb.DuckDBPyConnection, rules: IdentityRules) -> str:
    """What the identity tables are a function of: the rules and the (append-only) event set."""
    n, last, lo, hi = con.execute(
        "SELECT count(*), max(ingest_id), min(timestamp)::VARCHAR, max(timestamp)::VARCHAR FROM events"
    ).fetchall()[0]
    return definition_hash({"rules": rules.semantic(), "events": [n, last, lo, hi], "v": 1})


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
    """Extract every event (a full rebuild; the benchmark's bare baseline uses it too)."""
    con.execute("CREATE OR REPLACE TEMP TABLE _fresh AS SELECT rowid AS eid FROM events")
    _occurrences(con, rules, "_id_occ", "events", "rowid")
    _number(con, rules)


def _extract_todo(con: duckdb.DuckDBPyConnection, rules: IdentityRules, *, full: bool) -> int:
    """Build ``_id_occ`` / ``_ev`` / ``_ids`` for the events to resolve; the touched components.

    ``_fresh`` holds the rowids of the events not resolved before (all of them when ``full``);
    ``_id_occ.fresh`` marks their occurrences (blocked counts add only those).
    """
    con.execute("CREATE OR REPLACE TEMP TABLE _touched (component BIGINT)")
    con.execute("CREATE OR REPLACE TEMP TABLE _old_events (message_id VARCHAR)")
    if full:
        _extract(con, rules)
        return 0
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _fresh AS SELECT rowid AS eid FROM events
        WHERE ingest_id NOT IN (SELECT ingest_id FROM identity_ingests)"""
    )
    _occurrences(con, rules, "_id_occ", "(SELECT rowid AS _rid, * FROM events WHERE rowid IN (SELECT eid FROM _fresh))", "_rid")
    con.execute(
        """INSERT INTO _touched SELECT DISTINCT c.component
        FROM _id_occ o JOIN identity_identifier_components c USING (type, value) WHERE NOT o.blocked"""
    )
    con.execute(
        """INSERT INTO _old_events SELECT message_id FROM identity_components
        WHERE component IN (SELECT component FROM _touched)"""
    )
    n_old = con.execute("SELECT count(*) FROM _old_events").fetchall()[0][0]
    if n_old:
        _occurrences(
            con, rules, "_id_occ_old",
            "(SELECT rowid AS _rid, * FROM events WHERE message_id IN (SELECT message_id FROM _old_events))",
            "_rid",
        )
        con.execute("INSERT INTO _id_occ SELECT eid, type, value, blocked, false FROM _id_occ_old")
        con.execute("DROP TABLE _id_occ_old")
    _number(con, rules)
    return con.execute("SELECT count(*) FROM _touched").fetchall()[0][0]


def _occurrences(con: duckdb.DuckDBPyConnection, rules: IdentityRules, name: str, source: str, key: str) -> None:
    # events are keyed by rowid (an integer) until the output joins bring message_id back;
    # one row per (event, identifier): an email in traits and context.traits counts once
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS "
        f"SELECT DISTINCT eid, type, value, blocked, true AS fresh "
        f"FROM ({identifiers_sql(rules, source=source, key=key)})"
    )


def _number(con: duckdb.DuckDBPyConnection, rules: IdentityRules) -> None:
    """Rank the events to resolve canonically and number their identifiers by priority."""
    types = ", ".join(f"({sql_literal(r.type)}, {i})" for i, r in enumerate(rules.identifiers))
    con.execute("CREATE OR REPLACE TEMP VIEW _id_rows AS SELECT eid, type, value FROM _id_occ WHERE NOT blocked")
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _ev AS
        SELECT rowid AS eid, message_id, timestamp, epoch_us(timestamp) AS ts,
               row_number() OVER (ORDER BY timestamp, message_id) - 1 AS erank
        FROM events WHERE rowid IN (SELECT eid FROM _id_rows)"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _ids AS
        SELECT type, value, tidx, row_number() OVER (ORDER BY tidx, value) - 1 AS iid
        FROM (SELECT DISTINCT type, value FROM _id_rows)
        JOIN (VALUES {types}) AS t(type, tidx) USING (type)"""
    )


def _graph_input(con: duckdb.DuckDBPyConnection, rules: IdentityRules) -> GraphInput:
    rows = con.execute(
        """SELECT e.erank, i.iid FROM _id_rows r
        JOIN _ev e USING (eid) JOIN _ids i USING (type, value)
        ORDER BY e.erank, i.iid"""
    ).fetchnumpy()
    ts = con.execute("SELECT ts FROM _ev ORDER BY erank").fetchnumpy()["ts"]
    types = con.execute("SELECT tidx FROM _ids ORDER BY iid").fetchnumpy()["tidx"]
    return GraphInput(
        row_event=np.asarray(rows["erank"], dtype=np.int64),
        row_ident=np.asarray(rows["iid"], dtype=np.int64),
        ident_type=np.asarray(types, dtype=np.int64),
        event_ts=np.asarray(ts, dtype=np.int64),
        limits=np.asarray([r.limit for r in rules.identifiers], dtype=np.int64),
        periods=np.asarray(
            [-1 if r.period_micros is None else r.period_micros for r in rules.identifiers],
            dtype=np.int64,
        ),
    )


def _fingerprints(con: duckdb.DuckDBPyConnection, name: str, profiles_sql: str) -> None:
    """Temp table ``name(profile_id, fp)``: a hash of each profile's events, identifiers, traits."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {name} AS
        WITH sel AS ({profiles_sql}),
        e AS (SELECT profile_id, count(*) AS n, sum(hash(message_id)) AS h FROM event_profiles
              WHERE profile_id IN (SELECT profile_id FROM sel) GROUP BY 1),
        i AS (SELECT profile_id, sum(hash(type, value, first_seen_at, message_id)) AS h
              FROM profile_identifiers WHERE profile_id IN (SELECT profile_id FROM sel) GROUP BY 1),
        t AS (SELECT profile_id, sum(hash(key, value::VARCHAR, message_id)) AS h FROM profile_traits
              WHERE profile_id IN (SELECT profile_id FROM sel) GROUP BY 1)
        SELECT sel.profile_id, hash(e.n, e.h, i.h, t.h) AS fp
        FROM sel LEFT JOIN e USING (profile_id) LEFT JOIN i USING (profile_id)
        LEFT JOIN t USING (profile_id)"""
    )


def _write(
    con: duckdb.DuckDBPyConnection, rules: IdentityRules, r: GraphResult, *, full: bool, run_id: int
) -> dict[str, int]:
    """Replace the rows of the re-resolved components (every row when ``full``) from the graph
    result, inside the caller's transaction; record and count the profile changes."""
    resolved = np.flatnonzero(r.event_profile >= 0)
    attached = np.flatnonzero(r.ident_profile >= 0)
    creators = np.unique(np.r_[r.event_profile[resolved], r.merge_from, r.merge_into])
    base = 0 if full else con.execute(
        "SELECT coalesce(max(component), -1) + 1 FROM identity_identifier_components"
    ).fetchall()[0][0]
    n_ids = len(r.ident_component)
    frames = {
        "_g_events": pa.table({"erank": resolved, "prank": r.event_profile[resolved]}),
        "_g_idents": pa.table(
            {"iid": attached, "prank": r.ident_profile[attached], "gain": r.ident_gain[attached]}
        ),
        "_g_icomp": pa.table(
            {"iid": np.arange(n_ids, dtype=np.int64), "component": r.ident_component + base}
        ),
        "_g_ecomp": pa.table(
            {"erank": np.arange(len(r.event_component), dtype=np.int64),
             "component": r.event_component + base}
        ),
        "_g_creators": pa.table({"prank": creators}),
        "_g_merges": pa.table(
            {"mfrom": r.merge_from, "minto": r.merge_into, "erank": r.merge_event,
             "seq": np.arange(len(r.merge_from), dtype=np.int64)}
        ),
        "_g_violations": pa.table(
            {"erank": r.violation_event, "tidx": r.violation_type, "iid": r.violation_ident,
             "seq": np.arange(len(r.violation_event), dtype=np.int64)}
        ),
        "_g_rules": pa.table(
            {"tidx": np.arange(len(rules.identifiers), dtype=np.int64),
             "rule_type": [x.type for x in rules.identifiers],
             "limit_value": [x.limit for x in rules.identifiers]}
        ),
    }
    for name, frame in frames.items():
        con.register(name, frame)
    try:
        if full:
            _fingerprints(con, "_fp_old", "SELECT profile_id FROM profiles")
            for table in IDENTITY_TABLES:
                con.execute(f"DELETE FROM {table}")
        else:
            con.execute(
                """CREATE OR REPLACE TEMP TABLE _old_prof AS SELECT DISTINCT profile_id
                FROM event_profiles WHERE message_id IN (SELECT message_id FROM _old_events)"""
            )
            _fingerprints(con, "_fp_old", "SELECT profile_id FROM _old_prof")
            for table in ("profiles", "profile_identifiers", "profile_traits"):
                con.execute(f"DELETE FROM {table} WHERE profile_id IN (SELECT profile_id FROM _old_prof)")
            for table in ("event_profiles", "identity_merges", "identity_violations"):
                con.execute(f"DELETE FROM {table} WHERE message_id IN (SELECT message_id FROM _old_events)")
            for table in ("identity_components", "identity_identifier_components"):
                con.execute(f"DELETE FROM {table} WHERE component IN (SELECT component FROM _touched)")
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _g_pid AS
            SELECT c.prank, 'prf_' || substr(sha256(e.message_id), 1, 16) AS profile_id,
                   e.message_id AS created_by, e.timestamp AS created_at
            FROM _g_creators c JOIN _ev e ON e.erank = c.prank"""
        )
        n, distinct, clash = con.execute(
            """SELECT count(*), count(DISTINCT profile_id),
                      count(*) FILTER (WHERE profile_id IN (SELECT profile_id FROM profiles))
            FROM _g_pid"""
        ).fetchall()[0]
        if n != distinct or clash:
            raise IdentityError(
                "two creating events hash to the same profile id (sha256 prefix collision); "
                "report this with the store"
            )
        con.execute(
            """INSERT INTO profiles
            SELECT p.profile_id, p.created_by, p.created_at
            FROM (SELECT DISTINCT prank FROM _g_events) s JOIN _g_pid p USING (prank)
            ORDER BY p.profile_id"""
        )
        con.execute(
            """INSERT INTO event_profiles
            SELECT e.message_id, p.profile_id
            FROM _g_events g JOIN _ev e USING (erank) JOIN _g_pid p USING (prank)
            ORDER BY g.erank"""
        )
        con.execute(
            """INSERT INTO profile_identifiers
            SELECT p.profile_id, i.type, i.value, e.timestamp, e.message_id
            FROM _g_idents g JOIN _ids i USING (iid) JOIN _g_pid p USING (prank)
            JOIN _ev e ON e.erank = g.gain
            ORDER BY p.profile_id, i.tidx, i.value"""
        )
        con.execute(
            """INSERT INTO identity_merges
            SELECT f.profile_id, t.profile_id, e.message_id, e.timestamp
            FROM _g_merges m JOIN _g_pid f ON f.prank = m.mfrom JOIN _g_pid t ON t.prank = m.minto
            JOIN _ev e USING (erank)
            ORDER BY m.seq"""
        )
        con.execute(
            """INSERT INTO identity_violations
            SELECT e.message_id, e.timestamp, r.rule_type, r.limit_value, i.type, i.value
            FROM _g_violations v JOIN _ev e USING (erank) JOIN _g_rules r USING (tidx)
            JOIN _ids i USING (iid)
            ORDER BY v.seq"""
        )
        con.execute(
            """INSERT INTO identity_identifier_components
            SELECT i.type, i.value, c.component FROM _g_icomp c JOIN _ids i USING (iid)"""
        )
        con.execute(
            """INSERT INTO identity_components
            SELECT e.message_id, c.component FROM _g_ecomp c JOIN _ev e USING (erank)"""
        )
        # blocked counts are per event: add the new events' (re-resolved ones are counted already)
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _g_blocked AS
            SELECT type, value, sum(events)::BIGINT AS events FROM (
                SELECT type, value, events FROM identity_blocked
                UNION ALL
                SELECT type, value, count(*) FROM _id_occ WHERE blocked AND fresh GROUP BY type, value
            ) GROUP BY type, value"""
        )
        con.execute("DELETE FROM identity_blocked")
        con.execute("INSERT INTO identity_blocked SELECT * FROM _g_blocked ORDER BY type, value")
        con.execute("DROP TABLE _g_blocked")
        # identify traits: per profile and key, the latest identify (canonical order) wins;
        # a JSON null removes the key.
        con.execute(
            """INSERT INTO profile_traits
            SELECT profile_id, key, value, message_id, timestamp FROM (
                SELECT ep.profile_id, k.key, k.value, ev.message_id, ev.timestamp,
                       row_number() OVER (PARTITION BY ep.profile_id, k.key
                                          ORDER BY ev.timestamp DESC, ev.message_id DESC,
                                                   k.id DESC) AS rn
                FROM events ev JOIN event_profiles ep USING (message_id),
                     json_each(ev.traits) k
                WHERE ev.type = 'identify' AND json_type(ev.traits) = 'OBJECT'
                  AND ev.rowid IN (SELECT eid FROM _ev)
            )
            WHERE rn = 1 AND json_type(value) <> 'NULL'
            ORDER BY profile_id, key"""
        )
        con.execute("DELETE FROM identity_ingests")
        con.execute("INSERT INTO identity_ingests SELECT ingest_id, count(*) FROM events GROUP BY 1 ORDER BY 1")
        if con.execute("SELECT count(*) FROM _fp_old").fetchall()[0][0] == 0:
            # no profile before in what was re-resolved: every new one is created, no fingerprint
            con.execute(
                f"""INSERT INTO identity_changes SELECT DISTINCT {int(run_id)}, p.profile_id, 'created'
                FROM _g_pid p JOIN _g_events USING (prank) ORDER BY 2"""
            )
        else:
            _fingerprints(con, "_g_fp_new", "SELECT DISTINCT profile_id FROM _g_pid JOIN _g_events USING (prank)")
            con.execute(
                f"""INSERT INTO identity_changes
                SELECT {int(run_id)}, coalesce(n.profile_id, o.profile_id),
                       CASE WHEN o.profile_id IS NULL THEN 'created'
                            WHEN n.profile_id IS NULL THEN 'removed' ELSE 'changed' END
                FROM _g_fp_new n FULL JOIN _fp_old o USING (profile_id)
                WHERE n.fp IS DISTINCT FROM o.fp
                ORDER BY 2"""
            )
            con.execute("DROP TABLE _g_fp_new")
        counts = con.execute(
            "SELECT kind, count(*) FROM identity_changes WHERE run_id = ? GROUP BY 1", [int(run_id)]
        ).fetchall()
        return {k: int(n) for k, n in counts}
    finally:
        for name in frames:
            con.unregister(name)
        con.execute("DROP TABLE IF EXISTS _g_pid")


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


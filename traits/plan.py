"""All traits of a project in one pass: the generated DuckDB SQL.

The plan is pure: it turns definitions and ``as_of`` into SQL text, and :mod:`engine.compute` runs
it. Shape of the one pass::

    ev     events joined to their profiles, only the traits' event names, timestamp <= as_of,
           only the typed derived columns the traits read (never the JSON)
    s<i>   per session-window trait: the start of each profile's latest unexpired session
    flags  ev + one boolean per trait: "this row is a counting event of trait i"
    agg    GROUP BY profile_id with FILTERed aggregates: every trait's partial aggregates
           (and its diagnostics: counted / missing / rejected / 5 rejected examples)

then one final SELECT over ``profiles LEFT JOIN agg`` turns partial aggregates into typed values
for every profile. Lists past a ``unique_list`` cap are recomputed from their profiles' events only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime

from engine.store import DerivedColumn, quote
from traits.base import Trait, ValueTrait, concat_sql
from traits.unique_list import UniqueList
from traits.values import VALUE_TYPES, column_name, instant_before, json_expression, sql_str, ts_literal
from traits.windows import SessionMinutes

#: Event types whose ``event`` column can name a trait's event.
EVENT_TYPES = ("track", "page", "screen")


def utc(as_of: datetime) -> datetime:
    """``as_of`` as an aware UTC instant (a naive value is taken as UTC)."""
    return as_of.replace(tzinfo=UTC) if as_of.tzinfo is None else as_of.astimezone(UTC)


def ref(kind: str, path: str) -> str:
    """The quoted derived column of ``path`` as ``kind`` (a value type, or ``kind``)."""
    prefix = "kind" if kind == "kind" else VALUE_TYPES[kind].prefix
    return quote(column_name(prefix, path))


def derived_columns(traits: tuple[Trait, ...] | list[Trait]) -> list[DerivedColumn]:
    """Every derived column the traits read, once each, in first-use order."""
    out: dict[str, DerivedColumn] = {}
    for t in traits:
        for c in t.derived_columns():
            out.setdefault(c.name, c)
    return list(out.values())


def condition_sql(trait: Trait, as_of: datetime) -> str:
    """The combined conditions of ``trait`` (``true`` when there are none)."""
    if not trait.conditions:
        return "true"
    joiner = " AND " if trait.match == "all" else " OR "
    return "(" + joiner.join(c.sql(ref, as_of) for c in trait.conditions) + ")"


def selection_sql(trait: Trait, as_of: datetime) -> str:
    """Event name and conditions: the rows a session window is built from."""
    return f"(event = {sql_str(trait.event)} AND {condition_sql(trait, as_of)})"


def session_cte(trait: Trait, name: str, source: str, as_of: datetime) -> str:
    """``name(profile_id, start)``: the start of each profile's latest unexpired session."""
    window = trait.window
    assert isinstance(window, SessionMinutes)
    expiry = instant_before(as_of, minutes=window.minutes)
    # a session length reaching past year 1: no session has expired
    unexpired = "" if expiry is None else f"HAVING max(timestamp) > {ts_literal(expiry)}"
    return f"""{name} AS (
        SELECT profile_id, max(timestamp) FILTER (WHERE brk) AS start FROM (
            SELECT profile_id, timestamp, coalesce(
                epoch_us(timestamp) - lag(epoch_us(timestamp)) OVER (
                    PARTITION BY profile_id ORDER BY timestamp, message_id) >= {window.micros},
                true) AS brk
            FROM {source} WHERE {selection_sql(trait, as_of)}
        ) GROUP BY profile_id {unexpired}
    )"""


#: How the diagnostics' partial aggregates merge (same for every type).
STATS_MERGE = {
    "counted": lambda a, b: f"(coalesce({a}, 0) + coalesce({b}, 0))",
    "missing": lambda a, b: f"(coalesce({a}, 0) + coalesce({b}, 0))",
    "rejected": lambda a, b: f"(coalesce({a}, 0) + coalesce({b}, 0))",
    "examples": lambda a, b: f"list_slice(list_sort({concat_sql(a, b)}), 1, 5)",
}


#: Diagnostics aggregated apart, over the rows they concern only (:meth:`Plan.agg_sql`).
RARE_STATS = frozenset({"missing", "rejected", "examples"})


def shared_flags(traits: tuple[Trait, ...], as_of: datetime) -> tuple[int, ...]:
    """Per trait, the first trait whose counting events are the same (same event, conditions and
    window at ``as_of``): they share its flag column, so the flag is computed once per row and
    DuckDB folds their identical aggregates into one (a counter and a ``last`` over one selection,
    or a definition repeated under two names: 44 of the 100 benchmark traits repeat another).
    A session window's flag reads its own trait's session start: never shared."""
    try:
        return _shared_flags(traits, as_of)
    except TypeError:  # a definition holding an unhashable value: not cached
        return _shared_flags.__wrapped__(traits, as_of)


@functools.lru_cache(maxsize=256)
def _shared_flags(traits: tuple[Trait, ...], as_of: datetime) -> tuple[int, ...]:
    seen: dict[tuple[str, str], int] = {}
    out = []
    for i, t in enumerate(traits):
        if t.window.is_session:
            out.append(i)
        else:
            out.append(seen.setdefault((selection_sql(t, as_of), t.window.sql("timestamp", as_of)), i))
    return tuple(out)


def window_sql(trait: Trait, index: int, as_of: datetime, prefix: str = "") -> str:
    if trait.window.is_session:
        return f"coalesce(timestamp >= {prefix}s{index}.start, false)"
    return trait.window.sql("timestamp", as_of)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """The one-pass SQL of a set of traits at ``as_of``.

    ``keys`` name each trait's partial-aggregate columns (``<key>_<suffix>``): positional
    (``t0``, ``t1``...) for a one-off frame, the semantic hash for the stored state, so a state
    column keeps its meaning while other definitions come and go.
    """

    traits: tuple[Trait, ...]
    as_of: datetime
    keys: tuple[str, ...] = ()

    @classmethod
    def build(
        cls, traits: tuple[Trait, ...] | list[Trait], *, as_of: datetime, keys: tuple[str, ...] | None = None
    ) -> Plan:
        traits = tuple(traits)
        keys = tuple(keys) if keys is not None else tuple(f"t{i}" for i in range(len(traits)))
        return cls(traits=traits, as_of=utc(as_of), keys=keys)

    @property
    def columns(self) -> list[DerivedColumn]:
        return derived_columns(self.traits)

    def read_columns(self, *, stats: bool) -> list[DerivedColumn]:
        """The derived columns the pass scans: the kind columns only feed diagnostics, so a
        values-only pass skips them (five fewer VARCHAR columns for the Flex traits)."""
        if stats:
            return self.columns
        out: dict[str, DerivedColumn] = {}
        for t in self.traits:
            for c in [*(d for cond in t.conditions for d in cond.derived_columns()), t.value_column()]:
                if c is not None:
                    out.setdefault(c.name, c)
        return list(out.values())

    def part(self, index: int, suffix: str) -> str:
        return quote(f"{self.keys[index]}_{suffix}")

    def flag(self, index: int) -> str:
        """The counting flag of trait ``index``: traits selecting the same events share one (see
        :func:`shared_flags`)."""
        return quote(f"f{shared_flags(self.traits, self.as_of)[index]}")

    def leave_flag(self, index: int) -> str:
        """:meth:`delta_sql`'s "stopped counting" flag of trait ``index`` (shared like :meth:`flag`)."""
        return quote(f"l{shared_flags(self.traits, self.as_of)[index]}")

    def owns_flag(self, index: int) -> bool:
        return shared_flags(self.traits, self.as_of)[index] == index

    # -- the relation of counting flags ------------------------------------------------------
    def event_names_sql(self) -> str:
        return ", ".join(sorted({sql_str(t.event) for t in self.traits})) or "NULL"

    def source_sql(
        self, *, stats: bool, event_map: str = "event_profiles", keyed: str | None = None,
        where: str = "true", seq: str | None = None,
    ) -> str:
        """``profile_id, timestamp, message_id, event, <typed columns>`` of the traits' events.

        From ``events`` joined to ``event_map`` (``message_id, profile_id``), or, with ``keyed``,
        from a profile-keyed copy of the events (``trait_events``: no join; NULL profile = not
        resolved; ``seq`` names its canonical-order column, read too). ``where`` is a predicate on
        ``e`` (and ``ep`` when joined).
        """
        cols = "".join(f", e.{quote(c.name)}" for c in self.read_columns(stats=stats))
        if keyed and seq:
            cols += f", e.{seq}"
        if keyed:
            return f"""SELECT e.profile_id, e.timestamp, e.message_id, e.event{cols}
        FROM {keyed} e
        WHERE e.profile_id IS NOT NULL AND e.event IN ({self.event_names_sql()}) AND ({where})"""
        return f"""SELECT ep.profile_id, e.timestamp, e.message_id, e.event{cols}
        FROM events e JOIN {event_map} ep ON ep.message_id = e.message_id
        WHERE e.type IN ({", ".join(sql_str(t) for t in EVENT_TYPES)}) AND e.event IN ({self.event_names_sql()})
          AND ({where})"""

    def relation_ctes(
        self, *, prefix: str = "", profile_filter: str | None = None, event_filter: str | None = None,
        stats: bool = True, event_map: str = "event_profiles", keyed: str | None = None,
        seq: str | None = None,
    ) -> list[str]:
        """CTEs ending in ``<prefix>flags``: the events of the traits with one flag per trait.

        ``profile_filter`` (a query of profile ids) and ``event_filter`` (a predicate on ``e``)
        restrict the events: touched profiles, or new events only. ``event_map`` replaces
        ``event_profiles`` by a (smaller) relation of ``message_id, profile_id``; ``keyed`` reads
        a profile-keyed copy of the events instead (:meth:`source_sql`).
        """
        where = f"e.timestamp <= {ts_literal(self.as_of)}"
        if profile_filter:
            where += f" AND {'e' if keyed else 'ep'}.profile_id IN ({profile_filter})"
        if event_filter:
            where += f" AND ({event_filter})"
        source = self.source_sql(stats=stats, event_map=event_map, keyed=keyed, where=where, seq=seq)
        ctes = [f"{prefix}ev AS (\n        {source}\n    )"]
        joins = []
        for i, t in enumerate(self.traits):
            if t.window.is_session:
                ctes.append(session_cte(t, f"{prefix}s{i}", f"{prefix}ev", self.as_of))
                joins.append(f" LEFT JOIN {prefix}s{i} ON {prefix}s{i}.profile_id = {prefix}ev.profile_id")
        flags = "".join(
            f",\n            ({selection_sql(t, self.as_of)} AND {window_sql(t, i, self.as_of, prefix)}) AS {self.flag(i)}"
            for i, t in enumerate(self.traits) if self.owns_flag(i)
        )
        ctes.append(f"{prefix}flags AS (\n        SELECT {prefix}ev.*{flags}\n        FROM {prefix}ev{''.join(joins)}\n    )")
        return ctes

    # -- partial aggregates per profile ------------------------------------------------------
    def stats_parts(self, index: int) -> dict[str, str]:
        """Diagnostics of a value-reading trait as partial aggregates (counted / missing / ...)."""
        if not isinstance(self.traits[index], ValueTrait):
            return {}
        rejected = self.rejected_sql(index)
        return {
            "counted": f"count(*) FILTER (WHERE {self.flag(index)})",
            "missing": f"count(*) FILTER (WHERE {self.missing_sql(index)})",
            "rejected": f"count(*) FILTER (WHERE {rejected})",
            "examples": f"min({{'t': timestamp, 'm': message_id}}, 5) FILTER (WHERE {rejected})",
        }

    def missing_sql(self, index: int) -> str:
        """A counting event of the value trait ``index`` without the property (absent or null)."""
        k = quote(self.traits[index].kind_column().name)
        return f"{self.flag(index)} AND ({k} IS NULL OR {k} = 'NULL')"

    def rejected_sql(self, index: int) -> str:
        """A counting event of the value trait ``index`` whose property does not convert."""
        t = self.traits[index]
        v, k = quote(t.value_column().name), quote(t.kind_column().name)
        return f"{self.flag(index)} AND {k} <> 'NULL' AND {v} IS NULL"

    def partials(self, index: int, *, stats: bool, state: bool, seq: str | None = None) -> dict[str, str]:
        """Suffix -> partial aggregate SQL of one trait (mergeable forms when ``state``; the
        one-aggregate form of ``sql_ordered`` types when the source has a ``seq`` column)."""
        t = self.traits[index]
        v = quote(t.value_column().name) if isinstance(t, ValueTrait) else None
        ordered = t.sql_ordered(self.flag(index), v, seq) if seq and isinstance(t, ValueTrait) else None
        out = dict(ordered or t.sql_aggregates(self.flag(index), v, state=state))
        if stats:
            out.update(self.stats_parts(index))
        return out

    def agg_select(
        self, *, stats: bool, source: str = "flags", state: bool = False, seq: str | None = None,
        rare: bool | None = None, where: str | None = None,
    ) -> str:
        """``SELECT profile_id, <partial aggregates> FROM source GROUP BY profile_id``.

        ``rare``: only the :data:`RARE_STATS` partials (``True``) or all but them (``False``);
        ``where``: only those rows.
        """
        parts = [
            f"{sql} AS {self.part(i, suffix)}"
            for i in range(len(self.traits))
            for suffix, sql in self.partials(i, stats=stats, state=state, seq=seq).items()
            if rare is None or (suffix in RARE_STATS) == rare
        ]
        body = ",\n        ".join(["profile_id", *parts])
        return f"SELECT {body}\n    FROM {source}{f' WHERE {where}' if where else ''} GROUP BY profile_id"

    def agg_sql(
        self, *, stats: bool, state: bool = False, profile_filter: str | None = None,
        event_filter: str | None = None, event_map: str = "event_profiles", keyed: str | None = None,
    ) -> str:
        """The one pass: partial aggregates (and diagnostics) of every trait, per profile.

        One-shot partials (``state=False``) of ``sql_picked`` types hold only the picked instant;
        :meth:`frame_sql` reads their values at that instant.

        A FILTERed aggregate costs per row it is fed, so the aggregates are split where that
        saves rows (100 traits, 1M events, with diagnostics: 43 -> 10 CPU-s; one GROUP BY of
        ~390 aggregates also held the peak memory): each event name gets its own GROUP BY over
        its own events (``g<k>``), and the diagnostics but ``counted`` (:data:`RARE_STATS`) are
        aggregated over only the rows some trait finds missing or rejected (``d<k>``, a few
        percent). A profile one of them lacks gets what a FILTERed aggregate over no rows gives
        (0 for a count, else NULL), so the rows equal those of one GROUP BY.
        """
        by_event: dict[str, list[int]] = {}
        for i, t in enumerate(self.traits):
            by_event.setdefault(t.event, []).append(i)
        groups = list(by_event.values()) or [[]]
        ctes: list[str] = []
        joins: list[str] = []
        holder: dict[tuple[int, bool], str] = {}  # (trait, rare stat?) -> the relation holding it
        for k, indices in enumerate(groups):
            sub = self.subplan(indices)

            def relation(prefix: str, sub: Plan = sub) -> list[str]:
                return sub.relation_ctes(
                    prefix=prefix, profile_filter=profile_filter, event_filter=event_filter, stats=stats,
                    event_map=event_map, keyed=keyed,
                )

            rare = [j for j, t in enumerate(sub.traits) if stats and isinstance(t, ValueTrait)]
            ctes += relation(f"g{k}_")
            ctes.append(f"g{k} AS (\n    {sub.agg_select(stats=stats, state=state, source=f'g{k}_flags', rare=False if rare else None)}\n    )")
            joins.append(f"g{k}")
            holder.update({(i, False): f"g{k}" for i in indices})
            holder.update({(i, True): f"g{k}" for i in indices})
            if rare:
                # its own copy of the relation: one CTE read by two GROUP BYs is streamed to both
                ctes += relation(f"d{k}_")
                any_rare = " OR ".join(f"({sub.missing_sql(j)}) OR ({sub.rejected_sql(j)})" for j in rare)
                ctes.append(
                    f"d{k} AS (\n    {sub.agg_select(stats=True, state=state, source=f'd{k}_flags', rare=True, where=any_rare)}\n    )"
                )
                joins.append(f"d{k}")
                holder.update({(i, True): f"d{k}" for i in indices})
        if len(joins) == 1:
            return "WITH " + ",\n    ".join(ctes) + "\nSELECT * FROM g0"
        ids = " UNION ".join(f"SELECT profile_id FROM g{k}" for k in range(len(groups)))
        cols = ["ids.profile_id"]
        for i in range(len(self.traits)):
            for suffix, sql in self.partials(i, stats=stats, state=state).items():
                col = f"{holder[i, suffix in RARE_STATS]}.{self.part(i, suffix)}"
                # a count over no rows is 0, not the NULL of a profile the relation lacks
                cols.append(f"coalesce({col}, 0) AS {self.part(i, suffix)}" if sql.startswith("count(") else col)
        body = ",\n        ".join(cols)
        on = "".join(f" LEFT JOIN {r} ON {r}.profile_id = ids.profile_id" for r in joins)
        return "WITH " + ",\n    ".join([*ctes, f"ids AS ({ids})"]) + f"\nSELECT {body}\n    FROM ids{on}"

    def state_columns(self, *, stats: bool = True) -> list[str]:
        """The quoted partial-aggregate columns of the stored state, in order."""
        return [
            self.part(i, suffix)
            for i in range(len(self.traits))
            for suffix in self.partials(i, stats=stats, state=True)
        ]

    def merge_select(self, old: str, new: str, *, stats: bool = True) -> str:
        """Merged partial aggregates of two states (``old`` and ``new`` relations, FULL JOINed).

        Every partial merges associatively and commutatively (see each type's ``sql_merge``), so
        merging the state of new events into the stored one equals aggregating all events.
        """
        exprs = ["coalesce(o.profile_id, n.profile_id) AS profile_id"]
        for i, t in enumerate(self.traits):
            for suffix in self.partials(i, stats=stats, state=True):
                col = self.part(i, suffix)
                merge = STATS_MERGE.get(suffix) or (lambda a, b, s=suffix, t=t: t.sql_merge(s, a, b))
                exprs.append(f"{merge(f'o.{col}', f'n.{col}')} AS {col}")
        body = ",\n        ".join(exprs)
        return f"SELECT {body}\n    FROM {old} o FULL JOIN {new} n ON o.profile_id = n.profile_id"

    # -- what a move of as_of touches ---------------------------------------------------------
    def moved_sql(self, previous: datetime) -> str:
        """A predicate on ``events`` rows: counting at ``previous`` may differ from at ``as_of``.

        Exact for every window but sessions: each flag is a function of the event and ``as_of``,
        so a profile none of whose events changes flag keeps its value. When no condition depends
        on ``as_of`` the flag can only change for events between two positions of a window edge
        (``as_of`` itself, and the window's low and high bounds): plain time ranges, which DuckDB
        prunes by row-group statistics. A ``within_last_days`` condition gets the exact per-row
        comparison of both flags. A session depends on the profile's other events: every event of
        its selection between ``min(as_of) - M`` and ``max(as_of)`` (entering, or moving the
        expiry) marks the profile.
        """
        a, b = utc(previous), self.as_of

        def between(x: datetime | None, y: datetime | None) -> list[str]:
            if x is None or y is None or x == y:
                return []
            return [f"(timestamp > {ts_literal(min(x, y))} AND timestamp <= {ts_literal(max(x, y))})"]

        parts, spans, bounded = [], [], True
        for t in self.traits:
            event = f"event = {sql_str(t.event)}"
            if t.window.is_session:
                bounded = False
                start = instant_before(min(a, b), minutes=t.window.minutes)
                after = "true" if start is None else f"timestamp > {ts_literal(start)}"
                parts.append(
                    f"({event} AND timestamp <= {ts_literal(max(a, b))} AND "
                    f"({after} OR {selection_sql(t, a)} IS DISTINCT FROM {selection_sql(t, b)}))"
                )
            elif condition_sql(t, a) != condition_sql(t, b):
                def flag(x: datetime, t: Trait = t) -> str:
                    return f"(timestamp <= {ts_literal(x)} AND {selection_sql(t, x)} AND {t.window.sql('timestamp', x)})"

                parts.append(f"({flag(a)} IS DISTINCT FROM {flag(b)})")
                bounded = False
            else:
                (low_a, high_a), (low_b, high_b) = t.window.bounds(a), t.window.bounds(b)
                edges = between(a, b) + between(low_a, low_b) + between(high_a, high_b)
                if edges:
                    parts.append(f"({selection_sql(t, b)} AND ({' OR '.join(edges)}))")
                    spans += edges
        if not parts:
            return "false"
        if bounded:
            # the same time ranges alone first: a plain disjunction on one column that DuckDB
            # can check against each row group's min/max, before the per-trait predicate
            return f"({' OR '.join(dict.fromkeys(spans))}) AND ({' OR '.join(parts)})"
        return " OR ".join(parts)

    def delta_sql(self, previous: datetime, *, keyed: str | None = None) -> str:
        """Per profile with an event whose counting flag differs at ``previous`` and ``as_of``:
        the partial aggregates of what changed, and ``_leave`` (an event stopped counting for a
        trait whose state is not reversible: that profile must be recomputed instead).

        For a reversible trait (``Trait.sql_delta``) the partials are entering minus leaving
        events; for the others, entering events only (valid for profiles without ``_leave``).
        Merged into the stored state with :meth:`merge_select`, like a batch of new events.
        Not for session windows (their flags depend on the profile's other events).
        """
        a, b = utc(previous), self.as_of

        def flag(t: Trait, x: datetime) -> str:
            return (
                f"coalesce(timestamp <= {ts_literal(x)} AND {selection_sql(t, x)} "
                f"AND {t.window.sql('timestamp', x)}, false)"
            )

        flags = "".join(
            f",\n            ({flag(t, b)} AND NOT {flag(t, a)}) AS {self.flag(i)}"
            f",\n            ({flag(t, a)} AND NOT {flag(t, b)}) AS {self.leave_flag(i)}"
            for i, t in enumerate(self.traits) if self.owns_flag(i)
        )
        parts, leave = [], []
        for i, t in enumerate(self.traits):
            delta = t.sql_delta(self.flag(i), self.leave_flag(i))
            if delta is None:
                leave.append(f"bool_or({self.leave_flag(i)})")
            for suffix, sql in self.partials(i, stats=True, state=True).items():
                parts.append(f"{(delta or {}).get(suffix, sql)} AS {self.part(i, suffix)}")
        body = ",\n        ".join(["profile_id", *parts, f"{' OR '.join(leave) or 'false'} AS _leave"])
        changed = " OR ".join(
            f"{self.flag(i)} OR {self.leave_flag(i)}" for i in range(len(self.traits)) if self.owns_flag(i)
        ) or "false"
        return f"""WITH ev AS (
        {self.source_sql(stats=True, keyed=keyed, where=self.moved_sql(previous))}
    ),
    flags AS (
        SELECT ev.*{flags}
        FROM ev
    )
SELECT {body}
    FROM flags GROUP BY profile_id HAVING bool_or({changed})"""

    # -- final values ------------------------------------------------------------------------
    def values_sql(
        self, agg: str, *, state: bool = False, where: str | None = None,
        ctes: list[str] | None = None, elsewhere: dict[int, str] | None = None,
        profiles: str = "profiles", event_map: str = "event_profiles",
    ) -> str:
        """One row per profile (sorted by id), one typed column per trait, from ``agg``.

        ``where`` (a query of profile ids) restricts the rows to those profiles. ``ctes`` come
        first; ``elsewhere`` names the relation holding a trait's partials when it is not ``agg``
        (:meth:`frame_sql`). ``profiles`` and ``event_map`` are the identity's profiles and map
        (another instant's, engine/identity/asof.py).
        """
        ctes = list(ctes or [])
        joins: list[str] = [f" LEFT JOIN {r} ON {r}.profile_id = p.profile_id" for r in dict.fromkeys((elsewhere or {}).values())]
        columns: list[str] = []
        restrict = f"p.profile_id IN ({where})" if where else ""
        for i, t in enumerate(self.traits):
            alias = (elsewhere or {}).get(i, "a")
            final = t.sql_final(lambda s, i=i, alias=alias: f"{alias}.{self.part(i, s)}", state=state)
            if isinstance(t, UniqueList):
                over = f"len({alias}.{self.part(i, 'u')}) > {t.max_items}"
                capped = f"cap{i}_"
                only = f" AND {alias}.profile_id IN ({where})" if where else ""
                rel = agg if alias == "a" else alias
                relation = self.relation_ctes(
                    prefix=capped, profile_filter=f"SELECT profile_id FROM {rel} {alias} WHERE {over}{only}",
                    stats=False, event_map=event_map,
                )
                ctes += relation
                ctes.append(
                    f"cap{i} AS ({t.sql_capped(self.flag(i), quote(t.value_column().name), f'{capped}flags')})"
                )
                joins.append(f" LEFT JOIN cap{i} ON cap{i}.profile_id = p.profile_id")
                final = f"(CASE WHEN {over} THEN cap{i}.u ELSE {final} END)"
            columns.append(f"CAST({final} AS {t.output_sql_type}) AS {quote(t.name)}")
        with_ = ("WITH " + ",\n    ".join(ctes) + "\n") if ctes else ""
        select = ",\n    ".join(["p.profile_id", *columns])
        return (
            f"{with_}SELECT {select}\nFROM {profiles} p LEFT JOIN {agg} a ON a.profile_id = p.profile_id"
            f"{''.join(joins)}{' WHERE ' + restrict if restrict else ''}\nORDER BY p.profile_id"
        )

    def subplan(self, indices: list[int]) -> Plan:
        """The plan of some of the traits, keeping their partial-aggregate names."""
        return Plan(
            traits=tuple(self.traits[i] for i in indices), as_of=self.as_of, keys=tuple(self.keys[i] for i in indices)
        )

    def frame_sql(
        self, *, keyed: str | None = None, profiles: str = "profiles", event_map: str = "event_profiles",
        seq: str | None = None,
    ) -> str:
        """Values in one statement (no temporary table, no diagnostics): one-shot aggregates.

        Each event name gets its own GROUP BY profile_id (``agg``, ``e<k>``: a FILTERed aggregate
        costs per row it sees), over the join made once (``joined``) when not ``keyed``, and:

        * ``sql_counted_values`` types (``unique_list_count``, ``most_frequent``) are aggregated in
          two levels, one pass per value column shared by all such traits reading it: GROUP BY
          (profile, value) counting each trait's events, then GROUP BY profile over those few
          rows (``v<k>``). Lists per profile and per trait cost several times more.
        * ``sql_ordered`` types (first / last) over a keyed copy with a ``seq`` column (the
          canonical order as one primitive key, unique per event: ``trait_events.seq``) are one
          ``arg_min/arg_max(value, seq)`` in their event's GROUP BY: exact on ties, no second pass.
        * otherwise (over the join), ``sql_picked`` types find the instant of the event they pick
          in the main GROUP BY (``min/max(timestamp)``, cheap), then their value among the
          counting events at that instant (``pick<k>``: the events joined to those few instants
          per profile; the message id breaks ties there, exactly).
        """
        by_value: dict[str, list[int]] = {}
        main: list[int] = []
        for i, t in enumerate(self.traits):
            if isinstance(t, ValueTrait) and t.sql_counted_values("n", "v") is not None:
                by_value.setdefault(t.value_column().name, []).append(i)
            else:
                main.append(i)
        by_event: dict[str, list[int]] = {}
        for i in main:
            by_event.setdefault(self.traits[i].event, []).append(i)
        ctes: list[str] = []
        if keyed is None:
            seq = None  # only a keyed copy carries the order column
            # the passes below each scan their events: join the events to their profiles once
            where = f"e.timestamp <= {ts_literal(self.as_of)}"
            ctes.append(f"joined AS (\n        {self.source_sql(stats=False, where=where, event_map=event_map)}\n    )")
            keyed = "joined"
        elsewhere: dict[int, str] = {}
        for k, indices in enumerate(by_event.values() or [[]]):
            sub = self.subplan(indices)
            name = "agg" if k == 0 else f"e{k}"
            ctes += sub.relation_ctes(prefix="" if k == 0 else f"{name}_", stats=False, keyed=keyed, seq=seq)
            ctes.append(f"{name} AS (\n{sub.agg_select(stats=False, source='flags' if k == 0 else f'{name}_flags', seq=seq)}\n)")
            if k:
                elsewhere.update({i: name for i in indices})
        for k, (column, indices) in enumerate(by_value.items()):
            sub = self.subplan(indices)
            ctes += sub.relation_ctes(prefix=f"v{k}_", stats=False, keyed=keyed)
            counts = ", ".join(f"count(*) FILTER (WHERE {sub.flag(j)}) AS n{j}" for j in range(len(indices)))
            parts = ", ".join(
                f"{sql} AS {sub.part(j, suffix)}"
                for j, t in enumerate(sub.traits)
                for suffix, sql in t.sql_counted_values(f"n{j}", "v").items()
            )
            any_flag = " OR ".join(sub.flag(j) for j in range(len(indices)))
            ctes.append(f"""v{k} AS (
        SELECT profile_id, {parts} FROM (
            SELECT profile_id, {quote(column)} AS v, {counts} FROM v{k}_flags
            WHERE {quote(column)} IS NOT NULL AND ({any_flag}) GROUP BY profile_id, {quote(column)}
        ) GROUP BY profile_id
    )""")
            elsewhere.update({i: f"v{k}" for i in indices})
        for k, indices in enumerate(by_event.values()):
            picked = [] if seq else [i for i in indices if self._picks(i)]
            if not picked:
                continue
            # the events at each profile's picked instants: a join on the few instants per
            # profile, then each trait's value among its counting events there
            sub, rel, name = self.subplan(picked), elsewhere.get(picked[0], "agg"), f"pick{k}"
            ctes += sub.relation_ctes(prefix=f"{name}_", stats=False, keyed=keyed)
            ats = ", ".join(f"r.{self.part(i, 'at')}" for i in picked)
            parts = ",\n            ".join(
                f"{sql} AS {sub.part(j, suffix)}"
                for j, t in enumerate(sub.traits)
                for suffix, sql in t.sql_picked(sub.flag(j), quote(t.value_column().name), f"r.{sub.part(j, 'at')}").items()
            )  # the agg relation r has only profile_id and partials: event columns need no alias
            ctes.append(f"""{name} AS (
        SELECT f.profile_id,
            {parts}
        FROM {name}_flags f JOIN {rel} r ON r.profile_id = f.profile_id AND f.timestamp IN ({ats})
        GROUP BY f.profile_id
    )""")
            elsewhere.update({i: name for i in picked})
        return self.values_sql("agg", ctes=ctes, elsewhere=elsewhere, profiles=profiles, event_map=event_map)

    def _picks(self, index: int) -> bool:
        t = self.traits[index]
        return isinstance(t, ValueTrait) and t.sql_picked("f", "v", "at") is not None

    # -- one profile, every event (explanations) ---------------------------------------------
    def explain_sql(self, index: int, *, event_map: str = "event_profiles") -> str:
        """Every track/page/screen event of the profile ``$profile_id`` with the trait's tests
        (``event_map``: the identity to read the profile's events from, as in :meth:`source_sql`)."""
        t = self.traits[index]
        cols = "".join(f", e.{quote(c.name)}" for c in self.columns)
        ev = f"""ev AS (
        SELECT ep.profile_id, e.timestamp, e.message_id, e.event, e.type, e.name, e.properties{cols}
        FROM events e JOIN {event_map} ep ON ep.message_id = e.message_id
        WHERE e.type IN ({", ".join(sql_str(x) for x in EVENT_TYPES)}) AND ep.profile_id = $profile_id
    )"""
        ctes = [ev]
        join = ""
        if t.window.is_session:
            ctes.append(f"past AS (SELECT * FROM ev WHERE timestamp <= {ts_literal(self.as_of)})")
            ctes.append(session_cte(t, f"s{index}", "past", self.as_of))
            join = f" LEFT JOIN s{index} ON s{index}.profile_id = ev.profile_id"
        conds = "".join(f", {c.sql(ref, self.as_of)} AS {quote(f'c{j}')}" for j, c in enumerate(t.conditions))
        value = ""
        if isinstance(t, ValueTrait):
            value = (
                f", CAST({json_expression(t.property)} AS VARCHAR) AS raw, "
                f"{quote(t.kind_column().name)} AS kind, {quote(t.value_column().name)} AS value"
            )
        return (
            "WITH " + ",\n    ".join(ctes) + "\n"
            f"SELECT ev.timestamp, ev.message_id, ev.event, event = {sql_str(t.event)} AS is_event, "
            f"timestamp > {ts_literal(self.as_of)} AS after_as_of, "
            f"{window_sql(t, index, self.as_of)} AS in_window, {condition_sql(t, self.as_of)} AS conditions_hold"
            f"{conds}{value}\nFROM ev{join}\nORDER BY timestamp, message_id"
        )

"""Computed traits against the store: the only trait module that touches DuckDB.

``compute_traits`` registers the typed property columns the definitions read, runs the one-pass
plan of :mod:`traits.plan`, and replaces ``trait_values`` / ``trait_stats`` and appends to
``trait_runs`` in one transaction. ``trait_frame`` returns the same values without writing (for
point-in-time features), ``explain_trait`` says why one profile has its value.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl
from rich.table import Table

from engine.errors import NotFoundError, StoreError
from engine.progress import Progress
from engine.store import Store, quote
from traits.base import Trait, ValueTrait
from traits.explain import Explanation, explain
from traits.plan import Plan, derived_columns, utc

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

    def __rich__(self) -> Table:
        table = Table(
            title=f"Computed {len(self.traits)} traits for {self.profiles} profiles "
            f"as of {self.as_of.isoformat()} in {self.seconds:.2f} s"
        )
        table.add_column("trait")
        table.add_column("profiles with a value", justify="right")
        for name in self.traits:
            table.add_row(name, f"{self.with_value.get(name, 0)}")
        if self.columns_added:
            table.caption = f"{len(self.columns_added)} property columns added to the events"
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


def compute_traits(
    store: Store,
    traits: Sequence[Trait],
    *,
    as_of: datetime,
    full: bool = False,
    progress: Progress | None = None,
) -> ComputeReport:
    """Compute every trait for every profile as of ``as_of`` and store values and diagnostics.

    ``full=False`` currently recomputes everything too (same result); incremental state is built
    on the types' ``prepare`` / ``merge`` / ``finalize``.
    """
    progress = progress or Progress()
    started = time.perf_counter()
    traits = tuple(traits)
    as_of = utc(as_of)
    added = _prepare(store, traits, progress)
    plan = Plan.build(traits, as_of=as_of)
    con = store.con
    with progress.step(f"Computing {len(traits)} traits"):
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_AGG} AS {plan.agg_sql(stats=True)}")
    try:
        stats = _stats(store, plan)
        with progress.step("Writing trait values"), store.transaction():
            con.execute(f"CREATE OR REPLACE TABLE trait_values AS {plan.values_sql(_AGG)}")
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
                 [t.name for t in traits], seconds, True],
            )
    finally:
        con.execute(f"DROP TABLE IF EXISTS {_AGG}")
    counts = con.execute(_with_value_sql(traits)).fetchall()[0] if traits else ()
    return ComputeReport(
        as_of=as_of,
        profiles=profiles,
        traits=tuple(t.name for t in traits),
        seconds=time.perf_counter() - started,
        with_value={t.name: int(n) for t, n in zip(traits, counts, strict=False)},
        columns_added=added,
        full=full,
    )


def _stats(store: Store, plan: Plan) -> list[list[object]]:
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
    row = store.con.execute(f"SELECT {', '.join(parts)} FROM {_AGG}").fetchall()[0]
    out = []
    for i, t in enumerate(plan.traits):
        counted, missing, rejected, examples = row[4 * i : 4 * i + 4]
        out.append([i, t.name, t.type, int(counted or 0), int(missing or 0), int(rejected or 0), examples or []])
    return out


def trait_frame(store: Store, traits: Sequence[Trait], *, as_of: datetime) -> pl.DataFrame:
    """The values ``compute_traits`` would store, without writing them (point-in-time features)."""
    traits = tuple(traits)
    _prepare(store, traits, Progress())
    plan = Plan.build(traits, as_of=as_of)
    return store.con.sql(plan.frame_sql()).pl()


def explain_trait(store: Store, profile_id: str, trait: Trait, *, as_of: datetime) -> Explanation:
    """Why ``profile_id`` has its value of ``trait``: every event, counted or why not."""
    _prepare(store, (trait,), Progress())
    found = store.con.execute("SELECT count(*) FROM profiles WHERE profile_id = ?", [profile_id]).fetchall()[0][0]
    if not found:
        raise NotFoundError(f"no profile {profile_id!r}; find one with 'profiles show IDENT'")
    plan = Plan.build((trait,), as_of=as_of)
    frame = store.con.sql(plan.explain_sql(0), params={"profile_id": profile_id}).pl()
    return explain(frame, trait, profile_id=profile_id, as_of=plan.as_of)


def trait_stats(store: Store) -> pl.DataFrame:
    """Diagnostics of the latest compute: counted, missing, rejected and examples per trait."""
    return store.con.sql(
        "SELECT trait, type, counted, missing, rejected, rejected_examples, as_of "
        "FROM trait_stats ORDER BY position"
    ).pl()

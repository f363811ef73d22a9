"""Why a profile has a trait's value: every event, counted or why not, and how they combine.

Pure: takes the per-event tests that :func:`engine.compute.explain_trait` reads with the plan's own
SQL predicates (so the reasons cannot drift from compute), labels each event, and recomputes the
value from the counted events through the type's mergeable state (``prepare`` -> ``finalize``), a
second, independent path to the value that tests compare with compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
from rich.console import Group
from rich.table import Table
from rich.text import Text

from traits.base import Trait, ValueTrait, fmt

#: Statuses of events that count for the trait (value-reading types skip missing and rejected).
COUNTING = ("counted", "missing", "rejected")
#: How many rows of other events' summary and of events the rich view shows at most.
_SHOW = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    """A trait's value for one profile with its reasons.

    Parameters
    ----------
    events
        Every track/page/screen event of the profile in canonical order with ``status``
        (counted, missing, rejected, other event, after as_of, outside window, condition false: ...)
        and, for value-reading types, ``raw`` (the JSON value) and ``value`` (converted).
    combination
        How the counted events combine, in words.
    value
        The trait's value; equals what ``compute_traits`` stores.
    """

    profile_id: str
    trait: Trait
    as_of: datetime
    events: pl.DataFrame
    combination: tuple[str, ...]
    value: Any

    @property
    def counted(self) -> int:
        return int(self.events["status"].is_in(COUNTING).sum())

    @property
    def missing(self) -> int:
        return int((self.events["status"] == "missing").sum())

    @property
    def rejected(self) -> int:
        return int((self.events["status"] == "rejected").sum())

    def __rich__(self) -> Group:
        t = self.trait
        head = Table.grid(padding=(0, 2))
        head.add_row("profile", self.profile_id)
        head.add_row("trait", f"{t.name} ({t.type})")
        head.add_row("event", t.event)
        if isinstance(t, ValueTrait):
            head.add_row("property", f"{t.property} as {t.value_type}")
        if t.conditions:
            head.add_row(f"conditions ({t.match})", "; ".join(c.describe() for c in t.conditions))
        head.add_row("window", t.window.describe())
        head.add_row("as of", self.as_of.isoformat())
        if t.description:
            head.add_row("description", t.description)
        own = self.events.filter(pl.col("status") != "other event")
        rows = Table(title=f"{own.height} '{t.event}' events", show_lines=False)
        for col in ("time", "message id", *(("value",) if isinstance(t, ValueTrait) else ()), "counted / why not"):
            rows.add_column(col)
        for r in own.head(_SHOW).iter_rows(named=True):
            cells = [fmt(r["timestamp"]), r["message_id"]]
            if isinstance(t, ValueTrait):
                cells.append(r["raw"] if r["raw"] is not None else "(absent)")
            cells.append(r["status"])
            rows.add_row(*cells)
        parts: list[Any] = [head, rows]
        others = self.events.height - own.height
        if others:
            parts.append(Text(f"{others} events of other names are not considered"))
        parts.append(Text("\n".join(self.combination)))
        parts.append(Text(f"value: {fmt(self.value)}", style="bold"))
        return Group(*parts)


def label(frame: pl.DataFrame, trait: Trait) -> pl.DataFrame:
    """Add ``status`` to the per-event tests of :meth:`traits.plan.Plan.explain_sql`."""
    failing = [
        pl.when(~pl.col(f"c{j}")).then(pl.lit(c.describe())) for j, c in enumerate(trait.conditions)
    ]
    why = pl.concat_str(failing, separator="; ", ignore_nulls=True) if failing else pl.lit("")
    status = (
        pl.when(~pl.col("is_event")).then(pl.lit("other event"))
        .when(pl.col("after_as_of")).then(pl.lit("after as_of"))
        .when(~pl.col("in_window")).then(pl.lit("outside window"))
        .when(~pl.col("conditions_hold")).then(pl.lit("condition false: ") + why)
    )
    if isinstance(trait, ValueTrait):
        status = (
            status.when(pl.col("kind").is_null() | (pl.col("kind") == "NULL")).then(pl.lit("missing"))
            .when(pl.col("value").is_null()).then(pl.lit("rejected"))
        )
    return frame.with_columns(status.otherwise(pl.lit("counted")).alias("status"))


def explain(frame: pl.DataFrame, trait: Trait, *, profile_id: str, as_of: datetime) -> Explanation:
    """Label the events and recompute the value from the counted ones via the trait's state."""
    events = label(frame, trait)
    counting = events.filter(pl.col("status").is_in(COUNTING)).with_columns(
        pl.lit(profile_id).alias("profile_id")
    )
    if "value" not in counting.columns:
        counting = counting.with_columns(pl.lit(None).alias("value"))
    counting = counting.select("profile_id", "timestamp", "message_id", "value")
    final = trait.finalize(trait.prepare(counting))
    value = final["value"][0] if final.height else trait.empty_value()
    if isinstance(value, pl.Series):
        value = value.to_list()
    keep = ["timestamp", "message_id", "event", "status"] + (
        ["raw", "value"] if isinstance(trait, ValueTrait) else []
    )
    return Explanation(
        profile_id=profile_id,
        trait=trait,
        as_of=as_of,
        events=events.select(keep),
        combination=tuple(trait.combine(counting)),
        value=value,
    )

"""``event_counter``: the number of counting events (reads no property)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import polars as pl

from traits.base import Trait


@dataclass(frozen=True, slots=True, kw_only=True)
class EventCounter(Trait):
    """Counts counting events; state ``n`` merges by addition."""

    type: ClassVar[str] = "event_counter"
    summary: ClassVar[str] = "number of counting events (BIGINT, 0 when none)"

    @property
    def output_sql_type(self) -> str:
        return "BIGINT"

    @property
    def output_polars_type(self) -> pl.DataType:
        return pl.Int64()

    def sql_aggregates(self, flag: str, value: str | None, *, state: bool = False) -> dict[str, str]:
        return {"n": f"count(*) FILTER (WHERE {flag})"}

    def sql_final(self, part: Callable[[str], str], *, state: bool = False) -> str:
        return f"coalesce({part('n')}, 0)"

    def sql_merge(self, suffix: str, a: str, b: str) -> str:
        return f"(coalesce({a}, 0) + coalesce({b}, 0))"

    def sql_delta(self, enter: str, leave: str) -> dict[str, str] | None:
        """A count is reversible: events leaving the window are subtracted."""
        return {"n": f"count(*) FILTER (WHERE {enter}) - count(*) FILTER (WHERE {leave})"}

    def prepare(self, events: pl.DataFrame) -> pl.DataFrame:
        return events.group_by("profile_id").agg(pl.len().cast(pl.Int64).alias("n"))

    def merge(self, a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
        return pl.concat([a, b]).group_by("profile_id").agg(pl.col("n").sum())

    def finalize(self, state: pl.DataFrame) -> pl.DataFrame:
        return state.select("profile_id", pl.col("n").alias("value"))

    def empty_value(self) -> int:
        return 0

    def combine(self, counted: pl.DataFrame) -> list[str]:
        return [f"{counted.height} counting events"]

"""``most_frequent``: the value occurring most often (at least ``min_frequency`` times)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import polars as pl

from traits.base import ValueTrait, fmt, with_values


@dataclass(frozen=True, slots=True, kw_only=True)
class MostFrequent(ValueTrait):
    """State ``{value: count}`` (a long frame) merges by adding counts; ties: the smallest value.

    Values compare as converted: text by code point (DuckDB's binary collation, Polars' byte
    order), numbers numerically.
    """

    type: ClassVar[str] = "most_frequent"
    own_keys: ClassVar[tuple[str, ...]] = ("min_frequency",)
    summary: ClassVar[str] = "the most frequent value seen at least min_frequency times (ties: smallest)"

    min_frequency: int = 2

    def sql_aggregates(self, flag: str, value: str | None, *, state: bool = False) -> dict[str, str]:
        # list + list_aggregate(histogram) is several times faster than the histogram aggregate.
        values = f"list({value}) FILTER (WHERE {flag} AND {value} IS NOT NULL)"
        if state:
            # the state is the histogram (a MAP value -> count): as many entries as distinct
            # values, not one per event, so merging and finalizing a touched profile costs
            # what its distinct values do
            return {"h": f"list_aggregate({values}, 'histogram')"}
        return {"m": self._pick(f"list_aggregate({values}, 'histogram')")}

    def sql_counted_values(self, n: str, value: str) -> dict[str, str] | None:
        # the smallest (-count, value) among values counted often enough: most frequent, then smallest
        return {"m": f"min({{'n': -{n}, 'v': {value}}}) FILTER (WHERE {n} >= {self.min_frequency})"}

    def sql_merge(self, suffix: str, a: str, b: str) -> str:
        """Histograms add per value (NULL: no events)."""
        added = (
            f"map_from_entries(list_transform(list_distinct(list_concat(map_keys({a}), map_keys({b}))), "
            f"lambda k: {{'key': k, 'value': coalesce({a}[k], 0) + coalesce({b}[k], 0)}}))"
        )
        return f"(CASE WHEN {a} IS NULL THEN {b} WHEN {b} IS NULL THEN {a} ELSE {added} END)"

    def _pick(self, histogram: str) -> str:
        """``{n: -count, v: value}`` of the winner from a histogram MAP (NULL when none)."""
        return (
            f"list_min(list_transform(list_filter(map_entries({histogram}), "
            f"lambda e: e.value >= {self.min_frequency}), "
            "lambda e: {'n': -CAST(e.value AS BIGINT), 'v': e.key}))"
        )

    def sql_final(self, part: Callable[[str], str], *, state: bool = False) -> str:
        return f"{self._pick(part('h')) if state else part('m')}.v"

    def prepare(self, events: pl.DataFrame) -> pl.DataFrame:
        return with_values(events).group_by("profile_id", "value").agg(pl.len().cast(pl.Int64).alias("count"))

    def merge(self, a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
        return pl.concat([a, b]).group_by("profile_id", "value").agg(pl.col("count").sum())

    def finalize(self, state: pl.DataFrame) -> pl.DataFrame:
        return (
            state.filter(pl.col("count") >= self.min_frequency)
            .sort(["profile_id", "count", "value"], descending=[False, True, False])
            .group_by("profile_id", maintain_order=True)
            .agg(pl.col("value").first())
        )

    def combine(self, counted: pl.DataFrame) -> list[str]:
        state = self.prepare(counted).sort(["count", "value"], descending=[True, False])
        lines = [f"{fmt(v)}: {n}" for v, n in state.select("value", "count").iter_rows()]
        lines.append(f"values seen at least {self.min_frequency} times compete; ties go to the smallest value")
        return lines or ["no counting event has a value"]

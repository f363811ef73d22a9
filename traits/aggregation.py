"""``aggregation``: sum / avg / min / max of a numeric property over the counting events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import polars as pl

from traits.base import ValueTrait, concat_sql, fmt, with_values

#: The aggregation functions and their final expression over ``(sum, n, min, max)``.
FUNCTIONS = ("sum", "avg", "min", "max")


@dataclass(frozen=True, slots=True, kw_only=True)
class Aggregation(ValueTrait):
    """A numeric reduction; state ``(sum, n, min, max)`` merges field by field.

    Sums add the values in ascending order (a sorted list per profile), so the float64 result does
    not depend on how DuckDB's threads split the rows: same inputs, byte-identical output.
    """

    type: ClassVar[str] = "aggregation"
    own_keys: ClassVar[tuple[str, ...]] = ("function",)
    summary: ClassVar[str] = "sum / avg / min / max of the numeric values (DOUBLE, null when none)"

    value_type: str = "number"
    function: str = "sum"

    @property
    def output_sql_type(self) -> str:
        return "DOUBLE"

    @property
    def output_polars_type(self) -> pl.DataType:
        return pl.Float64()

    def sql_aggregates(self, flag: str, value: str | None, *, state: bool = False) -> dict[str, str]:
        where = f"FILTER (WHERE {flag} AND {value} IS NOT NULL)"
        if self.function in ("min", "max"):
            return {"x": f"{self.function}({value}) {where}"}
        return {"l": f"list({value}) {where}"}

    def sql_merge(self, suffix: str, a: str, b: str) -> str:
        if suffix == "x":
            return f"{'least' if self.function == 'min' else 'greatest'}({a}, {b})"
        return concat_sql(a, b)

    def sql_final(self, part: Callable[[str], str], *, state: bool = False) -> str:
        if self.function in ("min", "max"):
            return part("x")
        total = f"list_sum(list_sort({part('l')}))"
        if self.function == "sum":
            return total
        return f"({total} / len({part('l')}))"

    def prepare(self, events: pl.DataFrame) -> pl.DataFrame:
        v = pl.col("value")
        return with_values(events).group_by("profile_id").agg(
            v.sum().alias("sum"), pl.len().cast(pl.Int64).alias("n"), v.min().alias("min"), v.max().alias("max")
        )

    def merge(self, a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
        return pl.concat([a, b]).group_by("profile_id").agg(
            pl.col("sum").sum(), pl.col("n").sum(), pl.col("min").min(), pl.col("max").max()
        )

    def finalize(self, state: pl.DataFrame) -> pl.DataFrame:
        expr = {
            "sum": pl.col("sum"),
            "avg": pl.col("sum") / pl.col("n"),
            "min": pl.col("min"),
            "max": pl.col("max"),
        }[self.function]
        return state.select("profile_id", expr.cast(pl.Float64).alias("value"))

    def combine(self, counted: pl.DataFrame) -> list[str]:
        values = with_values(counted)["value"]
        if values.is_empty():
            return ["no counting event has a numeric value: null"]
        total = sum(sorted(values.to_list()))
        lines = [f"{values.len()} numeric values, sum {fmt(total)}"]
        if self.function == "avg":
            lines.append(f"avg = {fmt(total)} / {values.len()} = {fmt(total / values.len())}")
        elif self.function in ("min", "max"):
            lines.append(f"{self.function} = {fmt(getattr(values, self.function)())}")
        return lines

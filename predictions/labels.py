"""Point-in-time labels: what happened in ``(cutoff, cutoff + H]``, per profile and cutoff.

Pure Polars over the event frame of :mod:`predictions.features`; only counting events strictly
after the cutoff and at most ``H`` days later are read, so a label never sees features' history and
a feature never sees a label's events.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import polars as pl

from predictions.features import DAY_US, ordered_sums

LABEL_COLUMNS = ("label_count", "label_value", "label_next_days", "label_unreadable")

_SCHEMA = {"pid": pl.Int64, "cutoff": pl.Datetime("us", "UTC"), "label_count": pl.Int64,
           "label_value": pl.Float64, "label_next_days": pl.Float64, "label_unreadable": pl.Int64}


def _unreadable(events: pl.LazyFrame) -> pl.Expr:
    """The optional ``unreadable`` flag of the event frame (absent: every amount was readable)."""
    return pl.col("unreadable") if "unreadable" in events.collect_schema() else pl.lit(False)


def build_labels(events: pl.LazyFrame | pl.DataFrame, *, cutoffs: Sequence[datetime],
                 horizon_days: int) -> pl.DataFrame:
    """``pid``, ``cutoff``, ``label_count`` (counting events in the window), ``label_value`` (sum
    of the readable ``amount``s over them, added in a canonical order: :func:`ordered_sums`),
    ``label_next_days`` (days from the cutoff to the first of them), ``label_unreadable`` (how many
    of them have an amount that is present but not a number).

    Profiles with no counting event in a window have no row; join with a left join and fill 0.
    """
    lazy = events.lazy()
    if not cutoffs:
        return pl.DataFrame(schema=_SCHEMA)
    h = timedelta(days=horizon_days)
    counting = lazy.filter(pl.col("counting") & (pl.col("ts") > min(cutoffs)) & (pl.col("ts") <= max(cutoffs) + h))
    plans, values = [], []
    valued = counting.filter(pl.col("amount").is_not_null()).select("pid", "ts", "amount").collect()
    for c in cutoffs:
        start = pl.lit(c, dtype=pl.Datetime("us", "UTC"))
        in_window = (pl.col("ts") > c) & (pl.col("ts") <= c + h)
        plans.append(
            counting.filter(in_window)
            .group_by("pid")
            .agg(
                pl.len().cast(pl.Int64).alias("label_count"),
                ((pl.col("ts").min() - start).dt.total_microseconds() / DAY_US).alias("label_next_days"),
                _unreadable(lazy).sum().cast(pl.Int64).alias("label_unreadable"),
            )
            .with_columns(start.alias("cutoff"))
        )
        values.append(ordered_sums(valued.filter(in_window)).select(
            "pid", start.alias("cutoff"), pl.col("total").alias("label_value")))
    return (
        pl.concat(plans).collect()
        .join(pl.concat(values), on=["pid", "cutoff"], how="left")
        .with_columns(pl.col("label_value").fill_null(0.0))
        .select("pid", "cutoff", *LABEL_COLUMNS)
        .sort("cutoff", "pid")
    )


def attach_labels(features: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Features with their labels; profiles without counting events in the window get 0 / 0 / null / 0."""
    return features.join(labels, on=["pid", "cutoff"], how="left", maintain_order="left").with_columns(
        pl.col("label_count").fill_null(0),
        pl.col("label_value").fill_null(0.0),
        pl.col("label_unreadable").fill_null(0),
    )

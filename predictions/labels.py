"""Point-in-time labels: what happened in ``(cutoff, cutoff + H]``, per profile and cutoff.

Pure Polars over the event frame of :mod:`predictions.features`; only counting events strictly
after the cutoff and at most ``H`` days later are read, so a label never sees features' history and
a feature never sees a label's events.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import polars as pl

from predictions.features import DAY_US

LABEL_COLUMNS = ("label_count", "label_value", "label_next_days")


def build_labels(events: pl.LazyFrame | pl.DataFrame, *, cutoffs: Sequence[datetime],
                 horizon_days: int) -> pl.DataFrame:
    """``pid``, ``cutoff``, ``label_count`` (counting events in the window), ``label_value`` (sum
    of ``amount`` over them), ``label_next_days`` (days from the cutoff to the first of them).

    Profiles with no counting event in a window have no row; join with a left join and fill 0.
    """
    lazy = events.lazy()
    plans = []
    for c in cutoffs:
        end = c + timedelta(days=horizon_days)
        start = pl.lit(c, dtype=pl.Datetime("us", "UTC"))
        plans.append(
            lazy.filter(pl.col("counting") & (pl.col("ts") > c) & (pl.col("ts") <= end))
            .group_by("pid")
            .agg(
                pl.len().cast(pl.Int64).alias("label_count"),
                pl.col("amount").sum().alias("label_value"),
                ((pl.col("ts").min() - start).dt.total_microseconds() / DAY_US).alias("label_next_days"),
            )
            .with_columns(start.alias("cutoff"))
        )
    if not plans:
        return pl.DataFrame(schema={"pid": pl.Int64, "cutoff": pl.Datetime("us", "UTC"),
                                    "label_count": pl.Int64, "label_value": pl.Float64,
                                    "label_next_days": pl.Float64})
    return pl.concat(plans).collect().select("pid", "cutoff", *LABEL_COLUMNS).sort("cutoff", "pid")


def attach_labels(features: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Features with their labels; profiles without counting events in the window get 0 / 0 / null."""
    return features.join(labels, on=["pid", "cutoff"], how="left").with_columns(
        pl.col("label_count").fill_null(0),
        pl.col("label_value").fill_null(0.0),
    )

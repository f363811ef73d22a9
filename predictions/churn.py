"""Churn: P(no counting event in ``(as_of, as_of + H]``) for recently active profiles (Unify's rule)."""

from __future__ import annotations

import polars as pl

from predictions.classify import btyd, gbt, recency, recency_baseline, survival
from predictions.pipeline import Task

TASK = Task(
    type="churn",
    kind="classification",
    positive="churned profiles (no counting event in the window)",
    negative="retained profiles (a counting event in the window)",
    eligible=lambda pred: pl.col(f"target_count_{pred.horizon_days}d") >= 1,
    label=lambda pred: (pl.col("label_count") == 0).cast(pl.Int64).alias("label"),
    candidates=(btyd(event_is_positive=False), gbt(positive="churn"), recency(),
                survival(event_is_positive=False)),
    baseline=recency_baseline(),
    ineligible="no counting event in the {h} days before as_of (only active profiles can churn)",
)

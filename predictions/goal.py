"""Custom goals: P(a counting event in ``(as_of, as_of + H]``) for every profile with an event."""

from __future__ import annotations

import polars as pl

from predictions.classify import btyd, gbt, recency, recency_baseline, survival
from predictions.pipeline import Task

TASK = Task(
    type="goal",
    kind="classification",
    positive="profiles reaching the goal (a counting event in the window)",
    negative="profiles not reaching it",
    eligible=lambda pred: pl.col("events_count_all") >= 1,
    label=lambda pred: (pl.col("label_count") > 0).cast(pl.Int64).alias("label"),
    candidates=(btyd(event_is_positive=True), gbt(positive="goal"), recency(),
                survival(event_is_positive=True)),
    baseline=recency_baseline(),
    ineligible="no event up to as_of",
)

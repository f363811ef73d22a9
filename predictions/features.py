"""Point-in-time features: one row per (profile, cutoff) from events with ``timestamp <= cutoff`` only.

Pure Polars over a slim event frame the engine loads once (:data:`EVENT_SCHEMA`); nothing here
reads the store. Every cutoff is one lazy group-by over all profiles, and the cutoffs run as one
concatenated plan. The first thing each plan does is drop the events after its cutoff, so an event
after a cutoff cannot reach a feature of that cutoff (``tests/predictions/test_leakage.py``).

Feature names are deterministic: ``events_count_<window>``, ``ev_<event>_count_<30d|all>``,
``<event>_recency_days``, ``target_count_<window>``, ``target_recency_days``, ``tenure_days``,
``rfm_*`` ...; ``<window>`` is ``7d``, ``30d``, ``90d``, the horizon (e.g. ``120d``) or ``all``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import polars as pl

#: The columns of the event frame every function here takes.
EVENT_SCHEMA: dict[str, pl.DataType] = {
    "pid": pl.Int64(),  # profile index
    "ts": pl.Datetime("us", "UTC"),
    "ev": pl.Int32(),  # event-name code (null: no name, e.g. identify)
    "counting": pl.Boolean(),  # the prediction's counting event (event + conditions)
    "amount": pl.Float64(),  # the ltv property as a number (null: no value)
    "unreadable": pl.Boolean(),  # the ltv property is present but not a number (optional column)
}

DAY_US = 86_400_000_000
BASE_WINDOWS: tuple[int, ...] = (7, 30, 90)
#: Windows of the per-event-name counts (fewer: there are many names, and trees pay per column).
EVENT_WINDOWS: tuple[int | None, ...] = (30, None)


def slug(name: str) -> str:
    """A column-safe name for an event: lower case, runs of other characters become ``_``."""
    s = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return s if s and not s[0].isdigit() else f"e_{s}"


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureSpec:
    """Which features to build.

    Parameters
    ----------
    vocabulary
        ``(code, event name)`` of the events that get their own count/recency columns, chosen
        from history before the earliest cutoff (see :func:`choose_vocabulary`).
    horizon_days
        Added as a window, and the churn eligibility window.
    with_rfm
        Add frequency / recency / age / monetary of counting events (ltv).
    """

    vocabulary: tuple[tuple[int, str], ...] = ()
    horizon_days: int = 30
    with_rfm: bool = False
    windows: tuple[int, ...] = field(default=BASE_WINDOWS)

    @property
    def all_windows(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.windows) | {self.horizon_days}))

    def column_names(self) -> dict[int, str]:
        """Event code -> unique slug (a suffix resolves collisions deterministically)."""
        out: dict[int, str] = {}
        used: set[str] = set()
        for code, name in self.vocabulary:
            base = s = "ev_" + slug(name)
            i = 2
            while s in used:
                s, i = f"{base}_{i}", i + 1
            used.add(s)
            out[code] = s
        return out


def choose_vocabulary(events: pl.LazyFrame | pl.DataFrame, names: dict[int, str], *, before: datetime,
                      k: int = 10) -> tuple[tuple[int, str], ...]:
    """The ``k`` most frequent event names among events up to ``before`` (ties: by name).

    Chosen from the history before the earliest training cutoff so that later events cannot change
    which columns a training row has.
    """
    top = (
        events.lazy()
        .filter((pl.col("ts") <= before) & pl.col("ev").is_not_null())
        .group_by("ev")
        .agg(pl.len().alias("n"))
        .collect()
    )
    rows = sorted(((n, names[int(code)]) for code, n in top.iter_rows()), key=lambda r: (-r[0], r[1]))
    by_name = {v: c for c, v in names.items()}
    return tuple((by_name[name], name) for _, name in rows[:k])


def _age_us(cutoff: datetime) -> pl.Expr:
    """Microseconds from an event to the cutoff (>= 0 for kept events): integers aggregate exactly,
    so a row does not depend on which other rows share its plan; days are derived after."""
    return (pl.lit(cutoff, dtype=pl.Datetime("us", "UTC")) - pl.col("ts")).dt.total_microseconds()


def _to_days(columns: list[str]) -> list[pl.Expr]:
    return [(pl.col(c).cast(pl.Float64) / DAY_US).alias(c) for c in columns]


#: Aggregated as integer microseconds, then converted to days.
DURATION_COLUMNS = ["tenure_days", "recency_days", "target_recency_days", "target_tenure_days",
                    "target_gap_max_days", "target_gap_last_days"]


def _window_name(w: int | None) -> str:
    return "all" if w is None else f"{w}d"


def _features_at(events: pl.LazyFrame, cutoff: datetime, spec: FeatureSpec) -> pl.LazyFrame:
    windows: list[int | None] = [*spec.all_windows, None]
    e = events.filter(pl.col("ts") <= cutoff).with_columns(_age_us(cutoff).alias("_d"))
    d = pl.col("_d")
    target = pl.col("counting")

    def in_window(w: int | None) -> pl.Expr:
        return d.is_not_null() if w is None else d < w * DAY_US

    aggs: list[pl.Expr] = [
        d.max().alias("tenure_days"),
        d.min().alias("recency_days"),
    ]
    for w in windows:
        aggs.append(in_window(w).sum().cast(pl.Int64).alias(f"events_count_{_window_name(w)}"))
        aggs.append((target & in_window(w)).sum().cast(pl.Int64).alias(f"target_count_{_window_name(w)}"))
    aggs.append(d.filter(target).min().alias("target_recency_days"))
    aggs.append(d.filter(target).max().alias("target_tenure_days"))
    for code, col in spec.column_names().items():
        is_ev = pl.col("ev") == code
        for w in EVENT_WINDOWS:
            aggs.append((is_ev & in_window(w)).sum().cast(pl.Int64).alias(f"{col}_count_{_window_name(w)}"))
        aggs.append(d.filter(is_ev).min().alias(f"{col}_recency_days"))
    gaps = (
        e.filter(target)
        .sort("pid", "ts")
        .with_columns(pl.col("ts").diff().over("pid").dt.total_microseconds().alias("_gap"))
        .group_by("pid")
        .agg(pl.col("_gap").max().alias("target_gap_max_days"), pl.col("_gap").last().alias("target_gap_last_days"))
    )
    out = (
        e.group_by("pid")
        .agg(aggs)
        .join(gaps, on="pid", how="left")
        .with_columns(_to_days(DURATION_COLUMNS + [f"{c}_recency_days" for c in spec.column_names().values()]))
        .with_columns(
            pl.when(pl.col("events_count_all") > 1)
            .then((pl.col("tenure_days") - pl.col("recency_days")) / (pl.col("events_count_all") - 1))
            .alias("gap_mean_days"),
            pl.when(pl.col("target_count_all") > 1)
            .then((pl.col("target_tenure_days") - pl.col("target_recency_days")) / (pl.col("target_count_all") - 1))
            .alias("target_gap_mean_days"),
        )
    )
    if spec.with_rfm:
        out = out.with_columns(
            (pl.col("target_count_all") - 1).clip(lower_bound=0).alias("rfm_frequency"),
            (pl.col("target_tenure_days") - pl.col("target_recency_days")).alias("rfm_recency_days"),
            pl.col("target_tenure_days").alias("rfm_age_days"),
        )
    return out.with_columns(pl.lit(cutoff, dtype=pl.Datetime("us", "UTC")).alias("cutoff"))


def build_features(events: pl.LazyFrame | pl.DataFrame, *, cutoffs: Sequence[datetime],
                   spec: FeatureSpec) -> pl.DataFrame:
    """Features of every profile with an event up to each cutoff: columns ``pid``, ``cutoff``, features.

    Rows are sorted by (cutoff, pid) and columns by name after the keys, so the result is a
    deterministic function of the events up to each cutoff.
    """
    lazy = events.lazy()
    plans = [_features_at(lazy, c, spec) for c in cutoffs]
    frame = pl.concat(plans, how="vertical").collect() if plans else pl.DataFrame()
    if frame.is_empty() and not plans:
        return frame
    if spec.with_rfm:
        frame = _with_monetary(frame, lazy, cutoffs)
    keys = ["pid", "cutoff"]
    return frame.select(keys + sorted(c for c in frame.columns if c not in keys)).sort("cutoff", "pid")


def ordered_sums(values: pl.DataFrame, *, key: str = "pid", value: str = "amount") -> pl.DataFrame:
    """Per ``key``: the number (``n``) and the sum (``total``) of the non-null ``value``s.

    A float sum depends on the order of its terms, and nothing upstream fixes one: DuckDB's parallel
    join returns rows in any order, and Polars' streaming group-by combines partial sums in any order
    even for the same input. Here the terms are sorted by (key, value) and added in one numpy pass,
    so the sums are a function of the multiset of values alone (bit for bit).
    """
    kept = values.filter(pl.col(value).is_not_null())
    k, v = kept[key].to_numpy(), kept[value].cast(pl.Float64).to_numpy()
    if not len(v):
        return pl.DataFrame(schema={key: values.schema[key], "n": pl.Int64, "total": pl.Float64})
    order = np.lexsort((v, k))
    k, v = k[order], v[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    return pl.DataFrame({
        key: pl.Series(k[starts], dtype=values.schema[key]),
        "n": np.diff(np.r_[starts, len(v)]).astype(np.int64),
        "total": np.add.reduceat(v, starts),
    })


def _with_monetary(frame: pl.DataFrame, events: pl.LazyFrame, cutoffs: Sequence[datetime]) -> pl.DataFrame:
    """``rfm_monetary_count`` / ``_sum`` / ``_mean`` over the counting events with a readable amount
    (:func:`ordered_sums`; a purchase with no readable amount counts for frequency, not for value)."""
    valued = events.filter(pl.col("counting") & pl.col("amount").is_not_null()).select("pid", "ts", "amount").collect()
    per_cutoff = [
        ordered_sums(valued.filter(pl.col("ts") <= c)).with_columns(pl.lit(c, dtype=pl.Datetime("us", "UTC")).alias("cutoff"))
        for c in cutoffs
    ]
    money = pl.concat(per_cutoff).select(
        "pid", "cutoff",
        pl.col("n").alias("rfm_monetary_count"),
        pl.col("total").alias("rfm_monetary_sum"),
        (pl.col("total") / pl.col("n")).alias("rfm_monetary_mean"),
    )
    return frame.join(money, on=["pid", "cutoff"], how="left", maintain_order="left").with_columns(
        pl.col("rfm_monetary_count").fill_null(0), pl.col("rfm_monetary_sum").fill_null(0.0))


def feature_columns(frame: pl.DataFrame) -> list[str]:
    """The model inputs of a feature frame (everything but the keys and labels)."""
    return [c for c in frame.columns if c not in ("pid", "cutoff") and not c.startswith("label_")]

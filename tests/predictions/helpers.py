"""Synthetic stores and event frames for the prediction tests (hand-made: no generator needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from engine.store import Store

AS_OF = datetime(2025, 1, 1, tzinfo=UTC)


def poisson_events(rates: np.ndarray, *, start: datetime, days: float, seed: int = 0,
                   event: str = "Flex - Engagement Initiated") -> pl.DataFrame:
    """Events of a constant-rate Poisson process per profile: pid, ts, event (vectorised)."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rates * days)
    pid = np.repeat(np.arange(len(rates)), counts)
    offsets_us = (rng.random(counts.sum()) * days * 86_400e6).astype(np.int64)
    ts = np.datetime64(start.replace(tzinfo=None), "us") + offsets_us.astype("timedelta64[us]")
    return pl.DataFrame({"pid": pid, "ts": ts, "event": [event] * len(pid)}).with_columns(
        pl.col("ts").dt.replace_time_zone("UTC")
    )


def to_event_frame(events: pl.DataFrame, *, counting_event: str, codes: dict[str, int] | None = None,
                   amount: str | None = None) -> pl.DataFrame:
    """The slim frame of ``predictions.features`` from pid / ts / event (/ amount) columns."""
    codes = codes or {e: i for i, e in enumerate(sorted(events["event"].unique().to_list()))}
    return events.select(
        pl.col("pid").cast(pl.Int64),
        pl.col("ts").dt.cast_time_unit("us"),
        pl.col("event").replace_strict(codes, default=None, return_dtype=pl.Int32).alias("ev"),
        (pl.col("event") == counting_event).alias("counting"),
        (pl.col(amount).cast(pl.Float64) if amount else pl.lit(None, dtype=pl.Float64)).alias("amount"),
    )


def make_store(events: pl.DataFrame, *, properties: list[dict] | None = None) -> Store:
    """An in-memory store with these events resolved to profiles ``p<pid>`` (one per pid)."""
    store = Store.open(None)
    n = events.height
    props = [json.dumps(p) for p in properties] if properties is not None else ["{}"] * n
    frame = events.with_columns(
        pl.format("m{}", pl.int_range(n)).alias("message_id"),
        pl.format("p{}", pl.col("pid")).alias("profile_id"),
        pl.Series("properties", props),
    )
    store.con.register("_src", frame.to_arrow())
    store.con.execute(
        "INSERT INTO events (message_id, type, event, timestamp, user_id, properties, raw, payload_hash, ingest_id) "
        "SELECT message_id, 'track', event, ts, profile_id, properties::JSON, '{}'::JSON, message_id, 1 FROM _src"
    )
    store.con.execute("INSERT INTO event_profiles SELECT message_id, profile_id FROM _src")
    store.con.execute(
        "INSERT INTO profiles SELECT profile_id, min(message_id), min(ts) FROM _src GROUP BY profile_id"
    )
    store.con.unregister("_src")
    return store


def churn_world(n_profiles: int = 3000, *, seed: int = 0, days: int = 365):
    """Profiles with constant rates lambda ~ Gamma(1, 0.06/day): P(no event in H) = exp(-lambda H)."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(1.0, 0.06, n_profiles)
    events = poisson_events(rates, start=AS_OF - timedelta(days=days), days=days, seed=seed + 1)
    return rates, events

"""Computed-trait speed and memory: the one-pass plan vs hand-written SQL, Polars and pandas.

The events come from :mod:`benchmarks.generate`, ingested and resolved once into
``benchmarks/cache/traits-<N>.duckdb`` (with the property columns the traits read already
registered, as after a first ``profiles compute``). Each contender runs in a fresh subprocess, so
its peak RSS is its own, and computes the same 8 traits (the six Flex traits of the starter
project, a 30-day windowed counter and a unique_list_count) for every profile:

What each contender reads (the store is prepared by one untimed ``compute_traits``, so it holds
``trait_events``, the profile-keyed copy of the traits' events that compute keeps current):

* ``engine``: :func:`engine.compute.trait_frame`'s SQL materialised in the store (values only),
  reading ``trait_events`` (profile-keyed, no join), as ``trait_frame`` does when it is current;
* ``engine_join``: the same plan over ``events`` joined to ``event_profiles`` (what the engine
  reads without ``trait_events``);
* ``engine_compute``: the whole :func:`engine.compute.compute_traits` (rebuilds ``trait_events``
  from the join, values, diagnostics, writes);
* ``sql_keyed``: hand-written DuckDB SQL over ``trait_events`` (the floor for ``engine``);
* ``sql_typed``: hand-written DuckDB SQL over ``events`` joined to ``event_profiles``, typed
  property columns (the floor for ``engine_join``);
* ``sql_json``: hand-written DuckDB SQL reading the ``properties`` JSON, as a user would;
* ``polars`` / ``pandas``: the same traits over the resolved events exported once to Parquet
  already joined to profiles, flat typed columns (like ``trait_events``; time includes reading);
* ``polars_join`` / ``pandas_join``: from the store's inputs exported to Parquet: the typed event
  columns and the event-to-profile map, joined by the contender (like ``engine_join``);
* ``engine_100``: 100 traits in one pass, against ``engine`` (8 traits).

Goals: ``engine`` within 1.25x of hand-written SQL over the same input, faster than Polars and
pandas over the same input; 100 traits under 5x the time of 8.

    python -m benchmarks.bench_traits --events 1000000 --json benchmarks/results/traits-1m.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.machine import machine, peak_rss_mib, publish, run_worker

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(__file__).parent / "cache"
INIT = "Flex - Engagement Initiated"
DONE = "Flex - Engagement Completed"
WORKERS = ("engine", "engine_join", "engine_compute", "sql_keyed", "sql_typed", "sql_json", "polars", "pandas",
           "polars_join", "pandas_join", "engine_100")


def as_of() -> datetime:
    try:
        from benchmarks.generate import end_of_data
    except ImportError:
        return datetime(2026, 1, 1, tzinfo=UTC)
    return end_of_data()


# -- the trait sets ---------------------------------------------------------------------------
def eight_traits() -> list[dict[str, Any]]:
    """The starter project's six Flex traits, a windowed counter and a unique_list_count."""
    data = tomllib.loads((ROOT / "data" / "profiles.toml").read_text(encoding="utf-8"))
    six = [t for t in data["traits"]][:6]
    inbound = [{"property": "direction", "operator": "equals", "value": "Inbound"}]
    return six + [
        {"name": "inbounds_last_30_days", "type": "event_counter", "event": INIT,
         "conditions": inbound, "window": {"within_days": 30}},
        {"name": "channels_used", "type": "unique_list_count", "event": INIT, "property": "channelType"},
    ]


def hundred_traits() -> list[dict[str, Any]]:
    """100 varied definitions over the same events (counters, windows, conditions, all types)."""
    out = eight_traits()
    windows = [None, {"within_days": 7}, {"within_days": 30}, {"within_days": 90},
               {"between_days_ago": [30, 90]}, {"within_hours": 48}]
    conds = [[], [{"property": "direction", "operator": "equals", "value": "Inbound"}],
             [{"property": "channelType", "operator": "equals_one_of", "value": ["voice", "chat"]}],
             [{"property": "direction", "operator": "equals", "value": "Outbound"}]]
    templates = [
        lambda: {"type": "event_counter", "event": INIT},
        lambda: {"type": "event_counter", "event": DONE},
        lambda: {"type": "last", "event": DONE, "property": "sentiment"},
        lambda: {"type": "most_frequent", "event": INIT, "property": "channelType", "min_frequency": 1},
        lambda: {"type": "aggregation", "function": "max", "event": DONE, "property": "duration"},
        lambda: {"type": "first", "event": INIT, "property": "lastKnownAgentWorkerSid"},
        lambda: {"type": "unique_list_count", "event": INIT, "property": "lastKnownAgentWorkerSid"},
        lambda: {"type": "aggregation", "function": "avg", "event": DONE, "property": "duration"},
    ]
    i = 0
    while len(out) < 100:
        d = templates[i % len(templates)]()
        d["name"] = f"t{i:03d}"
        w = windows[(i // len(templates)) % len(windows)]
        c = conds[(i // 3) % len(conds)]
        if w:
            d["window"] = w
        if c:
            d["conditions"] = c
        out.append(d)
        i += 1
    return out


def parsed(defs: list[dict[str, Any]]):
    from traits.registry import parse_traits

    return parse_traits(defs, path="bench")


# -- preparation ------------------------------------------------------------------------------
def prepare(n_events: int) -> tuple[Path, Path]:
    """The resolved store (property columns registered, ``trait_events`` built by one untimed
    compute of the 100 traits) and the Parquet inputs of the frames: the flat pre-joined file,
    and next to it the store's typed event columns and its event map (``*-events`` / ``*-map``)."""
    from engine.compute import _events_current, _prepare, compute_traits
    from traits.plan import Plan
    from engine.identity.resolve import resolve
    from engine.identity.rules import parse_identity
    from engine.progress import Progress
    from engine.store import Store

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"traits-{n_events}.duckdb"
    flat = CACHE / f"traits-{n_events}.parquet"
    if not path.exists():
        from benchmarks.bench_identity import prepare as ingested
        from benchmarks.datasets import consume_at_big

        tmp = path.with_suffix(".tmp.duckdb")
        consume_at_big(ingested(n_events), tmp, n_events)  # a copy, or at 50M the store itself
        with Store.open(tmp) as store:
            if store.get_meta("identity_state") is None:
                resolve(store, parse_identity(None))
            _prepare(store, parsed(hundred_traits()), Progress())
            store.con.execute("CHECKPOINT")
        tmp.rename(path)
        flat.unlink(missing_ok=True)
    with Store.open(path) as store:
        if not _events_current(store, Plan.build(parsed(hundred_traits()), as_of=as_of())):
            compute_traits(store, parsed(hundred_traits()), as_of=as_of(), full=True)
            store.con.execute("CHECKPOINT")
    events, emap = _join_inputs(flat)
    if not events.exists() or not emap.exists():
        with Store.open(path) as store:
            store.con.execute(f"""COPY (
                SELECT e.message_id, e.event, e.timestamp,
                       {_typed_select()}
                FROM events e WHERE e.type IN ('track', 'page', 'screen')
            ) TO '{events}' (FORMAT parquet)""")
            store.con.execute(f"COPY event_profiles TO '{emap}' (FORMAT parquet)")
    if not flat.exists():
        with Store.open(path) as store:
            store.con.execute(f"""COPY (
                SELECT ep.profile_id, e.event, e.timestamp, e.message_id,
                       {_typed_select()}
                FROM events e JOIN event_profiles ep ON ep.message_id = e.message_id
                WHERE e.event IN ('{INIT}', '{DONE}')
            ) TO '{flat}' (FORMAT parquet)""")
    return path, flat


#: The typed event columns the baselines read: alias -> (conversion prefix, property path).
TYPED = {"direction": ("txt", "direction"), "channel": ("txt", "channelType"),
         "agent": ("txt", "lastKnownAgentWorkerSid"), "duration": ("num", "duration"),
         "sentiment": ("txt", "sentiment")}


def _typed(prefix: str, path: str) -> str:
    """The store's derived column for ``path`` (its name is the engine's: ``traits.values.column_name``)."""
    from traits.values import column_name

    return '"' + column_name(prefix, path) + '"'


def _typed_select() -> str:
    return ", ".join(f"e.{_typed(*need)} AS {alias}" for alias, need in TYPED.items())


def _join_inputs(flat: Path) -> tuple[Path, Path]:
    return flat.with_name(flat.stem + "-events.parquet"), flat.with_name(flat.stem + "-map.parquet")


# -- hand-written SQL -------------------------------------------------------------------------
def hand_sql(*, typed: bool, at: datetime, keyed: bool = False) -> str:
    """The 8 traits as a person would write them in DuckDB SQL (``keyed``: over ``trait_events``)."""
    if typed:
        cols = {alias: _typed(*need) for alias, need in TYPED.items()}
    else:
        cols = {"direction": "properties->>'direction'", "channel": "properties->>'channelType'",
                "agent": "properties->>'lastKnownAgentWorkerSid'",
                "duration": "TRY_CAST(trim(properties->>'duration') AS DOUBLE)",
                "sentiment": "properties->>'sentiment'"}
    ts = f"TIMESTAMPTZ '{at.isoformat()}'"
    since = f"TIMESTAMPTZ '{(at - timedelta(days=30)).isoformat()}'"
    return f"""
    WITH ev AS (
        SELECT {"e" if keyed else "ep"}.profile_id, e.event, e.timestamp, e.message_id,
               {cols['direction']} AS direction, {cols['channel']} AS channel, {cols['agent']} AS agent,
               {cols['duration']} AS duration, {cols['sentiment']} AS sentiment
        FROM {"trait_events e" if keyed else
              "events e JOIN event_profiles ep ON ep.message_id = e.message_id"}
        WHERE e.event IN ('{INIT}', '{DONE}') AND e.timestamp <= {ts}{" AND e.profile_id IS NOT NULL" if keyed else ""}
    ),
    agg AS (
        SELECT profile_id,
            count(*) FILTER (WHERE event = '{INIT}' AND direction = 'Inbound') AS total_inbounds,
            count(*) FILTER (WHERE event = '{INIT}' AND direction = 'Outbound') AS total_outbounds,
            arg_max(agent, timestamp) FILTER (WHERE event = '{INIT}' AND agent IS NOT NULL) AS last_known_agent,
            arg_max(duration, timestamp) FILTER (WHERE event = '{DONE}' AND duration IS NOT NULL) AS last_interaction_duration,
            arg_max(sentiment, timestamp) FILTER (WHERE event = '{DONE}' AND sentiment IS NOT NULL) AS last_sentiment,
            count(*) FILTER (WHERE event = '{INIT}' AND direction = 'Inbound' AND timestamp > {since}) AS inbounds_last_30_days,
            count(DISTINCT channel) FILTER (WHERE event = '{INIT}') AS channels_used
        FROM ev GROUP BY profile_id
    ),
    freq AS (
        SELECT profile_id, channel AS frequent_inbound_channel FROM (
            SELECT profile_id, channel, count(*) AS n FROM ev
            WHERE event = '{INIT}' AND direction = 'Inbound' AND channel IS NOT NULL
            GROUP BY profile_id, channel
        ) WHERE n >= 2
        QUALIFY row_number() OVER (PARTITION BY profile_id ORDER BY n DESC, channel) = 1
    )
    SELECT p.profile_id, coalesce(a.total_inbounds, 0) AS total_inbounds, f.frequent_inbound_channel,
           coalesce(a.total_outbounds, 0) AS total_outbounds, a.last_known_agent,
           a.last_interaction_duration, a.last_sentiment,
           coalesce(a.inbounds_last_30_days, 0) AS inbounds_last_30_days,
           coalesce(a.channels_used, 0) AS channels_used
    FROM profiles p LEFT JOIN agg a ON a.profile_id = p.profile_id
    LEFT JOIN freq f ON f.profile_id = p.profile_id
    ORDER BY p.profile_id"""


# -- workers (each in its own process) --------------------------------------------------------
def _timed_sql(store_path: Path, sql: str) -> dict[str, Any]:
    from engine.store import Store

    with Store.open(store_path) as store:
        started, cpu = time.perf_counter(), time.process_time()
        store.con.execute(f"CREATE OR REPLACE TEMP TABLE _bench_out AS {sql}")
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        rows = store.con.execute("SELECT count(*) FROM _bench_out").fetchall()[0][0]
        digest = _digest(store.con)
    return {"seconds": seconds, "cpu_seconds": cpu, "profiles": rows, "peak_rss_mib": peak_rss_mib(), "digest": digest}


def _digest(con) -> dict[str, Any]:
    """Summary numbers to check contenders agree (non-null counts and sums)."""
    row = con.execute(
        "SELECT sum(total_inbounds), count(frequent_inbound_channel), sum(total_outbounds), "
        "count(last_known_agent), round(sum(last_interaction_duration), 3), count(last_sentiment), "
        "sum(inbounds_last_30_days), sum(channels_used) FROM _bench_out"
    ).fetchall()[0]
    return {k: (float(v) if v is not None else None) for k, v in zip(
        ("total_inbounds", "frequent_inbound_channel", "total_outbounds", "last_known_agent",
         "last_interaction_duration", "last_sentiment", "inbounds_last_30_days", "channels_used"), row,
        strict=True)}


def work_engine(store_path: Path, n_traits: int, *, keyed: bool = True) -> dict[str, Any]:
    """``trait_frame``'s plan: from ``trait_events`` (as when it is current) or from the join."""
    from traits.plan import Plan

    defs = eight_traits() if n_traits == 8 else hundred_traits()
    plan = Plan.build(parsed(defs), as_of=as_of())
    out = _timed_sql(store_path, plan.frame_sql(keyed="trait_events" if keyed else None, seq="seq"))
    out["traits"] = len(defs)
    if n_traits != 8:
        out.pop("digest")
    return out


def work_engine_compute(store_path: Path) -> dict[str, Any]:
    from engine.compute import compute_traits
    from engine.store import Store

    with Store.open(store_path) as store:
        started, cpu = time.perf_counter(), time.process_time()
        report = compute_traits(store, parsed(eight_traits()), as_of=as_of(), full=True)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "profiles": report.profiles, "peak_rss_mib": peak_rss_mib()}


def work_sql(store_path: Path, typed: bool, keyed: bool = False) -> dict[str, Any]:
    return _timed_sql(store_path, hand_sql(typed=typed, at=as_of(), keyed=keyed))


def _frame_digest(frame) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    con.register("_f", frame)
    con.execute("CREATE TABLE _bench_out AS SELECT * FROM _f")
    return _digest(con)


def _last(col: str, mask, name: str):
    import polars as pl

    m = mask & pl.col(col).is_not_null()
    return pl.col(col).filter(m).sort_by(pl.col("timestamp").filter(m)).last().alias(name)


def work_polars(flat: Path, *, join: bool = False) -> dict[str, Any]:
    import polars as pl

    at = as_of()
    started, cpu = time.perf_counter(), time.process_time()
    if join:
        events, emap = _join_inputs(flat)
        ev = (
            pl.scan_parquet(events).filter(pl.col("event").is_in([INIT, DONE]) & (pl.col("timestamp") <= at))
            .join(pl.scan_parquet(emap), on="message_id", how="inner")
        )
    else:
        ev = pl.scan_parquet(flat).filter(pl.col("timestamp") <= at)
    init, done = pl.col("event") == INIT, pl.col("event") == DONE
    inbound = init & (pl.col("direction") == "Inbound")
    agg = ev.group_by("profile_id").agg(
        inbound.sum().alias("total_inbounds"),
        (init & (pl.col("direction") == "Outbound")).sum().alias("total_outbounds"),
        _last("agent", init, "last_known_agent"),
        _last("duration", done, "last_interaction_duration"),
        _last("sentiment", done, "last_sentiment"),
        (inbound & (pl.col("timestamp") > at - timedelta(days=30))).sum().alias("inbounds_last_30_days"),
        pl.col("channel").filter(init & pl.col("channel").is_not_null()).n_unique().alias("channels_used"),
    )
    freq = (
        ev.filter(inbound & pl.col("channel").is_not_null())
        .group_by("profile_id", "channel").agg(pl.len().alias("n"))
        .filter(pl.col("n") >= 2)
        .sort(["profile_id", "n", "channel"], descending=[False, True, False])
        .group_by("profile_id").agg(pl.col("channel").first().alias("frequent_inbound_channel"))
    )
    profiles = ev.select("profile_id").unique()
    out = (
        profiles.join(agg, on="profile_id", how="left").join(freq, on="profile_id", how="left")
        .sort("profile_id").collect()
    )
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "profiles": out.height, "peak_rss_mib": peak_rss_mib(),
            "digest": _frame_digest(out.to_arrow())}


def work_pandas(flat: Path, *, join: bool = False) -> dict[str, Any]:
    import pandas as pd

    at = pd.Timestamp(as_of())
    started, cpu = time.perf_counter(), time.process_time()
    if join:
        events, emap = _join_inputs(flat)
        ev = pd.read_parquet(events, filters=[("event", "in", [INIT, DONE])])
        ev = ev.merge(pd.read_parquet(emap), on="message_id", how="inner")
    else:
        ev = pd.read_parquet(flat)
    ev = ev[ev["timestamp"] <= at]
    init, done = ev["event"] == INIT, ev["event"] == DONE
    inbound = init & (ev["direction"] == "Inbound")
    ev = ev.assign(
        inb=inbound, outb=init & (ev["direction"] == "Outbound"),
        inb30=inbound & (ev["timestamp"] > at - pd.Timedelta(days=30)),
    )
    out = ev.groupby("profile_id")[["inb", "outb", "inb30"]].sum()
    out.columns = ["total_inbounds", "total_outbounds", "inbounds_last_30_days"]
    srt = ev.sort_values("timestamp")
    for col, mask, name in (("agent", init, "last_known_agent"), ("duration", done, "last_interaction_duration"),
                            ("sentiment", done, "last_sentiment")):
        sub = srt[mask.loc[srt.index] & srt[col].notna()]
        out[name] = sub.groupby("profile_id")[col].last()
    out["channels_used"] = ev[init].groupby("profile_id")["channel"].nunique()
    counts = ev[inbound & ev["channel"].notna()].groupby(["profile_id", "channel"]).size().rename("n").reset_index()
    counts = counts[counts["n"] >= 2].sort_values(["profile_id", "n", "channel"], ascending=[True, False, True])
    out["frequent_inbound_channel"] = counts.drop_duplicates("profile_id").set_index("profile_id")["channel"]
    out = out.sort_index().reset_index()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    import pyarrow as pa

    return {"seconds": seconds, "cpu_seconds": cpu, "profiles": len(out), "peak_rss_mib": peak_rss_mib(),
            "digest": _frame_digest(pa.Table.from_pandas(out))}


def _run_worker(name: str, store_path: Path, flat: Path) -> dict[str, Any]:
    """One contender in a fresh process (:func:`benchmarks.machine.run_worker`)."""
    cmd = [sys.executable, "-m", "benchmarks.bench_traits", "--worker", name, "--store", str(store_path),
           "--flat", str(flat)]
    return run_worker(cmd, name, cwd=ROOT)


#: The ratios reported: name -> (numerator contender, denominator contender).
RATIOS = {
    "engine_vs_sql_keyed": ("engine", "sql_keyed"),
    "engine_join_vs_sql_typed": ("engine_join", "sql_typed"),
    "engine_join_vs_polars_join": ("engine_join", "polars_join"),
    "engine_join_vs_pandas_join": ("engine_join", "pandas_join"),
    "engine_vs_sql_typed": ("engine", "sql_typed"),
    "engine_vs_sql_json": ("engine", "sql_json"),
    "engine_vs_polars": ("engine", "polars"),
    "engine_vs_pandas": ("engine", "pandas"),
    "engine_100_vs_8": ("engine_100", "engine"),
    "compute_vs_engine": ("engine_compute", "engine"),
}


def _ratios(results: dict[str, dict[str, Any]], key: str) -> dict[str, float]:
    """Each ratio of ``key`` (wall or CPU seconds) whose two contenders both ran."""
    return {
        name: round(results[a][key] / results[b][key], 3)
        for name, (a, b) in RATIOS.items()
        if results[a].get(key) and results[b].get(key)
    }


def run(n_events: int, *, json_path: Path | None = None, repeat: int = 1) -> dict[str, Any]:
    """Prepare the data, run every contender (best of ``repeat``), print and return the results."""
    started = time.perf_counter()
    store_path, flat = prepare(n_events)
    prepare_seconds = time.perf_counter() - started
    results: dict[str, dict[str, Any]] = {}
    for name in WORKERS:
        runs = [_run_worker(name, store_path, flat) for _ in range(repeat)]
        results[name] = min(runs, key=lambda r: (r["seconds"] is None, r["seconds"] or 0))  # a failed run last
    from engine.store import Store

    with Store.open(store_path, read_only=True) as store:
        events = store.con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    out = {
        "benchmark": "traits",
        "events": events,
        "generated_events": n_events,
        "profiles": results["engine"]["profiles"],
        "as_of": as_of().isoformat(),
        "prepare_seconds": round(prepare_seconds, 2),
        "contenders": results,
        "rows_per_second": {k: round(events / v["seconds"]) for k, v in results.items() if v["seconds"]},
        "failed": {k: v["failed"] for k, v in results.items() if "failed" in v},
        "ratios": _ratios(results, "seconds"),
        # CPU seconds (all threads) are steadier than wall time on a shared machine
        "ratios_cpu": {k: v for k, v in _ratios(results, "cpu_seconds").items() if k != "compute_vs_engine"},
        "agree": {
            k: results[k]["digest"] == results["engine"]["digest"]
            for k in ("engine_join", "sql_keyed", "sql_typed", "sql_json", "polars", "pandas", "polars_join",
                      "pandas_join")
            if "digest" in results[k]
        },
        "goals": {},
        "machine": machine(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    def goals(r: dict[str, float]) -> dict[str, bool]:
        """Each comparison between contenders reading the same input (left out if one failed)."""
        tests = {
            "within_1.25x_of_hand_sql_keyed": ("engine_vs_sql_keyed", lambda x: x <= 1.25),
            "within_1.25x_of_hand_sql_join": ("engine_join_vs_sql_typed", lambda x: x <= 1.25),
            "faster_than_polars_keyed": ("engine_vs_polars", lambda x: x < 1),
            "faster_than_pandas_keyed": ("engine_vs_pandas", lambda x: x < 1),
            "faster_than_polars_join": ("engine_join_vs_polars_join", lambda x: x < 1),
            "faster_than_pandas_join": ("engine_join_vs_pandas_join", lambda x: x < 1),
            "100_traits_under_5x_of_8": ("engine_100_vs_8", lambda x: x < 5),
        }
        return {goal: test(r[key]) for goal, (key, test) in tests.items() if key in r}

    out["goals"] = goals(out["ratios"])
    out["goals_cpu"] = goals(out["ratios_cpu"])
    return publish(out, json_path)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--flat", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker = {
            "engine": lambda: work_engine(args.store, 8),
            "engine_join": lambda: work_engine(args.store, 8, keyed=False),
            "sql_keyed": lambda: work_sql(args.store, True, keyed=True),
            "polars_join": lambda: work_polars(args.flat, join=True),
            "pandas_join": lambda: work_pandas(args.flat, join=True),
            "engine_100": lambda: work_engine(args.store, 100),
            "engine_compute": lambda: work_engine_compute(args.store),
            "sql_typed": lambda: work_sql(args.store, True),
            "sql_json": lambda: work_sql(args.store, False),
            "polars": lambda: work_polars(args.flat),
            "pandas": lambda: work_pandas(args.flat),
        }[args.worker]
        print(json.dumps(worker()))
        return None
    return run(args.events, json_path=args.json, repeat=args.repeat)


if __name__ == "__main__":
    main()

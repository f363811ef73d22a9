"""Identity resolution speed and memory: ``resolve`` vs bare connected components vs the oracle.

The events come from :mod:`benchmarks.generate` (anonymous visitors who identify later, one to
three devices per person, shared devices / emails / phones that hit the limits), ingested once
into ``benchmarks/cache/identity-<N>.duckdb``. Each contender then runs in a fresh subprocess, so
its peak RSS is its own:

* ``profiles``: :func:`engine.identity.resolve.resolve` with the default rules, from scratch
  (extract, graph, replay of limit-risky components, write all identity tables and traits);
* ``bare``: the floor, no limits: scipy connected components over the same identifier edges,
  already extracted, and the event -> component table written back. The extraction (the same
  ``_extract`` and integer edge fetch ``resolve`` runs) is timed separately and reported, so the
  ratio is given both against components alone and against extraction + components;
* ``append`` and ``late``: some events held back, everything else resolved, then the held-back
  events added as a new ingest and resolved incrementally. ``append`` holds back what
  ``bench_incremental`` appends (the newest 0.8% plus every 500th earlier event, 0.2% late):
  most new events continue from the stored state, the late ones re-resolve their components;
  ``late`` holds back a 1% hash sample spread over the whole time range (nearly all late: the
  worst case, a third of the history re-resolved);
* ``oracle``: the naive per-event oracle (``tests/identity/oracle.py``) on the first
  ``--oracle-sample`` events in canonical order; the engine resolves the same sample in a
  scratch store and must give the identical result (``oracle_agrees``).

``profiles``, ``bare`` and ``oracle`` run on a private copy of the cached store (``profiles`` and
``bare`` write to it; other benchmarks read the cache too). The private copy is deleted before
``append`` and ``late``, which only read: they attach the cached store itself read-only and copy
its events into their own fresh store (:func:`benchmarks.datasets.copy_events`).

Disk (issue 8): the cached store S, plus at most one more store at a time: first the private copy
(S plus the identity tables ``profiles`` writes), then each held-back worker's store (about S
plus its identity tables), plus DuckDB's spill (``<store>.tmp``). At 50M, S is about 12.5 GB:
about 30 GB beside the 4.2 GB NDJSON, where the copy kept next to the held-back stores needed
about 45 GB and ran out of disk.

Goals: ``profiles`` within 3x of ``bare`` (components over extracted edges); >= 50x the oracle's
events per second. Wall and CPU seconds are both reported (the machine is shared).

    python -m benchmarks.bench_identity --events 1000000 --json benchmarks/results/identity-1m.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.machine import machine, peak_rss_mib, publish, run_worker

CACHE = Path(__file__).parent / "cache"


def prepare(n_events: int) -> Path:
    """The shared store holding ``n_events`` generated events (built once, then reused; the
    ingest benchmark leaves it behind when it runs first: :mod:`benchmarks.datasets`)."""
    from benchmarks.datasets import shared_store

    return shared_store(n_events, CACHE)


# -- workers (each in its own process) ------------------------------------------------------------
def work_profiles(store_path: Path) -> dict[str, Any]:
    from engine.identity.resolve import resolve
    from engine.identity.rules import parse_identity
    from engine.store import Store

    with Store.open(store_path) as store:
        store.con.execute("DELETE FROM meta WHERE key = 'identity_state'")
        events = store.con.execute("SELECT count(*) FROM events").fetchall()[0][0]
        started, cpu = time.perf_counter(), _cpu()
        report = resolve(store, parse_identity(None))
        seconds, cpu = time.perf_counter() - started, _cpu() - cpu
    return {
        "events": events,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_rss_mib": peak_rss_mib(),
        "profiles": report.profiles,
        "resolved_events": report.resolved_events,
        "merges": report.merges,
        "violations": report.violations,
        "blocked": report.blocked,
        "components": report.components,
        "replayed_events": report.replayed_events,
        "largest_profile_identifiers": report.largest_profiles[0][1] if report.largest_profiles else 0,
        "step_seconds": dict(report.step_seconds),
    }


#: Held-back events of the incremental contenders, by canonical position ``pos`` (0-based) of
#: ``n`` events: ``append`` is bench_incremental's split (the newest 0.8% plus every 500th
#: earlier event: 0.2% late), ``late`` a 1% hash sample over the whole range (nearly all late).
HELD = {
    "append": "pos >= n - n * 8 // 1000 OR pos % 500 = 499",
    "late": "hash(message_id) % 100 = 0",
}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def work_incremental(store_path: Path, held_sql: str, scratch: Path | None = None) -> dict[str, Any]:
    """Resolve everything but the held-back events, append those as a new ingest, time the
    incremental ``resolve``. ``store_path`` is only read (attached read-only: it may be the
    cached store); the worker's own store, in ``scratch`` (default: beside it), is a fresh copy
    of the other events in their stored order (:func:`benchmarks.datasets.copy_events`; not a
    DELETE: an append-only store never has deleted rows); only row numbers and message ids are
    windowed, so no copy of whole events is held in memory."""
    from benchmarks.datasets import copy_events
    from engine.identity.resolve import resolve
    from engine.identity.rules import parse_identity
    from engine.store import Store

    rules = parse_identity(None)
    base_path = (scratch or store_path.parent) / f"{store_path.stem}-{os.getpid()}.incremental.duckdb"
    try:
        with Store.open(base_path) as store:
            con = store.con
            con.execute(f"ATTACH '{store_path}' AS src (READ_ONLY)")
            con.execute(
                f"""CREATE TEMP TABLE _held AS SELECT r FROM (
                    SELECT rowid AS r, message_id,
                           row_number() OVER (ORDER BY timestamp, message_id) - 1 AS pos,
                           count(*) OVER () AS n FROM src.events) WHERE {held_sql}"""
            )
            copy_events(con, "src", where="rowid NOT IN (SELECT r FROM _held)")
            held = con.execute("SELECT count(*) FROM _held").fetchall()[0][0]
            base = resolve(store, rules)
            next_id = con.execute("SELECT coalesce(max(ingest_id), 0) + 1 FROM main.events").fetchall()[0][0]
            copy_events(con, "src", where="rowid IN (SELECT r FROM _held)", replace={"ingest_id": str(int(next_id))})
            con.execute("DETACH src")
            con.execute("CHECKPOINT")
            started, cpu = time.perf_counter(), _cpu()
            report = resolve(store, rules)
            seconds, cpu = time.perf_counter() - started, _cpu() - cpu
    finally:
        _delete_store(base_path)
    return {
        "events": held,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_rss_mib": peak_rss_mib(),
        "mode": report.mode,
        "base_events": base.events,
        "base_seconds": base.seconds,
        "touched_components": report.touched_components,
        "reresolved_events": report.reresolved_events,
        "continued_events": report.continued_events,
        "late_events": report.new_events - report.continued_events,
        "created": report.created,
        "removed": report.removed,
        "changed": report.changed,
        "step_seconds": dict(report.step_seconds),
    }


def work_bare(store_path: Path) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from engine.identity.resolve import _extract
    from engine.identity.rules import parse_identity
    from engine.store import Store

    with Store.open(store_path) as store:
        con = store.con
        events = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
        extract_started, extract_cpu = time.perf_counter(), _cpu()
        _extract(con, parse_identity(None))
        rows = con.execute(
            "SELECT e.erank, i.iid FROM _id_rows r JOIN _ev e USING (eid) "
            "JOIN _ids i USING (type, value) ORDER BY e.erank"
        ).fetchnumpy()
        ev, ident = rows["erank"].astype(np.int64), rows["iid"].astype(np.int64)
        extraction, extraction_cpu = time.perf_counter() - extract_started, _cpu() - extract_cpu
        started, cpu = time.perf_counter(), _cpu()
        n_id = int(ident.max()) + 1
        starts = np.flatnonzero(np.r_[True, ev[1:] != ev[:-1]])
        hub = ident[starts][ev]
        graph = coo_matrix((np.ones(len(ev), dtype=np.int8), (hub, ident)), shape=(n_id, n_id))
        n_comp, comp = connected_components(graph.tocsr(), directed=False)
        con.register("_cc", pa.table({"erank": np.arange(len(starts)), "comp": comp[ident[starts]]}))
        with store.transaction():
            con.execute(
                "CREATE OR REPLACE TABLE _bench_cc AS SELECT e.message_id, c.comp "
                "FROM _cc c JOIN _ev e USING (erank)"
            )
        seconds, cpu = time.perf_counter() - started, _cpu() - cpu
        con.execute("DROP TABLE _bench_cc")
    return {"events": events, "seconds": seconds, "cpu_seconds": cpu, "extraction_seconds": extraction,
            "extraction_cpu_seconds": extraction_cpu,
            "peak_rss_mib": peak_rss_mib(), "components": int(n_comp), "edges": len(ev)}


def work_oracle(store_path: Path, sample: int) -> dict[str, Any]:
    from engine.identity.resolve import resolve
    from engine.identity.rules import parse_identity
    from engine.store import Store
    from tests.identity.helpers import assert_same, engine_result
    from tests.identity.oracle import oracle_resolve

    rules = parse_identity(None)
    sample_path = store_path.parent / "oracle-sample.parquet"
    with Store.open(store_path, read_only=True) as store:
        rows = store.con.execute(
            f"""SELECT message_id, type, timestamp, user_id, anonymous_id,
                   traits::VARCHAR, context::VARCHAR, properties::VARCHAR, raw::VARCHAR
            FROM events ORDER BY timestamp, message_id LIMIT {int(sample)}"""
        ).fetchall()
        store.con.execute(
            f"""COPY (SELECT * FROM events ORDER BY timestamp, message_id LIMIT {int(sample)})
            TO '{sample_path}' (FORMAT parquet)"""
        )
    load = lambda v: None if v is None else json.loads(v)  # noqa: E731
    events = [
        {"message_id": m, "type": t, "timestamp": ts, "user_id": u, "anonymous_id": a,
         "traits": load(tr), "context": load(cx), "properties": load(pr), "raw": load(raw)}
        for m, t, ts, u, a, tr, cx, pr, raw in rows
    ]
    started, cpu = time.perf_counter(), _cpu()
    expected = oracle_resolve(events, rules)
    seconds, cpu = time.perf_counter() - started, _cpu() - cpu
    with Store.open(None) as scratch:
        scratch.con.execute(f"INSERT INTO events SELECT * FROM '{sample_path}'")
        engine_started = time.perf_counter()
        resolve(scratch, rules)
        engine_seconds = time.perf_counter() - engine_started
        got = engine_result(scratch)
        try:
            assert_same(got, expected)
            agrees, differs = True, []
        except AssertionError:
            agrees = False
            differs = [name for name in ("profiles", "identifiers", "event_profiles", "unresolved",
                                         "violations", "blocked", "traits")
                       if getattr(got, name) != getattr(expected, name)]
    return {
        "events": len(events),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_rss_mib": peak_rss_mib(),
        "engine_seconds_on_sample": engine_seconds,
        "oracle_agrees": agrees,
        "oracle_differs_on": differs,
    }


def _run_worker(name: str, store_path: Path, sample: int, scratch: Path | None = None) -> dict[str, Any]:
    """One contender in a fresh process (:func:`benchmarks.machine.run_worker`)."""
    cmd = [sys.executable, "-m", "benchmarks.bench_identity", "--worker", name,
           "--store", str(store_path), "--oracle-sample", str(sample),
           *(["--scratch", str(scratch)] if scratch else [])]
    return run_worker(cmd, name, cwd=Path(__file__).resolve().parent.parent)


def _delete_store(path: Path) -> None:
    """Delete a store file with its write-ahead log."""
    path.unlink(missing_ok=True)
    Path(str(path) + ".wal").unlink(missing_ok=True)


def _sum(a: float | None, b: float | None) -> float | None:
    return a + b if a is not None and b is not None else None


def _within(a: float | None, factor: float, b: float | None) -> bool | None:
    """``a <= factor * b``; None when a contender failed."""
    return a <= factor * b if a is not None and b is not None else None


def _div(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when a contender failed (no number to compare)."""
    return a / b if a is not None and b else None


def run(n_events: int, *, oracle_sample: int = 100_000, json_path: Path | None = None) -> dict[str, Any]:
    """Prepare the store, run the contenders, print and return the results."""
    started = time.perf_counter()
    store_path = prepare(n_events)
    prep = time.perf_counter() - started
    # a private copy for the contenders that write: the cached store may be read by other
    # benchmarks at the same time
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="identity-run-") as tmp:
        private = Path(tmp) / "store.duckdb"
        shutil.copyfile(store_path, private)
        results = {}
        for name in ("profiles", "bare", "oracle"):
            results[name] = _run_worker(name, private, oracle_sample)
            if "failed" in results[name]:  # killed mid-way: the next worker needs the store intact
                shutil.copyfile(store_path, private)
        # the held-back contenders only read the events: they attach the cached store read-only,
        # and the private copy goes first, so the disk holds one extra store at a time (issue 8)
        _delete_store(private)
        for name in HELD:
            results[name] = _run_worker(name, store_path, oracle_sample, scratch=Path(tmp))
    prof, bare, oracle = results["profiles"], results["bare"], results["oracle"]
    for r in results.values():
        r["events_per_second"] = r["events"] / r["seconds"] if r["seconds"] else None
    bare_total = _sum(bare.get("extraction_seconds"), bare["seconds"])
    bare_total_cpu = _sum(bare.get("extraction_cpu_seconds"), bare["cpu_seconds"])
    summary = {
        "benchmark": "identity",
        "events": n_events,
        "stored_events": prof["events"],
        "prepare_seconds": prep,
        "results": results,
        "ratio_to_bare": _div(prof["seconds"], bare["seconds"]),
        "ratio_to_bare_cpu": _div(prof["cpu_seconds"], bare["cpu_seconds"]),
        "ratio_to_extraction_plus_bare": _div(prof["seconds"], bare_total),
        "ratio_to_extraction_plus_bare_cpu": _div(prof["cpu_seconds"], bare_total_cpu),
        "speedup_per_event_vs_oracle": _div(prof["events_per_second"], oracle["events_per_second"]),
        "speedup_per_event_vs_oracle_cpu": _div(_div(prof["events"], prof["cpu_seconds"]),
                                                _div(oracle["events"], oracle["cpu_seconds"])),
        **{f"{name}_share_of_full": _div(results[name]["seconds"], prof["seconds"]) for name in HELD},
        **{f"{name}_share_of_full_cpu": _div(results[name]["cpu_seconds"], prof["cpu_seconds"]) for name in HELD},
        "failed": {name: r["failed"] for name, r in results.items() if "failed" in r},
        "goals": {"within_3x_of_bare": _within(prof["seconds"], 3, bare["seconds"]),
                  "within_3x_of_extraction_plus_bare": _within(prof["seconds"], 3, bare_total),
                  "50x_faster_than_oracle_per_event":
                      _within(oracle["events_per_second"], 1 / 50, prof["events_per_second"]),
                  "oracle_agrees_on_sample": oracle.get("oracle_agrees")},
        "machine": machine(),
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return publish(summary, json_path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--oracle-sample", type=int, default=100_000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--worker", choices=("profiles", "bare", "oracle", *HELD), help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        if args.worker in HELD:
            out = work_incremental(args.store, HELD[args.worker], args.scratch)
        elif args.worker == "oracle":
            out = work_oracle(args.store, args.oracle_sample)
        else:
            out = {"profiles": work_profiles, "bare": work_bare}[args.worker](args.store)
        print(json.dumps(out, default=str))
        return
    run(args.events, oracle_sample=args.oracle_sample, json_path=args.json)


if __name__ == "__main__":
    main()

"""Incremental update of profiles and traits vs a full recompute: 1% new events, and ``as_of`` slid by one day.

The generated NDJSON of N events (``benchmarks.bench_ingest.dataset``) is split once: the *new*
1% are the last 0.8% of lines (the newest events) plus every 500th line before them (0.2% *late*
events, anywhere in the past); the other 99% are ingested, resolved and computed (the 8 traits of
``bench_traits``) into a base store, cached. A fresh worker process then copies the base store and

1. ingests the new file (timed apart: the same for both sides);
2. **incremental update**: ``resolve`` (incremental: the identity engineer's part), ``CHECKPOINT``
   of its writes, ``compute_traits`` (incremental);
3. **full recompute** of the same store after the same ingest: ``resolve`` from scratch (the
   stored identity rules hash is cleared, which is what makes ``resolve`` rebuild every identity
   table), ``CHECKPOINT``, ``compute_traits(full=True)``; the trait values of 2. and 3. are
   compared row for row;
4. slides ``as_of`` by one day: incremental update, then full recompute at the same instant, rows
   compared again (identity does not change: traits only).

Issue 7's goals: the 1% append's update of profiles and traits (2. vs 3.: ``speedup.append_update``,
the headline) >= 20x faster; sliding >= 10x. Each run records the resolve's mode and paths
(continued, absorbed, re-resolved events) and the traits step's identity pass (``feed``: the
identity's event-level change feed, docs/incremental.md). Beside it: the traits step alone
(``append_compute``) and end to end with the ingest (``append_end_to_end``). Wall time is noisy on
the shared 2-core machine, so CPU seconds are reported for every step and ratio.
The base store is cached in two stages: ``incr-N-resolved-i<identity layout>.duckdb`` (ingest + resolve, slow) and
``incr-N-base-v<trait state version>-i<identity layout>.duckdb`` (traits computed), so a state layout change only
recomputes the traits.

From ``datasets.BIG`` events on (50M: re-ingesting the 99% took about an hour, and writing it out
4 GB of gzip), only the new 1% file is written, and the resolved base store (named
``incr-N-resolved-shared-i<layout>.duckdb``, then ``incr-N-base-shared-...``) is derived from the
shared ingested store (:func:`derived_base`): its events except the new file's, in stored order,
with its ``ingest_log``; the new file is then ingested at the shared store's ingest time
(``datasets.INGEST_NOW``). Below BIG the base is ingested from the split as before, so the 1M and
10M numbers stay comparable. Disk at BIG: the shared store (read-only), the derived store and
its spill; the runner must run this benchmark before ``traits``, which takes the shared store
over at that size (``--prepare-only`` builds the resolved base store ahead).

    python -m benchmarks.bench_incremental --events 1000000 --json benchmarks/results/incremental-1m.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.machine import machine, peak_rss_mib, publish

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(__file__).parent / "cache"
INGEST_NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(fn) -> tuple[Any, dict[str, float]]:
    wall, cpu = time.perf_counter(), _cpu()
    out = fn()
    return out, {"seconds": round(time.perf_counter() - wall, 4), "cpu_seconds": round(_cpu() - cpu, 4)}


def _is_new(i: int, cut: int) -> bool:
    """Whether line ``i`` (0-based) of the shared NDJSON is in the new 1%: past ``cut`` (the newest
    0.8%), or every 500th line before it (late events)."""
    return i >= cut or i % 500 == 499


def split(n_events: int, *, base: bool = True) -> tuple[Path | None, Path]:
    """The 99% base and the 1% new NDJSON files (newest 0.8% + every 500th earlier line); with
    ``base=False`` only the new file (the base is then None: it is derived from the shared store).

    Streamed from the shared NDJSON (:mod:`benchmarks.datasets`), never held in memory: at 50M
    events the file is 19 GB; from ``datasets.BIG`` on both parts are gzipped like their source.
    """
    from benchmarks.datasets import lines, ndjson, writer

    source = ndjson(n_events, CACHE)
    suffix = "".join(source.suffixes[-2:])  # .ndjson or .ndjson.gz, like the source
    base_path, new = CACHE / f"incr-{n_events}-base{suffix}", CACHE / f"incr-{n_events}-new{suffix}"
    if new.exists() and (not base or base_path.exists()):
        return (base_path if base else None), new
    total = sum(1 for _ in lines(source))
    cut = total - total * 8 // 1000
    tmp_base, tmp_new = (p.with_name(p.name + f".{os.getpid()}.tmp") for p in (base_path, new))
    packed = source.suffix == ".gz"
    with writer(tmp_new, gz=packed) as n, (writer(tmp_base, gz=packed) if base else nullcontext(None)) as b:
        for i, line in enumerate(lines(source)):
            if _is_new(i, cut):
                n.write(line)
            elif b is not None:
                b.write(line)
    if base:
        tmp_base.rename(base_path)
    tmp_new.rename(new)
    return (base_path if base else None), new


def ingest_now(n_events: int) -> datetime:
    """The ingest time of the new file: the base's (the shared store's from ``datasets.BIG`` on)."""
    from benchmarks import datasets

    return datasets.INGEST_NOW if n_events >= datasets.BIG else INGEST_NOW


def _tag(n_events: int) -> str:
    """``-shared`` in the cached store names from ``datasets.BIG`` on: those bases are derived
    from the shared store (another ingest time), so they never mix with ingested ones."""
    from benchmarks import datasets

    return "-shared" if n_events >= datasets.BIG else ""


def derived_base(store: Any, shared: Path, new: Path, *, now: datetime) -> int:
    """Fill the empty ``store`` with the events of ``shared`` except those of the ``new`` file, in
    stored order, and ``shared``'s ingest log; returns the number of events copied.

    The new file's events are found by message id, as the engine derives them: the file is
    ingested into a scratch store first (1% of the events, at the shared store's ingest time
    ``now``). A message sent both in the base and in the new file (a re-sent duplicate, which the
    generator renders byte-identically) is then stored by the new file's ingest: the events table
    after it is the same as after ingesting everything. The copied ``ingest_log`` rows make the
    next ingest take the next ``ingest_id`` (``ingest_paths`` numbers from the log) and keep the
    engine's freshness counts (read from the log) meaningful; the quarantine and duplicate
    conflicts are not copied (only ``profiles quarantine`` reads them).
    """
    from benchmarks.datasets import copy_events
    from engine.store import Store
    from ingest.load import ingest_paths

    scratch = Path(store.path).with_suffix(".new-ids.duckdb")
    scratch.unlink(missing_ok=True)
    try:
        with Store.open(scratch) as ids:
            ingest_paths(ids, [new], now=now)
        con = store.con
        con.execute(f"ATTACH '{shared}' AS src (READ_ONLY)")
        con.execute(f"ATTACH '{scratch}' AS fresh (READ_ONLY)")
        con.execute("CREATE TEMP TABLE _new_ids AS SELECT DISTINCT message_id FROM fresh.events")
        con.execute("DETACH fresh")
        copied = copy_events(con, "src", where="message_id NOT IN (SELECT message_id FROM _new_ids)")
        con.execute("INSERT INTO ingest_log BY NAME SELECT * FROM src.ingest_log ORDER BY ingest_id")
        con.execute("DETACH src")
        con.execute("DROP TABLE _new_ids")
    finally:
        scratch.unlink(missing_ok=True)
        Path(str(scratch) + ".wal").unlink(missing_ok=True)
    return copied


def resolved(n_events: int) -> Path:
    """The base store with the 99% ingested (from ``datasets.BIG`` on: derived from the shared
    store) and resolved (no traits): the slow part, cached once."""
    from benchmarks import datasets
    from engine.identity.resolve import LAYOUT_VERSION, resolve
    from engine.identity.rules import parse_identity
    from engine.store import Store
    from ingest.load import ingest_paths

    big = n_events >= datasets.BIG
    base, new = split(n_events, base=not big)
    # the identity layout is in the name: a store resolved by older rules would make the timed
    # "incremental" resolve a full rebuild
    path = CACHE / f"incr-{n_events}-resolved{_tag(n_events)}-i{LAYOUT_VERSION}.duckdb"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp.duckdb")
        tmp.unlink(missing_ok=True)
        with Store.open(tmp) as store:
            if big:
                derived_base(store, datasets.shared_store(n_events, CACHE), new, now=ingest_now(n_events))
            else:
                ingest_paths(store, [base], now=INGEST_NOW)
            resolve(store, parse_identity(None))
            store.con.execute("CHECKPOINT")
        tmp.rename(path)
    return path


def prepare(n_events: int) -> tuple[Path, Path]:
    """The base store (99% ingested, resolved, traits computed) and the new file.

    The computed store's name carries the trait state and identity layout versions, so a layout
    change rebuilds it from the cached resolved store (cheap) rather than re-ingesting.
    """
    from benchmarks.bench_traits import as_of, eight_traits, parsed
    from engine.compute import STATE_VERSION, compute_traits
    from engine.identity.resolve import LAYOUT_VERSION
    from engine.store import Store

    from benchmarks import datasets

    _, new = split(n_events, base=n_events < datasets.BIG)
    path = CACHE / f"incr-{n_events}-base{_tag(n_events)}-v{STATE_VERSION}-i{LAYOUT_VERSION}.duckdb"
    if not path.exists():
        from benchmarks.datasets import consume_at_big

        source = resolved(n_events)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.duckdb")
        consume_at_big(source, tmp, n_events)  # a copy, or at 50M the store itself
        with Store.open(tmp) as store:
            compute_traits(store, parsed(eight_traits()), as_of=as_of(), full=True)
            store.con.execute("CHECKPOINT")
        tmp.rename(path)
    return path, new


def _values(store) -> Any:
    return store.con.sql("SELECT * FROM trait_values ORDER BY profile_id").pl()


def _full_resolve(store, rules) -> Any:
    """``resolve`` from scratch: without the stored rules hash every identity table is rebuilt."""
    from engine.identity.resolve import resolve

    store.con.execute("DELETE FROM meta WHERE key IN ('identity_rules', 'identity_state')")
    return resolve(store, rules)


def work(base: Path, new: Path, *, slide: bool = True, consume: bool = False,
         now: datetime = INGEST_NOW) -> dict[str, Any]:
    """One run on a copy of the base store (in this fresh process); ``slide=False`` skips step 4;
    with ``consume`` (at 50M, where a copy does not fit on the disk) on the base store itself,
    which is gone afterwards; ``now`` is the new file's ingest time (:func:`ingest_now`)."""
    from benchmarks.bench_traits import as_of, eight_traits, parsed
    from benchmarks.datasets import move_or_copy
    from engine.compute import compute_traits
    from engine.identity.resolve import resolve
    from engine.identity.rules import parse_identity
    from engine.store import Store
    from ingest.load import ingest_paths

    _warm_up()
    path = base.with_suffix(f".{os.getpid()}.work.duckdb")
    move_or_copy(base, path, move=consume)
    traits, at, out, rules = parsed(eight_traits()), as_of(), {}, parse_identity(None)
    try:
        with Store.open(path) as store:
            ingested, out["ingest"] = _timed(lambda: ingest_paths(store, [new], now=now))
            out["ingest"]["events"] = ingested.ingested
            # ingest leaves a write-ahead log; DuckDB checkpoints it at the next commit that
            # crosses its threshold, which would bill the ingest's writes to the next step
            _, out["ingest_checkpoint"] = _timed(lambda: store.con.execute("CHECKPOINT"))
            ident, out["resolve"] = _timed(lambda: resolve(store, rules))
            out["resolve"].update(mode=ident.mode, continued=ident.continued_events, absorbed=ident.absorbed_events,
                                  reresolved=ident.reresolved_events)
            # the same for resolve's writes and the traits step (timed apart, counted in the update)
            _, out["checkpoint"] = _timed(lambda: store.con.execute("CHECKPOINT"))
            report, out["append_incremental"] = _timed(lambda: compute_traits(store, traits, as_of=at))
            out["append_incremental"].update(
                merged=report.merged, recomputed=report.recomputed, dropped=report.dropped, full=report.full,
                identity_pass=report.identity_pass)
            incremental = _values(store)
            _, out["resolve_full"] = _timed(lambda: _full_resolve(store, rules))
            _, out["checkpoint_full"] = _timed(lambda: store.con.execute("CHECKPOINT"))
            _, out["append_full"] = _timed(lambda: compute_traits(store, traits, as_of=at, full=True))
            out["append_agree"] = incremental.equals(_values(store))
            out["profiles"] = incremental.height

            if slide:
                later = at + timedelta(days=1)
                report, out["slide_incremental"] = _timed(lambda: compute_traits(store, traits, as_of=later))
                out["slide_incremental"].update(
                    merged=report.merged, recomputed=report.recomputed, dropped=report.dropped, full=report.full)
                incremental = _values(store)
                _, out["slide_full"] = _timed(lambda: compute_traits(store, traits, as_of=later, full=True))
                out["slide_agree"] = incremental.equals(_values(store))
            out["events"] = store.con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    finally:
        path.unlink(missing_ok=True)
        Path(str(path) + ".wal").unlink(missing_ok=True)
    out["peak_rss_mib"] = round(peak_rss_mib(), 1)
    return out


def _warm_up() -> None:
    """Pay the process's one-off lazy imports before anything is timed. DuckDB imports pandas
    (when installed: the benchmarks install it) the first time a Python object is scanned, about
    a second of CPU; the incremental side runs first in this process, so it alone paid that second,
    which the full side, run after it, never did."""
    import duckdb
    import pyarrow as pa

    con = duckdb.connect()
    con.register("_warm", pa.table({"x": [1]}))
    con.sql("SELECT count(*) FROM _warm").fetchall()
    con.close()


def _update(run: dict[str, Any], kind: str, key: str) -> float:
    """The update of profiles and traits after the ingest: resolve + checkpoint + compute."""
    if kind == "incremental":
        return run["resolve"][key] + run["checkpoint"][key] + run["append_incremental"][key]
    return run["resolve_full"][key] + run["checkpoint_full"][key] + run["append_full"][key]


def run(n_events: int, *, json_path: Path | None = None, repeat: int = 1, slide: bool = True) -> dict[str, Any]:
    """Prepare once, run the worker ``repeat`` times in fresh processes (best by incremental time);
    ``slide=False`` leaves out the slide of ``as_of`` (a shorter run when only the append matters)."""
    started = time.perf_counter()
    base, new = prepare(n_events)
    prepare_seconds = time.perf_counter() - started
    from benchmarks.datasets import BIG

    consume = n_events >= BIG
    if consume and repeat > 1:
        raise SystemExit(f"error: from {BIG:,} events one run only (the run uses up the base store)")
    runs = []
    for _ in range(repeat):
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_incremental", "--worker", "--base", str(base), "--new", str(new),
             "--now", ingest_now(n_events).isoformat(),
            *([] if slide else ["--no-slide"]), *(["--consume"] if consume else [])],
            check=True, capture_output=True, text=True, cwd=ROOT,
        )
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: _update(r, "incremental", "seconds"))

    def ratio(full: float, inc: float) -> float:
        return round(full / max(inc, 1e-9), 1)

    def step_ratio(full: str, inc: str, key: str) -> float:
        return ratio(best[full][key], best[inc][key])

    update = {f"{kind}_{key}": round(_update(best, kind, key), 3)
              for kind in ("incremental", "full") for key in ("seconds", "cpu_seconds")}
    e2e = {f"{kind}_{key}": round(best["ingest"][key] + best["ingest_checkpoint"][key] + update[f"{kind}_{key}"], 3)
           for kind in ("incremental", "full") for key in ("seconds", "cpu_seconds")}

    out = {
        "benchmark": "incremental",
        "generated_events": n_events,
        "events": best["events"],
        "new_events": best["ingest"]["events"],
        "profiles": best["profiles"],
        "traits": 8,
        "prepare_seconds": round(prepare_seconds, 1),
        "runs": runs,
        "best": best,
        "update": update,
        "end_to_end": e2e,
        "speedup": {
            # the headline (issue 7): resolve + checkpoint + compute, incremental vs from scratch
            "append_update_wall": ratio(update["full_seconds"], update["incremental_seconds"]),
            "append_update_cpu": ratio(update["full_cpu_seconds"], update["incremental_cpu_seconds"]),
            "append_compute_wall": step_ratio("append_full", "append_incremental", "seconds"),
            "append_compute_cpu": step_ratio("append_full", "append_incremental", "cpu_seconds"),
            "append_end_to_end_wall": ratio(e2e["full_seconds"], e2e["incremental_seconds"]),
            "append_end_to_end_cpu": ratio(e2e["full_cpu_seconds"], e2e["incremental_cpu_seconds"]),
            "slide_wall": step_ratio("slide_full", "slide_incremental", "seconds") if slide else None,
            "slide_cpu": step_ratio("slide_full", "slide_incremental", "cpu_seconds") if slide else None,
        },
        "agree": {"append": best["append_agree"], "slide": best.get("slide_agree")},
        "machine": machine(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    s = out["speedup"]
    out["goals"] = {"append_20x": s["append_update_wall"] >= 20, "slide_10x": slide and s["slide_wall"] >= 10}
    out["goals_cpu"] = {"append_20x": s["append_update_cpu"] >= 20, "slide_10x": slide and s["slide_cpu"] >= 10}
    return publish(out, json_path)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--prepare-only", action="store_true", help="build the cached stores and stop")
    parser.add_argument("--no-slide", action="store_true", help="leave out the slide of as_of")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--new", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--consume", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--now", type=datetime.fromisoformat, default=INGEST_NOW, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(work(args.base, args.new, slide=not args.no_slide, consume=args.consume, now=args.now)))
        return None
    if args.prepare_only:
        resolved(args.events)
        return None
    return run(args.events, json_path=args.json, repeat=args.repeat, slide=not args.no_slide)


if __name__ == "__main__":
    main()

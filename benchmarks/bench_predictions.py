"""Predictions end to end: load events, point-in-time features, holdout training, scoring, reports.

The store is built once per size from ``benchmarks.generate.write_parquet`` straight into the
``events`` / ``event_profiles`` tables (profile = the user id, else the anonymous id: identity
resolution is benchmarked elsewhere), then ``run_predictions`` runs in a fresh subprocess so its
peak RSS is its own. Three predictions: churn (30 days), goal (inbound engagement, 30 days) and
LTV (order revenue, 90 days).

Goal: at 10M events / 1M profiles, under 5 minutes and 8 GiB.

    python -m benchmarks.bench_predictions --events 1000000 --json benchmarks/results/predictions-1m.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import machine, peak_rss_mib

CACHE = Path(__file__).parent / "cache"

PREDICTIONS = [
    {"name": "churn_30d", "type": "churn", "event": "Flex - Engagement Initiated", "horizon_days": 30},
    {"name": "inbound_30d", "type": "goal", "event": "Flex - Engagement Initiated", "horizon_days": 30,
     "conditions": [{"property": "direction", "operator": "equals", "value": "Inbound"}]},
    {"name": "ltv_90d", "type": "ltv", "event": "Order Completed", "property": "revenue", "horizon_days": 90},
]


def build_store(n_events: int) -> Path:
    """A store file with ``n_events`` generated events resolved one profile per user (cached)."""
    from benchmarks.generate import write_parquet
    from engine.store import Store

    CACHE.mkdir(parents=True, exist_ok=True)
    store_path = CACHE / f"predictions-{n_events}.duckdb"
    if store_path.exists():
        return store_path
    parquet = CACHE / f"events-{n_events}.parquet"
    if not parquet.exists():
        write_parquet(parquet.with_suffix(".tmp"), n_events, seed=0)
        parquet.with_suffix(".tmp").rename(parquet)
    tmp = store_path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    with Store.open(tmp) as store:
        con = store.con
        src = str(parquet).replace("'", "''")
        con.execute(
            "INSERT INTO events (message_id, type, event, timestamp, user_id, anonymous_id, properties, raw, "
            "payload_hash, ingest_id) "
            "SELECT message_id, type, CASE type WHEN 'page' THEN 'Page Viewed' WHEN 'screen' THEN 'Screen Viewed' "
            "ELSE event END, timestamp, user_id, anonymous_id, "
            "json_object('direction', direction, 'channelType', channelType, 'revenue', revenue), '{}'::JSON, "
            f"message_id, 1 FROM (SELECT DISTINCT ON (message_id) * FROM read_parquet('{src}'))"
        )
        con.execute(
            "INSERT INTO event_profiles SELECT message_id, 'prf_' || coalesce(user_id, anonymous_id) FROM events"
        )
        con.execute(
            "INSERT INTO profiles SELECT profile_id, min(message_id), now() FROM event_profiles GROUP BY profile_id"
        )
        con.execute("CHECKPOINT")
    tmp.rename(store_path)
    return store_path


def _child(store_path: str, as_of: str, reports: str) -> None:
    """Runs in the subprocess: one ``run_predictions``; prints a JSON line of results."""
    import resource
    from datetime import datetime

    from engine.predict import run_predictions
    from engine.store import Store
    from predictions.definitions import parse_predictions

    class Config:
        predictions = parse_predictions(PREDICTIONS, path=None)
        traits = ()

    Config.reports_dir = Path(reports)
    start = time.perf_counter()
    with Store.open(store_path) as store:
        events = store.first_row("SELECT count(*) FROM events")[0]
        profiles = store.first_row("SELECT count(*) FROM profiles")[0]
        report = run_predictions(store, Config, as_of=datetime.fromisoformat(as_of))
    wall = time.perf_counter() - start
    peak = peak_rss_mib()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "events": events,
        "profiles": profiles,
        "wall_seconds": round(wall, 2),
        "peak_rss_mib": round(peak, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "load_events_seconds": report.load_seconds,
        "events_per_second": round(events / wall),
        "profiles_per_second": round(profiles / wall),
        "predictions": [
            {"name": p.name, "status": p.status, "model": p.model, "metric": p.metric,
             "holdout": p.value, "baseline": p.baseline_value, "grade": p.grade, "scored": p.scored,
             "reason": p.reason, "stage_seconds": p.seconds}
            for p in report.predictions
        ],
    }))


def run(n_events: int) -> dict[str, Any]:
    from benchmarks.generate import end_of_data

    t0 = time.perf_counter()
    store_path = build_store(n_events)
    setup = time.perf_counter() - t0
    reports = CACHE / f"predictions-{n_events}-reports"
    as_of = end_of_data().isoformat()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_predictions", "--child", str(store_path), as_of, str(reports)],
        capture_output=True, text=True, cwd=Path(__file__).parent.parent,
    )
    if proc.returncode:
        raise SystemExit(f"the benchmark child failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result |= {
        "benchmark": "predictions",
        "as_of": as_of,
        "store_setup_seconds": round(setup, 2),
        "goal": "10M events / 1M profiles: < 300 s and < 8192 MiB",
        "machine": machine() | {"load_average_at_end": os.getloadavg()},
    }
    print(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--child", nargs=3, metavar=("STORE", "AS_OF", "REPORTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return None
    result = run(args.events)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()

"""Atomic per file, proven: ``kill -9`` mid-file, re-run, and the store equals one clean run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from engine.store import Store
from ingest.load import ingest_paths
from tests.ingest.conftest import NOW

ROOT = Path(__file__).parent.parent.parent

# Runs in the child: ingest, printing a line after every chunk so the parent knows where it is.
CHILD = """
import sys
from datetime import datetime
import ingest.load as load
real = load._process_chunk
def traced(*args, **kwargs):
    real(*args, **kwargs)
    print("chunk", kwargs["source"], flush=True)
load._process_chunk = traced
from engine.store import Store
with Store.open(sys.argv[1]) as store:
    load.ingest_paths(store, sys.argv[2:], now=datetime.fromisoformat({now!r}), chunk_records=200)
print("done", flush=True)
"""


def _write(path: Path, n: int, prefix: str) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            msg = {"type": "track", "event": f"E{i % 5}", "userId": f"u{i % 97}", "timestamp": "2024-03-01T10:00:00Z",
                   "properties": {"i": i, "pad": "x" * 64}}
            if i % 3:
                msg["messageId"] = f"{prefix}{i}"
            f.write(json.dumps(msg) + ("\n{broken\n" if i % 1000 == 7 else "\n"))
    return path


def _snapshot(path: Path) -> dict[str, list[tuple]]:
    with Store.open(path, read_only=True) as store:
        con = store.con
        return {
            "events": con.execute("SELECT * FROM events ORDER BY message_id").fetchall(),
            "quarantine": con.execute("SELECT ingest_id, source_file, line, raw, reason FROM quarantine ORDER BY ALL").fetchall(),
            "log": con.execute("SELECT ingest_id, path, records, ingested, duplicates, quarantined, status FROM ingest_log ORDER BY ALL").fetchall(),
        }


def _child(store: Path, files: list[Path]) -> subprocess.Popen:
    code = CHILD.format(now=NOW.isoformat())
    return subprocess.Popen(
        [sys.executable, "-c", code, str(store), *map(str, files)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_kill_9_mid_file_then_rerun_equals_a_clean_run(tmp_path):
    small = _write(tmp_path / "a.ndjson", 300, "a")
    big = _write(tmp_path / "b.ndjson", 3000, "b")
    files = [small, big]

    crashed = tmp_path / "crashed.duckdb"
    child = _child(crashed, files)
    seen = 0
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("chunk") and line.strip().endswith("b.ndjson"):
            seen += 1
            if seen == 3:  # well inside b.ndjson's transaction
                os.kill(child.pid, signal.SIGKILL)
                break
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the child finished before it could be killed"

    after_crash = _snapshot(crashed)
    assert [row[1] for row in after_crash["log"]] == [str(small)]  # only the committed file
    assert {row[0] for row in after_crash["events"]} <= {f"a{i}" for i in range(300)} | {
        r[0] for r in after_crash["events"] if r[0].startswith("derived-")
    }

    rerun = _child(crashed, files)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0 and out.strip().endswith("done")

    clean = tmp_path / "clean.duckdb"
    with Store.open(clean) as store:
        ingest_paths(store, [str(f) for f in files], now=NOW, chunk_records=200)
    expected = _snapshot(clean)
    got = _snapshot(crashed)
    assert len(expected["events"]) == 300 + 3000 - 100  # a-file messages without messageId recur in b
    assert got == expected

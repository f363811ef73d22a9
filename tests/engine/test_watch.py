"""``profiles watch``: a real subprocess polls a temp folder; files dropped in are ingested, resolved
and computed incrementally; SIGINT stops it cleanly; a restart resumes, and the result equals a
full run over all the files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.project import Project

ROOT = Path(__file__).resolve().parents[2]
AS_OF = "2025-03-01T00:00:00Z"
PROJECT = """
[project]
name = "watch-test"
store = "store.duckdb"

[[traits]]
name = "calls"
type = "event_counter"
event = "Call"

[[traits]]
name = "last_channel"
type = "last"
event = "Call"
property = "channel"

[[traits]]
name = "recent_calls"
type = "event_counter"
event = "Call"
window = { within_days = 7 }
"""


def write_events(path: Path, start: int, n: int) -> None:
    """``n`` Call events; users repeat across files, an anonymous id later links two users' events."""
    base = datetime(2025, 2, 1, tzinfo=UTC)
    lines = []
    for i in range(start, start + n):
        msg = {"type": "track", "event": "Call", "messageId": f"m{i}",
               "timestamp": (base + timedelta(hours=7 * i)).isoformat().replace("+00:00", "Z"),
               "properties": {"channel": ["voice", "chat", "sms"][i % 3]}}
        if i % 5 == 4:
            msg["anonymousId"] = f"anon{i % 4}"
        else:
            msg["userId"] = f"u{i % 4}"
            msg["anonymousId"] = f"anon{(i + 1) % 4}"
        lines.append(json.dumps(msg))
    tmp = path.with_name("." + path.name)  # write then rename: never seen half-written
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.rename(path)


class Watcher:
    def __init__(self, project: Path, inbox: Path) -> None:
        self.log = project / f"watch-{time.monotonic_ns()}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "--config", str(project / "profiles.toml"), "--quiet",
             "watch", str(inbox), "--interval", "0.2", "--as-of", AS_OF],
            cwd=ROOT, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
        )

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8")

    def wait_for(self, needle: str, count: int = 1, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while self.text().count(needle) < count:
            assert self.proc.poll() is None, self.text()
            assert time.monotonic() < end, f"timed out waiting for {needle!r}:\n{self.text()}"
            time.sleep(0.1)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(timeout=60) == 0, self.text()
        return self.text()


def values(store_path: Path) -> list[tuple]:
    import duckdb

    con = duckdb.connect(str(store_path), read_only=True)
    try:
        return con.execute("SELECT * FROM trait_values ORDER BY profile_id").fetchall()
    finally:
        con.close()


def test_watch_ingests_new_files_stops_on_sigint_and_resumes(tmp_path: Path):
    project, inbox = tmp_path / "p", tmp_path / "inbox"
    project.mkdir()
    inbox.mkdir()
    (project / "profiles.toml").write_text(PROJECT, encoding="utf-8")

    w = Watcher(project, inbox)
    w.wait_for("compute:")  # the catch-up run on start
    write_events(inbox / "a.ndjson", 0, 30)
    w.wait_for("ingest a.ndjson")
    w.wait_for("compute:", 2)
    write_events(inbox / "b.ndjson", 30, 12)
    w.wait_for("compute:", 3)
    out = w.stop()
    assert "stopped (Ctrl-C)" in out and "Traceback" not in out
    assert "30 events" in out and "12 events" in out
    assert "profiles merged" in out  # the second file was an incremental update

    # a file dropped while nothing watches, then a restart: caught up, nothing ingested twice
    write_events(inbox / "c.ndjson", 42, 10)
    (inbox / "notes.txt").write_text("not events", encoding="utf-8")  # ignored
    w = Watcher(project, inbox)
    w.wait_for("ingest c.ndjson")
    w.wait_for("compute:", 2)
    time.sleep(0.6)  # a few more polls: a.ndjson and b.ndjson are known, nothing new
    out = w.stop()
    assert "ingest a.ndjson: 0 events" in out or "ingest a.ndjson" not in out
    assert out.count("ingest c.ndjson") == 1

    watched = values(project / "store.duckdb")
    fresh = tmp_path / "fresh.duckdb"
    with Project.from_file(project / "profiles.toml", store=fresh) as p:
        p.ingest(inbox / "a.ndjson", inbox / "b.ndjson", inbox / "c.ndjson")
        p.resolve()
        p.compute(as_of=AS_OF, full=True)
    assert watched == values(fresh)
    assert sum(row[1] for row in watched) == 52  # every event counted once


def test_watch_stops_after_max_cycles_and_reports(tmp_path: Path):
    project, inbox = tmp_path / "p", tmp_path / "inbox"
    project.mkdir()
    inbox.mkdir()
    (project / "profiles.toml").write_text(PROJECT, encoding="utf-8")
    write_events(inbox / "a.ndjson", 0, 5)
    lines: list[str] = []
    with Project.from_file(project / "profiles.toml") as p:
        report = p.watch(inbox, interval=0.01, as_of=AS_OF, log=lines.append, max_cycles=3)
    assert (report.files, report.events, report.stopped_by) == (1, 5, "cycle limit")
    assert any(line.startswith(("0", "1", "2")) and "compute:" in line for line in lines)

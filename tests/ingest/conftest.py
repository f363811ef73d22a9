"""Shared fixtures for the ingest tests: an in-memory store, a fixed ingest time, case files."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from engine.store import Store
from ingest.load import IngestReport, ingest_paths

CASES = Path(__file__).parent.parent / "cases" / "ingest"
NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)


@pytest.fixture
def store():
    with Store.open(None) as s:
        yield s


def ingest(store: Store, *paths: str | Path, chunk_records: int = 1000) -> IngestReport:
    return ingest_paths(store, [str(p) for p in paths], now=NOW, chunk_records=chunk_records)


def write_lines(path: Path, messages: list[object]) -> Path:
    """NDJSON: dicts are dumped compactly, strings are written as they are."""
    with open(path, "w", encoding="utf-8") as f:
        for m in messages:
            f.write((m if isinstance(m, str) else json.dumps(m, ensure_ascii=False, separators=(",", ":"))) + "\n")
    return path


def rows(store: Store, query: str, params: list[object] | None = None) -> list[tuple]:
    return store.con.execute(query, params or []).fetchall()


def event(store: Store, message_id: str) -> dict:
    frame = store.con.sql("SELECT * FROM events WHERE message_id = ?", params=[message_id]).pl()
    assert frame.height == 1, f"{message_id}: {frame.height} rows"
    return frame.row(0, named=True)


def reasons(store: Store) -> dict[int, str]:
    return dict(rows(store, "SELECT line, reason FROM quarantine ORDER BY line"))

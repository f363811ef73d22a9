"""The big-size data paths of the benchmarks (issue 8), forced at a tiny size.

From ``datasets.BIG`` events on, the incremental benchmark derives its 99% base store from the
shared ingested store instead of ingesting it again, and the identity benchmark's held-back
workers read the shared store itself; here ``BIG`` is lowered so those paths run on 2,000
generated events, and each is checked against the plain path it replaces.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import pytest

from benchmarks import bench_identity, bench_incremental, datasets
from engine.store import Store
from ingest.load import ingest_paths

N = 2_000
#: The events columns that say where a row came from, not what it is.
PROVENANCE = ("ingest_id", "source_line")


@pytest.fixture()
def big(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache directory of its own, with ``N`` events counted as big."""
    monkeypatch.setattr(datasets, "BIG", 1_000)
    monkeypatch.setattr(bench_incremental, "CACHE", tmp_path)
    monkeypatch.setattr(bench_identity, "CACHE", tmp_path)
    return tmp_path


def events(path: Path) -> list[tuple]:
    """The stored events without their provenance, by message id."""
    with duckdb.connect(str(path), read_only=True) as con:
        cols = [r[0] for r in con.execute("DESCRIBE events").fetchall() if r[0] not in PROVENANCE]
        listed = ", ".join(f'"{c}"' for c in cols)
        return con.execute(f"SELECT {listed} FROM events ORDER BY message_id").fetchall()


def message_ids(path: Path, order: str = "message_id") -> list[str]:
    with duckdb.connect(str(path), read_only=True) as con:
        return [r[0] for r in con.execute(f"SELECT message_id FROM events ORDER BY {order}").fetchall()]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def new_file_ids(new: Path, tmp: Path) -> set[str]:
    """The message ids of the new file as the engine derives them (a scratch ingest)."""
    with Store.open(tmp / "scratch.duckdb") as store:
        ingest_paths(store, [new], now=datasets.INGEST_NOW)
        return {r[0] for r in store.con.execute("SELECT message_id FROM events").fetchall()}


def test_split_writes_only_the_new_file_at_big(big: Path) -> None:
    base, new = bench_incremental.split(N, base=False)
    assert base is None and new.exists()
    assert not list(big.glob(f"incr-{N}-base*"))
    source = datasets.existing_ndjson(N, big)
    lines = list(datasets.lines(source))
    cut = len(lines) - len(lines) * 8 // 1000
    expected = [line for i, line in enumerate(lines) if i >= cut or i % 500 == 499]
    assert list(datasets.lines(new)) == expected
    assert 0 < len(expected) < len(lines) // 50


def test_derived_base_holds_the_events_not_in_the_new_file(big: Path) -> None:
    shared = datasets.shared_store(N, big)
    before = digest(shared)
    resolved = bench_incremental.resolved(N)
    assert resolved.name.startswith(f"incr-{N}-resolved-shared-")
    assert digest(shared) == before  # attached read-only, never modified
    new = big / f"incr-{N}-new.ndjson.gz"
    fresh = new_file_ids(new, big)
    stored = message_ids(shared, "rowid")
    assert fresh and fresh <= set(stored)
    # exactly the others, in the shared store's order
    assert message_ids(resolved, "rowid") == [m for m in stored if m not in fresh]
    with duckdb.connect(str(resolved), read_only=True) as con, duckdb.connect(str(shared), read_only=True) as src:
        assert con.execute("SELECT * FROM ingest_log").fetchall() == src.execute("SELECT * FROM ingest_log").fetchall()
        assert con.execute("SELECT count(*) FROM events WHERE id_hash IS NULL").fetchall() == [(0,)]


def test_ingesting_the_new_file_gives_the_shared_events(big: Path) -> None:
    shared = datasets.shared_store(N, big)
    work = big / "work.duckdb"
    shutil.copyfile(bench_incremental.resolved(N), work)
    _, new = bench_incremental.split(N, base=False)
    with Store.open(work) as store:
        report = ingest_paths(store, [new], now=bench_incremental.ingest_now(N))
        assert report.ingested > 0
        # the next ingest took a fresh ingest id, above the copied log's
        assert store.con.execute("SELECT max(ingest_id) FROM ingest_log").fetchall() == [(2,)]
        assert store.con.execute("SELECT DISTINCT ingest_id FROM events ORDER BY 1").fetchall() == [(1,), (2,)]
    assert events(work) == events(shared)


def test_incremental_update_on_the_derived_base_equals_a_full_one(big: Path) -> None:
    base, new = bench_incremental.prepare(N)
    assert "-shared-" in base.name
    out = bench_incremental.work(base, new, slide=False, now=bench_incremental.ingest_now(N))
    assert out["append_agree"] is True
    assert out["resolve"]["mode"] == "incremental"
    assert out["ingest"]["events"] > 0
    assert out["events"] == len(message_ids(datasets.ingested_store(N, big)))
    assert base.exists()  # worked on a copy


def test_copy_events_keeps_stored_order_across_slices(tmp_path: Path) -> None:
    source = tmp_path / "src.duckdb"
    with Store.open(source) as store:
        ingest_paths(store, [datasets.ndjson(300, tmp_path)], now=datasets.INGEST_NOW)
    with Store.open(tmp_path / "copy.duckdb") as store:
        store.con.execute(f"ATTACH '{source}' AS src (READ_ONLY)")
        copied = datasets.copy_events(store.con, "src", where="rowid % 3 <> 0", replace={"ingest_id": "7"}, rows=17)
        got = store.con.execute("SELECT message_id, ingest_id FROM main.events ORDER BY rowid").fetchall()
        want = store.con.execute("SELECT message_id FROM src.events WHERE rowid % 3 <> 0 ORDER BY rowid").fetchall()
    assert copied == len(want) == len(got) > 100
    assert [m for m, _ in got] == [m for (m,) in want]
    assert {i for _, i in got} == {7}


def test_held_back_workers_read_the_shared_store_without_changing_it(big: Path) -> None:
    shared = datasets.shared_store(N, big)
    before = digest(shared)
    scratch = big / "scratch"
    scratch.mkdir()
    out = bench_identity.work_incremental(shared, bench_identity.HELD["append"], scratch)
    assert digest(shared) == before
    assert not list(scratch.iterdir())  # its own store is gone
    assert out["mode"] == "incremental"
    assert out["events"] > 0 and out["base_events"] + out["events"] == len(message_ids(shared))


def test_identity_run_keeps_one_extra_store_at_a_time(big: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The held-back workers get the shared store, and the private copy is gone before them."""
    shared = datasets.shared_store(N, big)
    seen: list[tuple[str, Path, list[Path]]] = []

    def fake(name: str, store_path: Path, sample: int, scratch: Path | None = None) -> dict:
        stores = sorted(p for p in big.rglob("*.duckdb") if p != shared)
        seen.append((name, store_path, stores))
        return {"events": 10, "seconds": 1.0, "cpu_seconds": 1.0, "extraction_seconds": 0.5,
                "extraction_cpu_seconds": 0.5, "oracle_agrees": True}

    monkeypatch.setattr(bench_identity, "_run_worker", fake)
    bench_identity.run(N, oracle_sample=10)
    assert [s[0] for s in seen] == ["profiles", "bare", "oracle", *bench_identity.HELD]
    for name, store_path, stores in seen:
        if name in bench_identity.HELD:
            assert store_path == shared and stores == []
        else:
            assert store_path != shared and stores == [store_path]
    assert not list(big.glob("identity-run-*"))

"""One generated dataset per size, shared by every benchmark, and what the cache keeps.

Why: each benchmark used to generate and store its own copies (``ingest-N.ndjson``,
``incr-N-base.ndjson``, one store per benchmark). At 50M events the NDJSON alone is about 19 GB
and a store about 14-20 GB, so the copies would need about 60 GB of a shared 50 GB disk. Now:

* one NDJSON per size (:func:`ndjson`): ``ingest-N.ndjson`` below :data:`BIG` (the name the 1M
  and 10M caches already have), gzipped ``events-N.ndjson.gz`` from :data:`BIG` on (the ingest
  and DuckDB's ``read_json`` baseline both read ``.gz``; about a fifth of the size);
* one ingested store per size, ``identity-N.duckdb``: the ingest benchmark keeps the store its
  first timed run wrote (:func:`keep_store`) instead of a later benchmark ingesting again; the
  identity benchmark works on a private copy of it, and from :data:`BIG` on the traits benchmark
  takes it over (renames it) instead of copying it (:func:`consume_at_big`);
* the incremental benchmark's 99% / 1% split is streamed line by line (:func:`lines`,
  :func:`writer`), gzipped from :data:`BIG` on, never read into memory whole; from :data:`BIG`
  on only its 1% is written, and its 99% base store is copied out of the ingested store
  (:func:`copy_events`) instead of being ingested again (an hour at 50M);
* stores derived from the ingested store (the identity benchmark's held-back workers, the
  incremental base) are written slice by slice in stored order (:func:`copy_events`), attaching
  the ingested store read-only, so it is never modified and no sort spills the whole table.

What ``python -m benchmarks run`` keeps: below :data:`BIG`, everything it builds (the next run
at that size reuses it). From :data:`BIG` on, only the shared NDJSON and, until the traits
benchmark takes it over, the ingested store: each other benchmark's own files (:data:`OWN`) are
deleted when it is done, since the next one needs the room (at 50M: traits about 21 GB,
predictions about 10 GB, incremental about 20 GB). The runner runs the benchmarks in the order
the data flows (ingest, identity, traits, predictions, incremental).
``python -m benchmarks clean --size 50m`` deletes the stores, splits and Parquet files of one size
and keeps its NDJSON (:func:`leftovers`).
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import duckdb

CACHE = Path(__file__).parent / "cache"

#: From this many events on, the data is gzipped and a store is moved rather than copied (disk,
#: not time, is the limit there).
#: ``BENCH_BIG_EVENTS`` moves the threshold, so the big-size paths can be tried at a small size.
BIG = int(os.environ.get("BENCH_BIG_EVENTS", 20_000_000))


#: The ingest time of the shared store (the event time of a message that carries none), the same
#: whichever benchmark builds it.
INGEST_NOW = datetime(2026, 6, 1, tzinfo=UTC)


def ndjson(n_events: int, cache: Path = CACHE) -> Path:
    """The generated NDJSON of ``n_events`` (seed 0, malformed lines included), written once."""
    found = existing_ndjson(n_events, cache)
    if found is not None:
        return found
    from benchmarks.generate import write_ndjson

    cache.mkdir(parents=True, exist_ok=True)
    path = _names(n_events, cache)[n_events >= BIG]
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    write_ndjson(tmp, n_events, seed=0, gzip=path.suffix == ".gz")
    tmp.rename(path)
    return path


def _names(n_events: int, cache: Path) -> tuple[Path, Path]:
    return cache / f"ingest-{n_events}.ndjson", cache / f"events-{n_events}.ndjson.gz"


def existing_ndjson(n_events: int, cache: Path = CACHE) -> Path | None:
    """The shared NDJSON of ``n_events`` if it was written already (either spelling)."""
    return next((p for p in _names(n_events, cache) if p.exists()), None)


def ingested_store(n_events: int, cache: Path = CACHE) -> Path:
    """Where the shared ingested store of ``n_events`` lives (built by whoever needs it first)."""
    return cache / f"identity-{n_events}.duckdb"


def shared_store(n_events: int, cache: Path = CACHE) -> Path:
    """The shared ingested store of ``n_events``: ingested from :func:`ndjson` at
    :data:`INGEST_NOW` when missing (written under a temporary name, so a crash leaves none)."""
    from engine.store import Store
    from ingest.load import ingest_paths

    path = ingested_store(n_events, cache)
    if not path.exists():
        source = ndjson(n_events, cache)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.duckdb")
        tmp.unlink(missing_ok=True)
        with Store.open(tmp) as store:
            ingest_paths(store, [source], now=INGEST_NOW)
        tmp.rename(path)
    return path


#: Rows per slice of :func:`copy_events`: each slice is sorted on its own, so memory (and spill)
#: is bounded by a slice, not by a 50M-row table.
COPY_ROWS = 1_000_000


def copy_events(
    con: duckdb.DuckDBPyConnection, source: str, *, where: str = "TRUE",
    replace: dict[str, str] | None = None, rows: int = COPY_ROWS,
) -> int:
    """Append the events of the attached database ``source`` that satisfy ``where`` to
    ``main.events`` in their stored order (``ORDER BY rowid``, one slice of ``rows`` row ids at a
    time: the scan skips to a slice by its row ids); returns how many were appended.

    Why stored order: the derived store then holds its events as an ingest of the same lines
    would have written them (not a DELETE from a copy: rows deleted then compacted by a
    checkpoint would move the ones after them). Columns are
    matched by name, ``replace`` maps a column to an SQL expression, and a source written before
    ``events.id_hash`` existed (schema 1, read-only: not migrated) gets it computed.
    """
    from engine.errors import StoreError
    from engine.store import id_hash_sql, quote

    def columns(database: str) -> list[str]:
        return [r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'main' "
            "AND table_name = 'events' ORDER BY column_index", [database]).fetchall()]

    target = con.execute("SELECT current_database()").fetchall()[0][0]
    have, replace = set(columns(source)), replace or {}
    computed = {"id_hash": id_hash_sql("message_id")}
    exprs = []
    for name in columns(target):
        if name in replace:
            exprs.append(f"{replace[name]} AS {quote(name)}")
        elif name in have:
            exprs.append(quote(name))
        elif name in computed:
            exprs.append(f"{computed[name]} AS {quote(name)}")
        else:
            raise StoreError(f"cannot copy events from {source}: it has no column {name!r}")
    before = con.execute("SELECT count(*) FROM main.events").fetchall()[0][0]
    lo, hi = con.execute(f"SELECT min(rowid), max(rowid) FROM {source}.events").fetchall()[0]
    for start in range(lo or 0, (hi if hi is not None else -1) + 1, rows):
        con.execute(
            f"INSERT INTO main.events SELECT {', '.join(exprs)} FROM {source}.events "
            f"WHERE rowid >= {start} AND rowid < {start + rows} AND ({where}) ORDER BY rowid"
        )
    return con.execute("SELECT count(*) FROM main.events").fetchall()[0][0] - before


def keep_store(store: Path, n_events: int, cache: Path = CACHE) -> bool:
    """Keep ``store`` (just written by the ingest benchmark from :func:`ndjson`) as the shared
    ingested store, unless one exists; True when it was kept (moved, so not deleted after)."""
    target = ingested_store(n_events, cache)
    if target.exists() or not store.exists():
        return False
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    shutil.move(store, tmp)
    tmp.rename(target)
    return True


def consume_at_big(source: Path, dest: Path, n_events: int) -> None:
    """``dest`` becomes a copy of ``source``; from :data:`BIG` on, ``source`` itself (renamed),
    since a second copy of a 50M-event store would not fit next to the first."""
    move_or_copy(source, dest, move=n_events >= BIG)


def move_or_copy(source: Path, dest: Path, *, move: bool) -> None:
    """``dest`` becomes ``source`` itself (renamed: ``source`` is gone) or a copy of it."""
    if move:
        source.rename(dest)
    else:
        shutil.copyfile(source, dest)


def leftovers(n_events: int, cache: Path = CACHE) -> list[Path]:
    """The cached files of ``n_events`` besides its NDJSON (and the generator's timing): stores,
    write-ahead logs, splits and Parquet exports, which ``clean`` deletes."""
    keep = {p.name for p in _names(n_events, cache)}
    tag = str(n_events)
    return sorted(
        p for p in cache.glob(f"*-{tag}*")
        if p.name not in keep and not p.name.startswith("generate-") and p.is_file() and (f"-{tag}." in p.name or f"-{tag}-" in p.name)
    )


#: The cached files each benchmark builds for itself (name prefixes, ``{n}`` the event count);
#: the shared NDJSON and ingested store are nobody's own.
OWN = {
    "traits": ("traits-{n}.", "traits-{n}-"),
    "predictions": ("predictions-{n}.", "events-{n}.parquet"),
    "incremental": ("incr-{n}-",),
}


def own_files(benchmark: str, n_events: int, cache: Path = CACHE) -> list[Path]:
    """The cached files ``benchmark`` built for itself at ``n_events`` (see :data:`OWN`)."""
    prefixes = tuple(p.format(n=n_events) for p in OWN.get(benchmark, ()))
    return sorted(p for p in cache.glob("*") if p.is_file() and prefixes and p.name.startswith(prefixes))


def lines(path: Path) -> Iterator[bytes]:
    """The lines of an NDJSON file, gzipped or not, streamed (ends of line kept)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        yield from f


@contextmanager
def writer(path: Path, *, gz: bool) -> Iterator[BinaryIO]:
    """A binary file to write, gzipped with ``gz`` (fast level: written once, read a few times)."""
    if gz:
        with gzip.open(path, "wb", compresslevel=1) as f:
            yield f  # type: ignore[misc]
    else:
        with open(path, "wb") as f:
            yield f

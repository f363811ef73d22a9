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
  :func:`writer`), gzipped from :data:`BIG` on, never read into memory whole.

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

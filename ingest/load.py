"""Ingest files into the store: resolve paths, read, validate, dedupe, commit one file at a time.

Why this shape
--------------
* **Atomic per file.** Each file is one transaction covering its events, its quarantined records,
  its duplicate conflicts and its ``ingest_log`` row; a crash leaves the store as before that
  file, and re-running the same command finishes the job (files already logged are skipped by
  content hash).
* **Streaming.** Readers yield chunks; each chunk is validated by one DuckDB query
  (:func:`ingest.contract.chunk_sql`) and appended to ``events`` straight away, so memory is
  bounded by the chunk, not the file (DuckDB writes large uncommitted appends to the database file).
* **Append only.** Each chunk's duplicates (``message_id`` already stored, by an earlier file or
  an earlier chunk of this file, or repeating an earlier line of the chunk) are found by one
  set-based query and never inserted, and derived columns are computed by the insert itself: a
  DELETE or UPDATE of rows appended in the open transaction makes DuckDB rewrite every appended
  row at commit (measured: it doubled the cost of writing). The first stored occurrence wins.
"""

from __future__ import annotations

import glob
import hashlib
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Group
from rich.table import Table
from rich.text import Text

from engine.errors import InputError
from engine.progress import Progress
from engine.store import DerivedColumn, Store, id_hash, id_hash_sql, quote
from ingest.contract import chunk_sql, derived_message_id, same_payload
from ingest.readers import READERS, Chunk, FileProblem, Source, _int64s, cut_text, detect_format

#: Records per chunk: large enough to amortise a query, small enough to bound memory.
CHUNK_RECORDS = 100_000
#: DuckDB memory cap while ingesting into a store file (bytes). DuckDB keeps the blocks it has
#: written cached up to its limit (80% of RAM by default), so without a cap a 10M-event file
#: would hold gigabytes of already-written pages; above the cap it evicts them (it can: they are
#: on disk). In-memory stores are not capped: their data has nowhere else to go.
INGEST_MEMORY_LIMIT = 1 << 30

#: The columns of ``events`` written by ingest, in the order of the contract query's output.
EVENT_COLUMNS = (
    "message_id", "type", "event", "name", "timestamp", "user_id", "anonymous_id", "previous_id",
    "group_id", "original_timestamp", "sent_at", "received_at", "properties", "traits", "context",
    "payload_hash", "id_hash",
)

STATUSES = ("ingested", "already ingested", "partial", "unreadable", "empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class FileReport:
    """What happened to one file.

    ``status`` is ``ingested`` (read to the end; some records may be quarantined),
    ``already ingested`` (same content hash as a logged file: nothing changed), ``partial``
    (a file-level problem stopped reading; the readable records before it were kept),
    ``unreadable`` (nothing could be read) or ``empty``.
    """

    path: str
    format: str
    status: str
    records: int = 0
    ingested: int = 0
    duplicates: int = 0
    conflicts: int = 0
    quarantined: int = 0
    message: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status not in ("partial", "unreadable")


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestReport:
    """The result of one :func:`ingest_paths` call: one :class:`FileReport` per file, in order."""

    files: tuple[FileReport, ...]
    seconds: float

    @property
    def records(self) -> int:
        return sum(f.records for f in self.files)

    @property
    def ingested(self) -> int:
        return sum(f.ingested for f in self.files)

    @property
    def duplicates(self) -> int:
        return sum(f.duplicates for f in self.files)

    @property
    def conflicts(self) -> int:
        return sum(f.conflicts for f in self.files)

    @property
    def quarantined(self) -> int:
        return sum(f.quarantined for f in self.files)

    @property
    def unreadable(self) -> tuple[FileReport, ...]:
        """Files with a file-level problem (status ``partial`` or ``unreadable``)."""
        return tuple(f for f in self.files if not f.ok)

    def __rich__(self) -> Group:
        table = Table(title=f"Ingested {len(self.files)} file(s) in {self.seconds:.1f} s", title_justify="left")
        table.add_column("file", overflow="fold")
        table.add_column("format")
        for name in ("records", "ingested", "duplicates", "conflicts", "quarantined"):
            table.add_column(name, justify="right")
        table.add_column("status")
        styles = {"partial": "bold red", "unreadable": "bold red", "already ingested": "dim", "empty": "dim"}
        for f in self.files:
            table.add_row(
                f.path, f.format, f"{f.records:,}", f"{f.ingested:,}", f"{f.duplicates:,}",
                f"{f.conflicts:,}", f"{f.quarantined:,}", Text(f.status, style=styles.get(f.status, "green")),
            )
        if len(self.files) > 1:
            table.add_section()
            table.add_row(
                "total", "", f"{self.records:,}", f"{self.ingested:,}", f"{self.duplicates:,}",
                f"{self.conflicts:,}", f"{self.quarantined:,}", "",
            )
        notes: list[Text] = []
        for f in self.files:
            if f.message and f.status != "ingested":
                style = "red" if not f.ok else "dim"
                notes.append(Text(f"{f.path}: {f.message}", style=style))
        if self.quarantined:
            notes.append(Text("see the quarantined records with 'profiles quarantine'", style="dim"))
        return Group(table, *notes)


# -- paths -------------------------------------------------------------------------------------------
_GLOB_CHARS = set("*?[")


def _walk(directory: Path) -> list[Path]:
    """Files under ``directory``, recursively, sorted by path; hidden files and folders skipped."""
    found = []
    for p in directory.rglob("*"):
        rel = p.relative_to(directory).parts
        if any(part.startswith(".") for part in rel):
            continue
        if p.is_file():
            found.append(p)
    return sorted(found)


def resolve_paths(paths: Iterable[str | Path]) -> list[tuple[Path, str, bool]]:
    """Expand files, directories and globs into ``(file, format, compressed)``, checking all first.

    Raises
    ------
    InputError
        A path that does not exist, a glob that matches nothing, or a file with an unknown
        suffix, before anything is ingested.
    """
    files: list[Path] = []
    for item in paths:
        text = str(item)
        if _GLOB_CHARS & set(text) and not Path(text).exists():
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            if not matches:
                raise InputError("no file matches this pattern", path=text)
        else:
            p = Path(text)
            if not p.exists():
                raise InputError("no such file or directory", path=text)
            matches = [p]
        for m in matches:
            files.extend(_walk(m) if m.is_dir() else [m])
    seen: set[Path] = set()
    out = []
    for f in files:
        key = f.resolve()
        if key in seen:
            continue
        seen.add(key)
        fmt, compressed = detect_format(f)
        out.append((f, fmt, compressed))
    return out


def _content_hash(path: Path, stop: threading.Event | None = None) -> str:
    """sha256 of the file; ``stop`` ends a background hash early when the ingest is abandoned
    (an error or Ctrl-C), so leaving the file's thread pool does not wait for a whole file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            if stop is not None and stop.is_set():
                return ""
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def _set_on_error(event: threading.Event) -> Iterator[None]:
    try:
        yield
    except BaseException:
        event.set()
        raise


# -- the message ids already stored ---------------------------------------------------------------
class SeenIds:
    """Hashes (``events.id_hash``) and locations of message ids, in memory: sorted levels of numpy arrays.

    Why: a run must know, for each chunk, which of its ids may be stored already without reading
    the ids themselves. The hashes of the rows a run writes are kept here (16 bytes per row), with
    their location ``(ingest_id, source_line)`` packed in one int64, so a hit is checked exactly
    against the stored row found by a semi-join on those two integer columns. Sorted levels of
    doubling size (like an LSM tree): inserts cost O(log n) amortised, a probe is one
    ``searchsorted`` per level. Rows of a file that is rolled back stay (a false hit costs one
    exact lookup that finds nothing, never a wrong answer).
    """

    #: Location of a row that cannot be found by (ingest_id, source_line): look it up by id.
    UNKNOWN = -1
    _LINE_BITS = 40

    def __init__(self) -> None:
        self._levels: list[tuple[np.ndarray, np.ndarray]] = []

    @classmethod
    def location(cls, ingest_id: np.ndarray, line: np.ndarray) -> np.ndarray:
        """``(ingest_id, source_line)`` packed in one int64, or :data:`UNKNOWN` when they do not fit."""
        fits = (ingest_id >= 0) & (ingest_id < 1 << (63 - cls._LINE_BITS)) & (line >= 0) & (line < 1 << cls._LINE_BITS)
        return np.where(fits, (ingest_id << cls._LINE_BITS) | np.where(fits, line, 0), cls.UNKNOWN)

    def add(self, hashes: np.ndarray, locations: np.ndarray) -> None:
        if not len(hashes):
            return
        order = np.argsort(hashes, kind="stable")
        level = (hashes[order], locations[order])
        while self._levels and len(self._levels[-1][0]) <= 2 * len(level[0]):
            level = _merge(self._levels.pop(), level)
        self._levels.append(level)

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(probe index, location)`` of every stored entry whose hash equals a probed one."""
        found_probe: list[np.ndarray] = []
        found_location: list[np.ndarray] = []
        for keys, locations in self._levels:
            left = np.searchsorted(keys, hashes, "left")
            count = np.searchsorted(keys, hashes, "right") - left
            hit = np.flatnonzero(count)
            if not len(hit):
                continue
            n = count[hit]
            starts = np.repeat(left[hit] - np.cumsum(n) + n, n)
            found_probe.append(np.repeat(hit, n))
            found_location.append(locations[starts + np.arange(int(n.sum()))])
        if not found_probe:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(found_probe), np.concatenate(found_location)


#: Chunks whose hashes are probed in ``events.id_hash`` by SQL before a run loads every stored
#: hash into memory instead. Measured at 10M stored events: a probe of 100k hashes costs 0.13 s
#: of CPU, loading and sorting them all 2.3 s, so a run pays at most about twice the cheaper way.
SCANS_BEFORE_LOAD = 8


class StoredIds:
    """What a run knows of the ids stored before it, and of the ids it wrote: work per chunk, not per store.

    Why: loading the hash and location of every stored id when a run starts cost 1.4 s before a
    10k-event append into a 1M store and 7.9 s into a 10M store (issue 7), and was paid even when
    every file had been ingested already. Now the stored ids are never read up front:

    * the rows the run writes go into :class:`SeenIds` (memory), probed for free by later chunks;
    * the rows stored before the run are probed per chunk with one semi-join of the chunk's hashes
      on ``events.id_hash`` (a scan of one integer column: 0.13 s of CPU at 10M stored events);
    * after :data:`SCANS_BEFORE_LOAD` such scans (a big file into a big store), every stored hash
      is loaded into the :class:`SeenIds` once, as the whole run used to do up front.

    The first file that reads records fills ``id_hash`` where another tool left it NULL, in a
    transaction of its own (so a file rolled back later cannot undo it).
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self.seen = SeenIds()
        self._scan: bool | None = None  # None: not started; True: probe events by SQL; False: all in seen
        self._scans = 0

    def prepare(self) -> None:
        """Before a file's transaction: fill missing ``id_hash`` values once, choose how to probe."""
        if self._scan is not None:
            return
        stored, missing = self._store.first_row("SELECT count(*), count(*) FILTER (WHERE id_hash IS NULL) FROM events")
        if missing:
            with self._store.transaction() as con:
                con.execute(f"UPDATE events SET id_hash = {id_hash_sql('message_id')} WHERE id_hash IS NULL")
        self._scan = bool(stored)

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """``(probe index, location)`` of the known rows whose hash is probed (:meth:`SeenIds.lookup`),
        and whether the rows stored before the run must still be probed in ``events.id_hash``."""
        if self._scan is None:
            raise RuntimeError("StoredIds.prepare() must run before the file's transaction")
        if self._scan:
            self._scans += 1
            if self._scans > SCANS_BEFORE_LOAD:
                self._load()
        probe, location = self.seen.lookup(hashes)
        return probe, location, bool(self._scan)

    def add(self, hashes: np.ndarray, locations: np.ndarray) -> None:
        self.seen.add(hashes, locations)

    def _load(self) -> None:
        """Every stored hash with its location into :attr:`seen` (one scan of three integer columns).

        The run's own rows are read too (they are in ``seen`` already): a repeated entry only
        repeats a lookup, whose rows the duplicate query collapses.
        """
        table = self._store.con.sql(
            "SELECT id_hash AS h, ingest_id, coalesce(source_line, -1) AS line FROM events"
        ).to_arrow_table()
        if table.num_rows:
            self.seen.add(
                _numpy(table.column("h")),
                SeenIds.location(_numpy(table.column("ingest_id")), _numpy(table.column("line"))),
            )
        self._scan = False


def _numpy(column: pa.ChunkedArray) -> np.ndarray:
    """A fixed-width column without nulls as numpy, read from its buffer: ``to_numpy`` imports
    pandas (about a second of CPU per process, see :mod:`ingest.readers`)."""
    array = column.combine_chunks()
    dtype = np.uint64 if pa.types.is_unsigned_integer(array.type) else np.int64
    if array.null_count or array.type.bit_width != 64:
        raise ValueError(f"expected 64-bit integers without nulls, got {array.type} with {array.null_count} null(s)")
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * 8)


def _merge(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Two sorted (keys, values) levels as one, without sorting again."""
    at = np.searchsorted(a[0], b[0], "right") + np.arange(len(b[0]))
    keys = np.empty(len(a[0]) + len(b[0]), a[0].dtype)
    values = np.empty(len(keys), a[1].dtype)
    from_b = np.zeros(len(keys), bool)
    from_b[at] = True
    keys[at], values[at] = b
    keys[~from_b], values[~from_b] = a
    return keys, values


# -- one file ----------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Counts:
    records: int = 0
    quarantined: int = 0
    duplicates: int = 0
    conflicts: int = 0


def _quarantine_chunk(
    store: Store, chunk: Chunk, checked: pa.Table, *, ingest_id: int, source: str, now: datetime, counts: _Counts
) -> None:
    """Read failures and contract failures of one chunk into ``quarantine`` (raw cut at 32 KiB)."""
    con = store.con
    if chunk.failures:
        _ingest_failures = pa.table(  # noqa: F841 (read by DuckDB's replacement scan)
            {
                "line": pa.array([f.line for f in chunk.failures], pa.int64()),
                "raw": pa.array([f.raw for f in chunk.failures], pa.string()),
                "reason": pa.array([f.reason for f in chunk.failures], pa.string()),
            }
        )
        con.execute(
            "INSERT INTO quarantine (ingest_id, source_file, line, raw, reason, quarantined_at) "
            "SELECT ?, ?, line, raw, reason, ? FROM _ingest_failures",
            [ingest_id, source, now],
        )
        counts.quarantined += len(chunk.failures)
        counts.records += len(chunk.failures)
    if checked.column("reasons").null_count == checked.num_rows:
        return
    _ingest_chunk = checked  # noqa: F841
    con.execute(
        "INSERT INTO quarantine (ingest_id, source_file, line, raw, reason, quarantined_at) "
        "SELECT ?, ?, line, raw, reasons, ? FROM _ingest_chunk WHERE reasons IS NOT NULL AND strlen(raw) <= 32768",
        [ingest_id, source, now],
    )
    big = con.execute(
        "SELECT line, raw, reasons FROM _ingest_chunk WHERE reasons IS NOT NULL AND strlen(raw) > 32768"
    ).fetchall()
    if big:
        con.executemany(
            "INSERT INTO quarantine (ingest_id, source_file, line, raw, reason, quarantined_at) VALUES (?, ?, ?, ?, ?, ?)",
            [[ingest_id, source, line, cut_text(raw), reason, now] for line, raw, reason in big],
        )


def _derive_ids(checked: pa.Table) -> pa.Table:
    """Give accepted messages without ``messageId`` their derived id and its ``id_hash``
    (Python only for those rows; the contract query hashed the ids that were sent)."""
    ids = checked.column("message_id").combine_chunks()
    missing = pc.and_(pc.is_null(checked.column("reasons")), pc.is_null(ids)).combine_chunks()
    if not pc.any(missing).as_py():
        return checked
    derived = [derived_message_id(r) for r in pc.filter(checked.column("raw"), missing).to_pylist()]
    hashes = checked.column("id_hash").combine_chunks()
    filled = {
        "message_id": pc.replace_with_mask(ids, missing, pa.array(derived, ids.type)),
        "id_hash": pc.replace_with_mask(hashes, missing, pa.array([id_hash(d) for d in derived], hashes.type)),
    }
    for name, column in filled.items():
        checked = checked.set_column(checked.schema.get_field_index(name), name, column)
    return checked


def _process_chunk(
    store: Store, chunk: Chunk, *, ingest_id: int, source: str, now: datetime, counts: _Counts,
    derived: tuple[DerivedColumn, ...], ids: StoredIds,
) -> None:
    """Validate one chunk, quarantine its failures, drop its duplicates, append the rest to ``events``.

    Arrow data reaches DuckDB through replacement scans of local variables, never through
    ``register``: a view registered (even unregistered) inside the file's transaction, like a
    temporary table replaced in it, is kept alive until commit, so memory would grow with the file.
    Rows are only ever appended inside the transaction (duplicates are never inserted, derived
    columns are computed by the insert): a DELETE or UPDATE of uncommitted rows makes DuckDB
    rewrite every appended row at commit, which doubled the cost of writing.
    """
    con = store.con
    _ingest_in = chunk.table()  # noqa: F841 (read by DuckDB's replacement scan)
    checked = con.sql(chunk_sql("_ingest_in", now)).to_arrow_table()
    del _ingest_in
    counts.records += checked.num_rows
    counts.quarantined += checked.num_rows - checked.column("reasons").null_count
    checked = _derive_ids(checked)
    _quarantine_chunk(store, chunk, checked, ingest_id=ingest_id, source=source, now=now, counts=counts)
    duplicate_lines = _duplicates(store, checked, ids, ingest_id=ingest_id, source=source, counts=counts)
    _ingest_chunk = _as_json(checked, _JSON_COLUMNS)  # noqa: F841
    _ingest_dups = duplicate_lines  # noqa: F841
    skip = " ANTI JOIN _ingest_dups d ON d.line = c.line" if duplicate_lines.num_rows else ""
    cols = ", ".join(INSERT_COLUMNS + tuple(quote(d.name) for d in derived))
    values = ", ".join(INSERT_COLUMNS + tuple(d.expression for d in derived))
    con.execute(
        f"INSERT INTO events ({cols}) SELECT {values} FROM ("
        f"SELECT {_TYPED_ROW} FROM _ingest_chunk c{skip} WHERE c.reasons IS NULL ORDER BY c.line)",
        [ingest_id],
    )


#: The columns the insert writes, and the chunk's rows typed as ``events`` columns: derived column
#: expressions are written against ``events`` and so read the same names and types here.
INSERT_COLUMNS = EVENT_COLUMNS + ("raw", "ingest_id", "source_line")
_JSON_COLUMNS = ("properties", "traits", "context", "raw")
_TYPED_ROW = ", ".join(
    [f"CAST(c.{c} AS JSON) AS {c}" if c in _JSON_COLUMNS else f"c.{c}" for c in EVENT_COLUMNS + ("raw",)]
    + ["CAST(? AS BIGINT) AS ingest_id", "c.line AS source_line"]
)


def _as_json(table: pa.Table, names: tuple[str, ...]) -> pa.Table:
    """Mark text columns as Arrow's JSON extension type, which DuckDB reads as ``JSON`` as is.

    Inserting plain text into a ``JSON`` column parses every value again to validate it (about
    a tenth of the insert's CPU); these texts are valid already: ``raw`` passed ``json_valid``
    in the contract query and the objects were written by DuckDB's JSON functions.
    """
    for name in names:
        i = table.schema.get_field_index(name)
        column = table.column(i)
        json_type = pa.json_(column.type)
        chunks = [pa.ExtensionArray.from_storage(json_type, c) for c in column.chunks]
        table = table.set_column(i, pa.field(name, json_type), pa.chunked_array(chunks, json_type))
    return table


def _duplicates(store: Store, checked: pa.Table, ids: StoredIds, *, ingest_id: int, source: str, counts: _Counts) -> pa.Table:
    """This chunk's accepted rows whose message_id is stored already or repeats an earlier line.

    Returns their lines (the insert skips them) and counts them. ``events`` already holds the
    earlier chunks of this file, so "stored" covers earlier files and earlier lines of this file
    alike; within the chunk the first line wins. Candidates come from the hashes (``id_hash``):
    the run's own rows by their location in memory, the rows stored before the run by a semi-join
    on ``events.id_hash`` (:class:`StoredIds`); the chunk's hashes are then added. A candidate is
    a duplicate only when its ``message_id`` is equal (hash collisions never drop a row). A
    duplicate is a conflict when its payload differs from the occurrence that wins: hashes are of
    the minified text, so a candidate is confirmed on canonical JSON (key order ignored).
    """
    con = store.con
    _ingest_chunk = checked  # noqa: F841
    accepted = con.sql("SELECT line, id_hash AS h FROM _ingest_chunk WHERE reasons IS NULL").to_arrow_table()
    hashes = _numpy(accepted.column("h"))
    probe, location, scan = ids.lookup(hashes)
    lines = _numpy(accepted.column("line"))
    ids.add(hashes, SeenIds.location(np.full(len(lines), ingest_id, np.int64), lines))
    known = location != SeenIds.UNKNOWN
    placed = location[known]
    _ingest_at = pa.table({  # noqa: F841 (stored rows at these locations may hold the chunk's ids)
        "ingest_id": _int64s(np.ascontiguousarray(placed >> SeenIds._LINE_BITS)),
        "source_line": _int64s(np.ascontiguousarray(placed & ((1 << SeenIds._LINE_BITS) - 1))),
    })
    unplaced = np.unique(np.ascontiguousarray(probe[~known], np.int64))
    _ingest_unplaced = accepted.take(_int64s(unplaced)).select(["h"])  # noqa: F841 (rows stored without a line)
    _ingest_hashes = accepted.select(["h"])  # noqa: F841
    parts = []
    if known.any():
        parts.append("SELECT e.rowid AS rid FROM events e SEMI JOIN _ingest_at a USING (ingest_id, source_line)")
    if len(unplaced):
        parts.append("SELECT e.rowid AS rid FROM events e SEMI JOIN _ingest_unplaced u ON e.id_hash = u.h")
    if scan and accepted.num_rows:
        parts.append("SELECT e.rowid AS rid FROM events e SEMI JOIN _ingest_hashes p ON e.id_hash = p.h")
    # two steps: find the rows on integer columns only, then read their strings by rowid (a
    # semi-join that also projects strings reads those columns for every row of the table)
    _ingest_rids = con.sql(" UNION ".join(parts) if parts else "SELECT NULL::BIGINT AS rid WHERE false").to_arrow_table()  # noqa: F841
    stored = "SELECT rowid AS rid, message_id, payload_hash FROM events WHERE rowid IN (SELECT rid FROM _ingest_rids)"
    dups = con.sql(
        f"""
        WITH ok AS (
            SELECT line, message_id, payload_hash FROM _ingest_chunk WHERE reasons IS NULL
        ), stored AS (
            SELECT s.* FROM ({stored}) s SEMI JOIN ok ON s.message_id = ok.message_id
        ), firsts AS (
            SELECT message_id, min(line) AS first_line, arg_min(payload_hash, line) AS first_hash
            FROM ok GROUP BY message_id HAVING count(*) > 1
        )
        SELECT ok.line, ok.message_id, ok.payload_hash, s.rid AS stored_rid,
            CASE WHEN s.rid IS NULL THEN f.first_line END AS first_line,
            coalesce(s.payload_hash, f.first_hash) AS ref_hash
        FROM ok LEFT JOIN stored s ON s.message_id = ok.message_id LEFT JOIN firsts f ON f.message_id = ok.message_id
        WHERE s.rid IS NOT NULL OR ok.line > f.first_line
        ORDER BY ok.line
        """
    ).to_arrow_table()
    counts.duplicates += dups.num_rows
    candidates = dups.filter(pc.not_equal(dups.column("payload_hash"), dups.column("ref_hash")))
    if candidates.num_rows:
        _conflicts(store, checked, candidates, ingest_id=ingest_id, source=source, counts=counts)
    return dups.select(["line"])


def _conflicts(
    store: Store, checked: pa.Table, candidates: pa.Table, *, ingest_id: int, source: str, counts: _Counts
) -> None:
    """Record the candidates (duplicates with another hash) whose canonical payload differs.

    Stored texts are fetched by rowid only for these rows (rare: reading ``raw`` costs a scan).
    """
    con = store.con
    _ingest_chunk = checked  # noqa: F841
    _ingest_candidates = candidates  # noqa: F841
    # the stored texts first, on their own: DuckDB reads only those rows for a rowid IN list, but
    # inside the join below it read the whole raw column (zstd) of events for every chunk
    _ingest_refs = con.sql(  # noqa: F841
        "SELECT rowid AS rid, raw FROM events WHERE rowid IN (SELECT stored_rid FROM _ingest_candidates)"
    ).to_arrow_table()
    found = con.execute(
        """
        SELECT d.line, d.message_id, d.payload_hash, mine.raw, coalesce(ref.raw, first.raw)
        FROM _ingest_candidates d
        JOIN _ingest_chunk mine ON mine.line = d.line
        LEFT JOIN _ingest_chunk first ON first.line = d.first_line
        LEFT JOIN _ingest_refs ref ON ref.rid = d.stored_rid
        ORDER BY d.line
        """
    ).fetchall()
    rows = [
        [message_id, ingest_id, source, line, payload_hash]
        for line, message_id, payload_hash, raw, ref_raw in found
        if not same_payload(raw, ref_raw)
    ]
    if rows:
        # one statement with list parameters: executemany costs about a millisecond per row in
        # DuckDB, and pa.array of Python objects imports pandas (a second of CPU)
        con.execute(
            "INSERT INTO duplicate_conflicts (message_id, ingest_id, source_file, line, payload_hash) "
            "SELECT unnest(?::VARCHAR[]), ?, ?, unnest(?::BIGINT[]), unnest(?::VARCHAR[])",
            [[r[0] for r in rows], ingest_id, source, [r[3] for r in rows], [r[4] for r in rows]],
        )
    counts.conflicts += len(rows)


def _size_logged(store: Store, size: int) -> bool:
    """Whether a logged file has ``size`` bytes: only then can this one be one already ingested."""
    return store.first_row("SELECT 1 FROM ingest_log WHERE size_bytes = ? LIMIT 1", [size]) is not None


def _already(store: Store, content_hash: str) -> str | None:
    rows = store.con.execute(
        "SELECT path, status, message, finished_at FROM ingest_log WHERE content_hash = ? ORDER BY ingest_id LIMIT 1",
        [content_hash],
    ).fetchall()
    if not rows:
        return None
    path, status, message, finished = rows[0]
    when = finished.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if finished else "earlier"
    text = f"same content as {path}, ingested {when} (status {status})"
    if status in ("partial", "unreadable") and message:
        text += f": {message}"
    return text


def _log(
    con: duckdb.DuckDBPyConnection, *, ingest_id: int, path: str, fmt: str, compressed: bool, size: int,
    content_hash: str, counts: _Counts, ingested: int, quarantined: int, status: str, message: str,
    started_at: datetime,
) -> None:
    """The file's ``ingest_log`` row (in its transaction, so the file is logged only if committed)."""
    con.execute(
        "INSERT INTO ingest_log (ingest_id, path, format, size_bytes, content_hash, records, ingested, "
        "duplicates, conflicts, quarantined, status, message, started_at, finished_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ingest_id, path, fmt + (".gz" if compressed else ""), size, content_hash, counts.records, ingested,
            counts.duplicates, counts.conflicts, quarantined, status, message or None, started_at,
            datetime.now(timezone.utc),
        ],
    )


def ingest_file(
    store: Store,
    path: Path,
    *,
    fmt: str,
    compressed: bool,
    progress: Progress,
    now: datetime,
    chunk_records: int = CHUNK_RECORDS,
    ids: StoredIds | None = None,
) -> FileReport:
    """Ingest one file in one transaction (see the module docstring); returns its report.

    ``now`` is the run's ingest time (the event time of messages without one); the log's
    ``started_at`` / ``finished_at`` are this file's own wall-clock times. ``ids`` is what the
    run knows of the stored message ids (:class:`StoredIds`, new when not given): a run passes
    one to all its files, so each file's rows are known to the next without a query.
    """
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc)
    shown = str(path)
    size = path.stat().st_size
    # only a logged file of this size can have this content: otherwise hash while reading
    # (hashlib releases the GIL) instead of reading the whole file once more before starting
    known = _content_hash(path) if size == 0 or _size_logged(store, size) else None
    if known is not None:
        previous = _already(store, known)
        if previous is not None:
            return FileReport(
                path=shown, format=fmt, status="already ingested", message=previous,
                seconds=time.perf_counter() - started,
            )
    if size == 0:
        # logged like any file (no reader: an empty .json, .parquet or .gz is not one of those)
        message = "the file is empty"
        with store.transaction() as con:
            ingest_id = con.execute("SELECT coalesce(max(ingest_id), 0) + 1 FROM ingest_log").fetchall()[0][0]
            _log(con, ingest_id=ingest_id, path=shown, fmt=fmt, compressed=compressed, size=0, content_hash=known,
                 counts=_Counts(), ingested=0, quarantined=0, status="empty", message=message, started_at=started_at)
        return FileReport(path=shown, format=fmt, status="empty", message=message, seconds=time.perf_counter() - started)
    ids = StoredIds(store) if ids is None else ids
    ids.prepare()
    counts = _Counts()
    problem: FileProblem | None = None
    abandon = threading.Event()
    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        _set_on_error(abandon),  # left before the pool, which waits for the hash to return
        progress.step(f"Ingesting {path.name}", total=size) as step,
        store.transaction() as con,
    ):
        hashing: Future[str] | None = None if known is not None else pool.submit(_content_hash, path, abandon)
        ingest_id = con.execute("SELECT coalesce(max(ingest_id), 0) + 1 FROM ingest_log").fetchall()[0][0]
        source = Source(path=path, format=fmt, compressed=compressed, on_bytes=step.advance)
        derived = tuple(store.derived_columns())
        try:
            for chunk in READERS[fmt](source, chunk_records):
                _process_chunk(
                    store, chunk, ingest_id=ingest_id, source=shown, now=now, counts=counts, derived=derived,
                    ids=ids,
                )
        except FileProblem as exc:
            problem = exc
            con.execute(
                "INSERT INTO quarantine (ingest_id, source_file, line, raw, reason, quarantined_at) VALUES (?, ?, ?, ?, ?, ?)",
                [ingest_id, shown, exc.line, cut_text(exc.raw), f"file: {exc.reason}", now],
            )
        duplicates, conflicts = counts.duplicates, counts.conflicts
        ingested = counts.records - counts.quarantined - duplicates
        quarantined = counts.quarantined + (problem is not None)
        if problem is not None:
            status = "partial" if counts.records else "unreadable"
            where = f" at line {problem.line}" if problem.line else ""
            message = f"{problem.reason}{where}"
            if status == "partial":
                message += f"; the {counts.records:,} record(s) before it were read"
        elif counts.records == 0:
            status, message = "empty", "no records in the file"
        else:
            status, message = "ingested", ""
        _log(con, ingest_id=ingest_id, path=shown, fmt=fmt, compressed=compressed, size=size,
             content_hash=known if hashing is None else hashing.result(), counts=counts, ingested=ingested,
             quarantined=quarantined, status=status, message=message, started_at=started_at)
    return FileReport(
        path=shown, format=fmt, status=status, records=counts.records, ingested=ingested,
        duplicates=duplicates, conflicts=conflicts, quarantined=quarantined, message=message,
        seconds=time.perf_counter() - started,
    )


def ingest_paths(
    store: Store,
    paths: Iterable[str | Path],
    *,
    progress: Progress | None = None,
    now: datetime | None = None,
    chunk_records: int = CHUNK_RECORDS,
) -> IngestReport:
    """Ingest files, directories (recursive, sorted) and globs, one transaction per file.

    Parameters
    ----------
    store
        The open store.
    paths
        Files, directories and glob patterns, ingested in the order given.
    progress
        Progress reporting (silent by default).
    now
        The ingest wall-clock time (default: now; a naive datetime is UTC); tests pass it for
        determinism.
    chunk_records
        Records per validation chunk (memory bound).

    Raises
    ------
    InputError
        A missing path, a glob matching nothing or an unknown suffix, before anything is ingested.
    """
    started = time.perf_counter()
    progress = progress or Progress()
    now = now or datetime.now(timezone.utc)
    now = now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(timezone.utc)
    files = resolve_paths(paths)
    with _memory_capped(store):
        ids = StoredIds(store)
        reports = [
            ingest_file(
                store, path, fmt=fmt, compressed=compressed, progress=progress, now=now,
                chunk_records=chunk_records, ids=ids,
            )
            for path, fmt, compressed in files
        ]
    return IngestReport(files=tuple(reports), seconds=time.perf_counter() - started)


@contextmanager
def _memory_capped(store: Store) -> Iterator[None]:
    """Lower DuckDB's memory limit to :data:`INGEST_MEMORY_LIMIT` for a file store, then restore it."""
    if store.path is None:
        yield
        return
    limit = store.con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    if _bytes(limit) <= INGEST_MEMORY_LIMIT:
        yield
        return
    store.con.execute(f"SET memory_limit = '{INGEST_MEMORY_LIMIT // 2**20}MiB'")
    try:
        yield
    finally:
        # the shown value is rounded: RESET restores an untouched default exactly
        default = limit == _default_limit()
        store.con.execute("RESET memory_limit" if default else f"SET memory_limit = '{limit}'")


def _default_limit() -> str:
    with duckdb.connect() as fresh:
        return fresh.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]


_UNITS = {"": 1, "b": 1, "bytes": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def _bytes(text: str) -> float:
    """``'18.6 GiB'`` -> bytes (DuckDB's way of showing a memory setting)."""
    number, _, unit = str(text).strip().partition(" ")
    return float(number) * _UNITS.get(unit.strip().lower(), 1)


def quarantine_frame(store: Store, limit: int | None = None) -> pl.DataFrame:
    """The quarantined records, oldest ingest first: ``file``, ``line``, ``reason``, ``raw``."""
    query = (
        "SELECT source_file AS file, line, reason, raw FROM quarantine "
        "ORDER BY ingest_id, line NULLS FIRST, reason"
    )
    params: list[object] = []
    if limit is not None:
        query += " LIMIT ?"
        params.append(int(limit))
    return store.con.sql(query, params=params).pl()

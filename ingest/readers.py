"""One reader per input format: a file -> chunks of ``(line, text)`` records plus read failures.

Every reader yields :class:`Chunk` objects: Arrow arrays of record numbers and of each record as
JSON text, ready for the vectorised contract query (:func:`ingest.contract.chunk_sql`), plus the
records that could not even become text (:class:`ReadFailure`, e.g. invalid UTF-8). A problem
with the file itself (truncated gzip, not the format its name says) is raised as
:class:`FileProblem` *after* the readable chunks were yielded, so the caller keeps them.

Readers do no I/O on the database; only :mod:`ingest.load` does.
"""

from __future__ import annotations

import codecs
import functools
import gzip
import json
import math
import re
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO, Any
from uuid import UUID, uuid4

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import InputError
from ingest.contract import MAX_DEPTH, MAX_MESSAGE_BYTES

#: Assumed mean record size, to turn a chunk size in records into an NDJSON block size in bytes.
_BYTES_PER_RECORD = 320
#: Rows per Arrow record batch handed to DuckDB (its unit of parallel scanning).
_SCAN_BATCH = 8192
#: Bytes per read from a (possibly compressed) stream.
_PIECE = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadFailure:
    """A record that could not be read as text; it goes straight to the quarantine."""

    line: int
    raw: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Chunk:
    """A batch of records: ``lines`` (int64) and ``texts`` (one JSON message each) of equal length."""

    lines: pa.Array
    texts: pa.Array
    failures: tuple[ReadFailure, ...] = ()

    def table(self) -> pa.Table:
        """As an Arrow table in small record batches, so DuckDB scans it on every core."""
        table = pa.table({"line": self.lines, "text": self.texts})
        return pa.Table.from_batches(table.to_batches(max_chunksize=_SCAN_BATCH), schema=table.schema)


class FileProblem(Exception):
    """The file itself is damaged or not what its name says; ``line`` is where reading stopped."""

    def __init__(self, reason: str, *, line: int | None = None, raw: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.raw = raw


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """A file to read, with its format and a callback told how many file bytes were consumed."""

    path: Path
    format: str
    compressed: bool
    on_bytes: Callable[[int], None] = field(default=lambda n: None)


# -- formats ---------------------------------------------------------------------------------------
_SUFFIXES = {".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".avro": "avro"}


def detect_format(path: Path) -> tuple[str, bool]:
    """``(format, gzip-compressed)`` from the file name; an unknown suffix is an :class:`InputError`."""
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    if compressed:
        suffixes = suffixes[:-1]
    fmt = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        known = ", ".join(sorted(set(_SUFFIXES))) + " (each optionally .gz)"
        raise InputError(f"unknown file type (suffix '{''.join(path.suffixes) or 'none'}'); expected one of {known}", path=path)
    return fmt, compressed


class _Counting:
    """A read-only binary stream that reports the bytes it hands out (for progress bars)."""

    def __init__(self, raw: IO[bytes], on_bytes: Callable[[int], None]) -> None:
        self._raw, self._on_bytes = raw, on_bytes

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._on_bytes(len(data))
        return data

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        self._raw.close()


@contextmanager
def open_binary(src: Source) -> Iterator[IO[bytes]]:
    """The decompressed byte stream of ``src``; a ``.gz`` file that is not gzip is a FileProblem."""
    with open(src.path, "rb") as raw:
        if src.compressed:
            magic = raw.read(2)
            raw.seek(0)
            if magic != b"\x1f\x8b":
                raise FileProblem("not gzip-compressed although its name ends in .gz", line=0)
            counting = _Counting(raw, src.on_bytes)
            with gzip.GzipFile(fileobj=counting, mode="rb") as gz:  # type: ignore[arg-type]
                yield gz
        else:
            yield _Counting(raw, src.on_bytes)  # type: ignore[misc]


#: Byte-order marks of the Unicode encodings other than UTF-8 (UTF-32 first: its LE mark starts like UTF-16's).
_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def _undecodable(exc: UnicodeError) -> tuple[str, int]:
    """Error handler: a byte sequence that is not text in the file's encoding becomes byte 0xFF.

    Re-encoded with ``surrogateescape``, the record holding it is then invalid UTF-8 and is
    quarantined by that name, as in a UTF-8 file: never silently replaced.
    """
    assert isinstance(exc, UnicodeDecodeError)
    return "\udcff" * (exc.end - exc.start), exc.end


codecs.register_error("profiles-undecodable", _undecodable)


class _AsUtf8:
    """The text of ``stream`` (in ``encoding``, its byte-order mark already consumed) as UTF-8 bytes."""

    def __init__(self, stream: IO[bytes], encoding: str) -> None:
        self._read = getattr(stream, "read1", stream.read)
        self._decoder = codecs.getincrementaldecoder(encoding)("profiles-undecodable")
        self._ready = b""
        self._ended = False
        self.closed = False

    def read(self, n: int | None = -1) -> bytes:
        want = -1 if n is None else n
        while not self._ended and (want < 0 or len(self._ready) < want):
            data = self._read(_PIECE)
            self._ended = not data
            self._ready += self._decoder.decode(data, final=self._ended).encode("utf-8", "surrogateescape")
        if want < 0:
            out, self._ready = self._ready, b""
        else:
            out, self._ready = self._ready[:want], self._ready[want:]
        return out

    read1 = read

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


@contextmanager
def open_text(src: Source) -> Iterator[IO[bytes]]:
    """The file's text as UTF-8 bytes: a UTF-16 or UTF-32 file (told by its byte-order mark) is
    transcoded while it is read, so a spreadsheet's "Unicode" export reads as its UTF-8 twin."""
    with open_binary(src) as stream:
        try:
            head = stream.read(4)
        except _STREAM_ERRORS as exc:
            yield _Broken(exc)  # type: ignore[misc]  # the reader reports it as for any stream error
            return
        for bom, encoding in _BOMS:
            if head.startswith(bom):
                yield _AsUtf8(_Prefixed(head[len(bom) :], stream), encoding)  # type: ignore[arg-type]
                return
        yield _Prefixed(head, stream)  # type: ignore[misc]


class _Broken:
    """A stream whose first read raises the error met while peeking at its start."""

    def __init__(self, error: BaseException) -> None:
        self._error = error
        self.closed = False

    def read(self, n: int | None = -1) -> bytes:
        raise self._error

    read1 = read

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


_STREAM_ERRORS = (EOFError, OSError, zlib.error)


def _stream_problem(exc: BaseException, *, compressed: bool = True) -> str:
    if isinstance(exc, EOFError):
        return f"the {'gzip stream' if compressed else 'file'} ends early (truncated file)"
    return f"cannot decompress: {exc}" if compressed else f"cannot read: {exc}"


# -- NDJSON ---------------------------------------------------------------------------------------
def _one_binary(data: bytes) -> pa.Array:
    """``data`` as a one-element Arrow binary array, zero-copy.

    Built from buffers rather than with ``pa.array``: converting any Python object makes pyarrow
    import pandas, about a second of CPU per process.
    """
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    return pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)])


def _int64s(values: np.ndarray) -> pa.Array:
    """An int64 numpy array as Arrow, zero-copy and without ``pa.array`` (see :func:`_one_binary`)."""
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def _ndjson_chunk(data: bytes, first_line: int, *, strip_bom: bool) -> Chunk:
    """Split a block of whole lines in Arrow (no Python string per line); the UTF-8 check is the
    cast. Only a block holding invalid UTF-8 is decoded line by line, to name the bad lines."""
    if strip_bom and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    pieces = pc.split_pattern(_one_binary(data), pattern=b"\n").flatten()
    numbers = _int64s(np.arange(first_line, first_line + len(pieces), dtype=np.int64))
    try:
        return Chunk(lines=numbers, texts=pieces.cast(pa.large_string()))
    except pa.ArrowInvalid:
        pass
    failures: list[ReadFailure] = []
    lines: list[str] = []
    for i, raw in enumerate(data.split(b"\n")):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            lines.append("")
            failures.append(
                ReadFailure(
                    line=first_line + i,
                    raw=cut_text(raw.decode("utf-8", "replace")),
                    reason=f"invalid UTF-8 (byte {exc.start + 1} of the line)",
                )
            )
    return Chunk(lines=numbers, texts=pa.array(lines, type=pa.large_string()), failures=tuple(failures))


def read_ndjson(src: Source, chunk_records: int) -> Iterator[Chunk]:
    """NDJSON / JSON Lines: line numbers are 1-based; blank lines are skipped (not records).

    Reads in small pieces so that a truncated gzip stream loses only its unreadable tail: the
    whole lines before the break are yielded, then :class:`FileProblem` names the line it hit.
    """
    block_size = max(1, chunk_records * _BYTES_PER_RECORD)
    with open_text(src) as stream:
        read = getattr(stream, "read1", stream.read)
        parts: list[bytes] = []  # bytes after the last newline handed out, then new pieces
        pending = 0
        next_line = 1
        problem: FileProblem | None = None
        while True:
            try:
                piece = read(min(_PIECE, block_size))
            except _STREAM_ERRORS as exc:
                problem = FileProblem(_stream_problem(exc))
                piece = b""
            if piece:
                parts.append(piece)
                pending += len(piece)
                if pending < block_size:
                    continue
            data = b"".join(parts)
            cut = data.rfind(b"\n") if piece else (len(data) if problem is None else data.rfind(b"\n"))
            if cut >= 0:
                chunk = _ndjson_chunk(data[:cut], next_line, strip_bom=next_line == 1)
                next_line += len(chunk.lines)
                yield chunk
                rest = data[cut + 1 :]
            else:
                rest = data
            parts, pending = ([rest], len(rest)) if rest else ([], 0)
            if not piece:
                break
        if problem is not None:
            raise FileProblem(problem.reason, line=next_line, raw=cut_text(b"".join(parts).decode("utf-8", "replace")))


# -- JSON document ---------------------------------------------------------------------------------
def _merge_under(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: ``own`` wins; objects present in both are merged key by key."""
    merged = dict(base)
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_under(merged[key], value)
        else:
            merged[key] = value
    return merged


#: Batch-level fields merged under each message of a Segment batch envelope.
BATCH_MERGED = ("context", "integrations")
#: Batch-level fields a message without its own inherits as they are: Segment's HTTP API sends
#: ``sentAt`` once per batch, and the clock-skew correction needs it on each message.
BATCH_INHERITED = ("sentAt",)


def _json_records(doc: Any) -> list[Any]:
    if isinstance(doc, dict) and isinstance(doc.get("batch"), list):
        shared = {}
        for key in BATCH_MERGED:
            if key in doc and doc[key] is not None:
                if not isinstance(doc[key], dict):
                    raise FileProblem(f"the batch-level '{key}' is not an object", line=0)
                shared[key] = doc[key]
        inherited = {k: doc[k] for k in BATCH_INHERITED if doc.get(k) is not None}
        out = []
        for msg in doc["batch"]:
            if isinstance(msg, dict):
                msg = {**msg, **{k: v for k, v in inherited.items() if msg.get(k) is None}}
                for key, value in shared.items():
                    own = msg.get(key)
                    if own is None:
                        msg = {**msg, key: value}
                    elif isinstance(own, dict):
                        msg = {**msg, key: _merge_under(value, own)}
            out.append(msg)
        return out
    if isinstance(doc, list):
        return doc
    return [doc]


class _NumberText:
    """A JSON number kept as its text: beyond a double's range (``1e400``), or an exact decimal.

    RFC 8259 allows ``1e400`` and DuckDB reads it as sent (an NDJSON line keeps it); Python's
    ``float`` would make it ``inf``, written back as ``Infinity``, which is not JSON and would be
    quarantined. So a ``.json`` document keeps the number's text, as NDJSON does; an Avro decimal
    is written as its exact digits, not through a double.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_float(text: str) -> float | _NumberText:
    value = float(text)
    return value if math.isfinite(value) else _NumberText(text)


def _loads(text: str) -> Any:
    """``json.loads`` keeping numbers beyond a double's range as sent (:class:`_NumberText`)."""
    return json.loads(text, parse_float=_parse_float)


#: Marks a string that is a JSON number's text (a :class:`_NumberText`; in tabular files an exact
#: decimal, NaN, Infinity) until the record's JSON is built, which then loses the quotes around
#: it (:data:`_NUMBER_TEXT_MEMBER`). Random, so no real value holds it.
_NUMBER_TEXT = "~" + uuid4().hex + "~"
_NUMBER_TEXT_MEMBER = f'"{_NUMBER_TEXT}([^"\\\\]*)"'


def _dumps(record: Any, default: Callable[[Any], Any] | None = None) -> str:
    """A record as minified JSON, each :class:`_NumberText` written as its text.

    ``default`` turns other values JSON cannot hold into ones it can (as ``json.dumps``'s).
    """
    marked = False

    def placeholder(value: Any) -> Any:
        nonlocal marked
        if not isinstance(value, _NumberText):
            if default is None:
                raise TypeError(f"{type(value).__name__} is not JSON serializable")
            return default(value)
        marked = True
        return _NUMBER_TEXT + value.text

    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=placeholder)
    return re.sub(_NUMBER_TEXT_MEMBER, r"\1", text) if marked else text


#: A UTF-16 surrogate code point: never text of its own (not encodable as UTF-8).
_SURROGATE = re.compile("[\ud800-\udfff]")


def _from_a_byte(char: str, undecoded: bool) -> bool:
    """Whether a surrogate in parsed text stands for an invalid UTF-8 byte (``surrogateescape``)."""
    return undecoded and "\udc80" <= char <= "\udcff"


def _to_text(record: Any, line: int, *, undecoded: bool = False) -> str | ReadFailure:
    """``record`` as JSON text, or why it cannot be stored.

    ``undecoded``: the document held invalid UTF-8, kept as ``surrogateescape`` surrogates. Any
    other surrogate came from a lone escape (``"\\ud800"``), which NDJSON quarantines as invalid
    JSON (DuckDB's parser rejects it): so does this reader, with the escape shown as sent.
    """
    if isinstance(record, _TooDeep):
        return ReadFailure(line=line, raw=cut_text(record.text), reason=f"message is nested over {MAX_DEPTH} levels deep")
    text = _dumps(record)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        shown = _SURROGATE.sub(lambda m: "\ufffd" if _from_a_byte(m[0], undecoded) else f"\\u{ord(m[0]):04x}", text)
        reason = f"invalid UTF-8 (character {exc.start + 1} of the record)" if _from_a_byte(text[exc.start], undecoded) else "invalid JSON"
        return ReadFailure(line=line, raw=cut_text(shown), reason=reason)
    return text


def _records_to_chunks(records: Iterator[tuple[int, Any]], chunk_records: int, to_text: Callable[[Any, int], str | ReadFailure]) -> Iterator[Chunk]:
    lines: list[int] = []
    texts: list[str] = []
    failures: list[ReadFailure] = []
    for line, record in records:
        text = to_text(record, line)
        if isinstance(text, ReadFailure):
            failures.append(text)
        else:
            lines.append(line)
            texts.append(text)
        if len(lines) + len(failures) >= chunk_records:
            yield Chunk(lines=pa.array(lines, pa.int64()), texts=pa.array(texts, pa.large_string()), failures=tuple(failures))
            lines, texts, failures = [], [], []
    if lines or failures:
        yield Chunk(lines=pa.array(lines, pa.int64()), texts=pa.array(texts, pa.large_string()), failures=tuple(failures))


def read_json(src: Source, chunk_records: int) -> Iterator[Chunk]:
    """A JSON document: one message, an array, or a Segment batch; ``line`` is the 1-based record index.

    The document is parsed whole (``json.load``), so very large exports belong in NDJSON.
    Invalid UTF-8 is kept through the parse (``surrogateescape``) so only the records holding it
    are quarantined, not the whole file.
    """
    with open_text(src) as stream:
        try:
            data = stream.read()
        except _STREAM_ERRORS as exc:
            raise FileProblem(_stream_problem(exc) + "; a JSON document cannot be read in part", line=0) from None
    try:
        text, undecoded = data.decode("utf-8"), False
    except UnicodeDecodeError:
        text, undecoded = data.decode("utf-8", "surrogateescape"), True
    text = text.lstrip("\ufeff")
    if not text.strip():
        return
    to_text = functools.partial(_to_text, undecoded=undecoded)
    try:
        doc = _loads(text)
    except json.JSONDecodeError as exc:
        raise FileProblem(f"not a JSON document: {exc.msg} at line {exc.lineno} column {exc.colno}", line=0, raw=cut_text(text)) from None
    except RecursionError:
        yield from _records_to_chunks(enumerate(_deep_records(text), start=1), chunk_records, to_text)
        return
    yield from _records_to_chunks(enumerate(_json_records(doc), start=1), chunk_records, to_text)


@dataclass(frozen=True, slots=True)
class _TooDeep:
    """A record of a JSON document nested too deeply for Python's parser (kept as its text)."""

    text: str


def _deep_records(text: str) -> list[Any]:
    """The records of a document Python's json cannot parse (nesting beyond its recursion limit).

    DuckDB's parser has no depth limit: it splits the document into its records' texts, and only
    the records that are themselves too deep stay unparsed (quarantined by :func:`_to_text`), so
    one bad record does not cost the file's others.
    """
    import duckdb

    with duckdb.connect() as con:
        try:
            kind, batched, items, batch, *shared = con.execute(
                "SELECT json_type(d), json_type(d, '$.batch') = 'ARRAY', CAST(json_extract(d, '$[*]') AS VARCHAR[]), "
                "CAST(json_extract(d, '$.batch[*]') AS VARCHAR[]), "
                + ", ".join(f"CAST(json_extract(d, '$.{key}') AS VARCHAR)" for key in BATCH_MERGED)
                + " FROM (SELECT CAST(? AS JSON) AS d)",
                [text],
            ).fetchall()[0]
        except duckdb.Error as exc:
            raise FileProblem(f"not a JSON document: {exc}", line=0, raw=cut_text(text)) from None
    if kind != "ARRAY" and not (kind == "OBJECT" and batched):
        return [_TooDeep(text)]
    records: list[Any] = []
    for piece in items if kind == "ARRAY" else batch:
        try:
            records.append(_loads(piece))
        except RecursionError:
            records.append(_TooDeep(piece))
    if kind == "ARRAY":
        return records
    try:
        envelope = {key: _loads(value) for key, value in zip(BATCH_MERGED, shared) if value is not None}
    except RecursionError:
        raise FileProblem(f"the batch-level context is nested over {MAX_DEPTH} levels deep", line=0) from None
    return _json_records({"batch": records, **envelope})


# -- tabular formats (CSV, Parquet): columns -> nested JSON, vectorised --------------------------------
_NULL_MEMBER = r'[,]"(?:[^"\\]|\\.)*":(?:null|\{\})'
_NULL_FIRST = r'\{"(?:[^"\\]|\\.)*":(?:null|\{\}),?'


def _drop_absent(texts: pl.Expr) -> pl.Expr:
    """Remove ``"k":null`` and ``"k":{}`` members: an empty cell or null column means absent.

    Safe on JSON text: inside a string every ``"`` is escaped, so ``,"k":`` only matches members.
    Two passes per nesting level; tabular exports nest a few levels at most.
    """
    for _ in range(4):
        texts = texts.str.replace_all(_NULL_MEMBER, "").str.replace_all(_NULL_FIRST, "{")
    return texts


def _jsonable(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Make a column JSON-friendly: times as ISO-8601 UTC text.

    Decimals, non-finite floats and binary never get here: :func:`_arrow_text` made them text.
    """
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            expr = expr.dt.convert_time_zone("UTC")
        return expr.dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
    if isinstance(dtype, pl.Date):
        return expr.dt.strftime("%Y-%m-%d")
    if isinstance(dtype, pl.Time):
        return expr.dt.strftime("%H:%M:%S%.6f")
    if isinstance(dtype, pl.Duration):
        return expr.dt.total_microseconds()
    if isinstance(dtype, (pl.Categorical, pl.Enum)):
        return expr.cast(pl.String)
    if isinstance(dtype, pl.Struct):
        return pl.struct([_jsonable(expr.struct.field(f.name), f.dtype).alias(f.name) for f in dtype.fields])
    if isinstance(dtype, (pl.List, pl.Array)):
        inner = dtype.inner
        if isinstance(inner, (pl.Datetime, pl.Date, pl.Time, pl.Duration, pl.Struct, pl.Categorical, pl.Enum)):
            return expr.list.eval(_jsonable(pl.element(), inner))
    return expr


def check_unique_columns(names: list[str], where: str) -> None:
    """A column named twice is ambiguous (which value is the message's?): the file is unreadable.

    Raised as a :class:`FileProblem` naming the column and its positions (1-based), before any
    row is read, instead of whichever error the tabular library would raise on it.
    """
    seen: dict[str, list[int]] = {}
    for i, name in enumerate(names, start=1):
        seen.setdefault(name, []).append(i)
    repeated = [(name, at) for name, at in seen.items() if len(at) > 1]
    if repeated:
        said = "; ".join(f"'{name}' (columns {', '.join(map(str, at))})" for name, at in repeated)
        raise FileProblem(f"the {where} names a column more than once: {said}", line=0)


def _nest(columns: list[str]) -> dict[str, Any]:
    """Dotted column names -> a tree (``{"properties": {"total": "properties.total"}}``)."""
    tree: dict[str, Any] = {}
    for col in columns:
        node = tree
        parts = col.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise FileProblem(f"column '{col}' nests under column '{'.'.join(parts[: i + 1])}'", line=0)
            node = child
        if parts[-1] in node:
            raise FileProblem(f"column '{col}' clashes with dotted columns under it", line=0)
        node[parts[-1]] = col
    return tree


def _tree_expr(tree: dict[str, Any], schema: pl.Schema) -> pl.Expr:
    fields = []
    for key, node in tree.items():
        if isinstance(node, dict):
            fields.append(_tree_expr(node, schema).alias(key))
        else:
            fields.append(_jsonable(pl.col(node), schema[node]).alias(key))
    return pl.struct(fields)


def frame_to_texts(frame: pl.DataFrame, *, number_texts: bool = False) -> pl.Series:
    """One JSON object per row: dotted names nest, nulls and empty objects are absent.

    ``number_texts``: some string values are marked number texts (:func:`_arrow_text`), written
    without their quotes.
    """
    tree = _nest(frame.columns)
    text = _drop_absent(_tree_expr(tree, frame.schema).struct.json_encode())
    if number_texts:
        text = text.str.replace_all(_NUMBER_TEXT_MEMBER, "$1")
    return frame.select(text.alias("text")).to_series()


def _tabular_chunk(
    frame: pl.DataFrame,
    first_row: int | pl.Series,
    failures: tuple[ReadFailure, ...] = (),
    skip: pl.Series | None = None,
    *,
    number_texts: bool = False,
    unreadable: dict[int, str] | None = None,
) -> Chunk:
    """``first_row``: the row number of the frame's first row, or every row's number.

    ``unreadable``: frame row index -> reason, rows quarantined with their built JSON as ``raw``.
    """
    texts = frame_to_texts(frame, number_texts=number_texts)
    numbers = (
        first_row if isinstance(first_row, pl.Series)
        else pl.int_range(first_row, first_row + frame.height, dtype=pl.Int64, eager=True)
    )
    if unreadable:
        failures += tuple(
            ReadFailure(line=int(numbers[i]), raw=cut_text(texts[i]), reason=reason) for i, reason in sorted(unreadable.items())
        )
        flags = np.zeros(frame.height, dtype=bool)
        flags[list(unreadable)] = True
        skip = pl.Series(flags) if skip is None else skip | pl.Series(flags)
    if skip is not None:
        texts, numbers = texts.filter(~skip), numbers.filter(~skip)
    return Chunk(lines=numbers.to_arrow(), texts=texts.cast(pl.String).to_arrow().cast(pa.large_string()), failures=failures)


def read_csv(src: Source, chunk_records: int) -> Iterator[Chunk]:
    """CSV with a header row; every value is text, an empty field is absent; ``line`` = data row (1-based).

    A row with more or fewer fields than the header is quarantined with its row number (pyarrow's
    invalid-row handler skips it), and never costs the file's other rows.
    """
    import pyarrow.csv as pacsv

    with open_text(src) as stream:
        body = _UpToTheBreak(stream)
        header = _csv_header(body)
        if header is None:
            if body.error is not None:
                raise FileProblem(_stream_problem(body.error, compressed=src.compressed), line=0)
            return
        names, head_bytes = header
        check_unique_columns(names, "header")
        reader_input = _Prefixed(head_bytes, body)
        skipped: list[ReadFailure] = []

        def on_invalid_row(bad: pacsv.InvalidRow) -> str:
            # Single-threaded parsing numbers physical rows from 1 at the header: data row = number - 1.
            skipped.append(ReadFailure(
                line=-1 if bad.number is None else bad.number - 1,
                raw=cut_text(bad.text),
                reason=f"CSV row has {bad.actual_columns} field(s), the header has {bad.expected_columns}",
            ))
            return "skip"

        try:
            reader = pacsv.open_csv(
                reader_input,
                read_options=pacsv.ReadOptions(
                    column_names=names, skip_rows=1, block_size=max(1 << 16, chunk_records * 256), use_threads=False
                ),
                convert_options=pacsv.ConvertOptions(column_types={n: pa.binary() for n in names}, quoted_strings_can_be_null=False),
                parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid_row),
            )
        except (pa.ArrowInvalid, *_STREAM_ERRORS) as exc:
            raise FileProblem(f"not a readable CSV file: {exc}", line=1) from None
        row = 1
        reported = 0
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowInvalid, *_STREAM_ERRORS) as exc:
                reason = _stream_problem(exc) if isinstance(exc, _STREAM_ERRORS) else f"CSV error: {exc}"
                raise FileProblem(reason, line=row) from None
            numbers = _rows_left(row, batch.num_rows, {f.line for f in skipped})
            new_failures = tuple(skipped[reported:])
            reported = len(skipped)
            if batch.num_rows:
                yield _csv_batch(batch, numbers, new_failures)
                row = int(numbers[-1]) + 1
            elif new_failures:
                yield _failures_only(new_failures)
        if len(skipped) > reported:
            yield _failures_only(tuple(skipped[reported:]))
        if body.error is not None:
            raise FileProblem(_stream_problem(body.error, compressed=src.compressed), line=row, raw=cut_text(body.cut.decode("utf-8", "replace")))


def _failures_only(failures: tuple[ReadFailure, ...]) -> Chunk:
    return Chunk(lines=pa.array([], pa.int64()), texts=pa.array([], pa.large_string()), failures=failures)


def _rows_left(first: int, count: int, skipped: set[int]) -> pl.Series:
    """The ``count`` smallest row numbers from ``first`` on that were not skipped as invalid."""
    span = np.arange(first, first + count + len(skipped), dtype=np.int64)
    kept = span[~np.isin(span, np.fromiter(skipped, dtype=np.int64, count=len(skipped)))]
    return pl.Series(kept[:count], dtype=pl.Int64)


def _csv_header(stream: IO[bytes]) -> tuple[list[str], bytes] | None:
    """Read up to the end of the header line: pyarrow must see the column names as text."""
    buf = b""
    while b"\n" not in buf and b"\r" not in buf:
        more = stream.read(1 << 16)
        if not more:
            break
        buf += more
    if not buf.strip():
        return None
    head = re.split(rb"\r\n?|\n", buf, maxsplit=1)[0]  # CR alone ends lines too (Excel's "CSV (Macintosh)")
    if b"\x00" in head:
        raise FileProblem("the header holds NUL bytes: UTF-16 without a byte-order mark? Save the file as UTF-8", line=0)
    line = head.decode("utf-8", "replace").lstrip("\ufeff")
    import csv

    names = next(csv.reader([line]))
    return [n.strip() for n in names], buf


class _UpToTheBreak:
    """Whole lines of ``stream`` until it ends or breaks (a truncated or damaged gzip stream).

    pyarrow's CSV reader gives nothing back when its input raises, and a cut last line would parse
    as a row with a cut value; so this hands out only bytes up to a line end, drops the cut line
    after a break, ends the stream there and keeps the error for the reader to report. (A break
    inside a quoted value that spans lines leaves an unterminated quote: pyarrow reports a CSV
    error for that last record and the file is ``partial`` all the same.)
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self._read = getattr(stream, "read1", stream.read)  # small reads: a break loses only its piece
        self._ready = b""  # safe to hand out: up to the last line end read
        self._tail: bytes | None = b""  # after it; None once the stream has ended or broken
        self.error: BaseException | None = None
        self.cut = b""  # the cut line dropped at a break
        self.closed = False

    def read(self, n: int | None = -1) -> bytes:
        want = -1 if n is None else n
        while self._tail is not None and (want < 0 or len(self._ready) < want):
            try:
                data = self._read(_PIECE)
            except _STREAM_ERRORS as exc:
                self.error, self.cut, self._tail = exc, self._tail, None
                break
            if not data:
                self._ready, self._tail = self._ready + self._tail, None
                break
            buf = self._tail + data
            cut = max(buf.rfind(b"\n"), buf.rfind(b"\r")) + 1
            self._ready, self._tail = self._ready + buf[:cut], buf[cut:]
        if want < 0:
            out, self._ready = self._ready, b""
        else:
            out, self._ready = self._ready[:want], self._ready[want:]
        return out

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


class _Prefixed:
    """A stream that first replays bytes already read (the header probe), then the rest."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head, self._rest = head, rest
        self._rest_read1 = getattr(rest, "read1", rest.read)
        self.closed = False

    def read1(self, n: int = -1) -> bytes:
        """At most ``n`` bytes, with at most one read of the underlying stream (a break loses one piece)."""
        if not self._head:
            return self._rest_read1(n)
        head, self._head = (self._head, b"") if n < 0 else (self._head[:n], self._head[n:])
        return head

    def read(self, n: int | None = -1) -> bytes:
        if not self._head:
            return self._rest.read(-1 if n is None else n)
        if n is None or n < 0:
            head, self._head = self._head, b""
            return head + self._rest.read()
        head, self._head = self._head[:n], self._head[n:]
        if len(head) < n:
            head += self._rest.read(n - len(head))
        return head

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


def _csv_batch(batch: pa.RecordBatch, numbers: pl.Series, skipped: tuple[ReadFailure, ...] = ()) -> Chunk:
    """Binary cells -> text in one cast; only a batch holding invalid UTF-8 is checked row by row."""
    try:
        frame = pl.from_arrow(batch.cast(pa.schema([(n, pa.string()) for n in batch.schema.names])))
        bad = None
    except (pa.ArrowInvalid, UnicodeDecodeError):
        columns = {n: batch.column(n).to_pylist() for n in batch.schema.names}
        flags = [any(v is not None and _not_utf8(v) for v in row) for row in zip(*columns.values())]
        bad = pl.Series(flags, dtype=pl.Boolean)
        frame = pl.DataFrame(
            {n: [None if v is None else v.decode("utf-8", "replace") for v in vals] for n, vals in columns.items()},
            schema={n: pl.String for n in columns},
        )
    assert isinstance(frame, pl.DataFrame)
    frame = frame.select(pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in frame.columns)
    failures: tuple[ReadFailure, ...] = skipped
    if bad is not None:
        failures += tuple(
            ReadFailure(
                line=int(numbers[i]),
                raw=cut_text(json.dumps(frame.row(i, named=True), ensure_ascii=False)),
                reason="invalid UTF-8 in column(s) "
                + ", ".join(n for n in batch.schema.names if batch.column(n)[i].as_py() is not None and _not_utf8(batch.column(n)[i].as_py())),
            )
            for i in range(batch.num_rows)
            if flags[i]
        )
    return _tabular_chunk(frame, numbers, failures, skip=bad)


def _not_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@contextmanager
def _seekable(src: Source) -> Iterator[IO[bytes]]:
    """Parquet needs random access: a ``.gz`` one is decompressed to a temporary file first."""
    if not src.compressed:
        with open(src.path, "rb") as f:
            yield f
        return
    with open_binary(src) as stream, tempfile.TemporaryFile() as tmp:
        try:
            shutil.copyfileobj(stream, tmp, 1 << 20)
        except _STREAM_ERRORS as exc:
            raise FileProblem(_stream_problem(exc) + "; a Parquet file cannot be read in part", line=0) from None
        tmp.seek(0)
        yield tmp


#: Arrow's spelling of non-finite floats -> JavaScript's, the one the contract names (not JSON: quarantined).
_NON_FINITE = (("nan", "NaN"), ("-inf", "-Infinity"), ("inf", "Infinity"))


def _number_text(text: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(pa.scalar(_NUMBER_TEXT), text, "")


def _arrow_text(column: pa.Array, path: str, invalid: list[tuple[str, np.ndarray]]) -> tuple[pa.Array, bool]:
    """``column`` with the values polars cannot turn into JSON as they are, as text.

    * decimals (128 and 256 bits; polars panics on the latter and reads the former through a
      double): their exact text, written as a JSON number;
    * floats with NaN or an infinity (polars writes them as null, i.e. absent): every value as its
      text, non-finite ones as ``NaN`` / ``Infinity``, which the contract quarantines as for
      NDJSON and Avro (events.md: the record must be valid JSON);
    * binary: its UTF-8 text; values that are not UTF-8 are recorded in ``invalid`` (path, rows)
      and shown with U+FFFD, for their rows to be quarantined (events.md: invalid UTF-8 is a
      quarantine reason), as CSV cells and Avro bytes are.

    Structs and lists are rebuilt around changed children. Returns the column and whether it now
    holds number texts (so the row's JSON must be unquoted there).
    """
    kind = column.type
    if pa.types.is_decimal(kind):
        return _number_text(column.cast(pa.string())), True
    if pa.types.is_floating(kind):
        if pc.all(pc.fill_null(pc.is_finite(column), True)).as_py():
            return column, False
        text = column.cast(pa.string())
        for arrow, javascript in _NON_FINITE:
            text = pc.if_else(pc.equal(text, arrow), javascript, text)
        return _number_text(text), True
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        try:
            return column.cast(pa.string()), False
        except pa.ArrowInvalid:
            values = column.to_pylist()  # a column holding invalid UTF-8 only: rare, so per value
            invalid.append((path, np.array([v is not None and _not_utf8(v) for v in values], dtype=bool)))
            return pa.array([None if v is None else v.decode("utf-8", "replace") for v in values], pa.string()), False
    if pa.types.is_struct(kind):
        fields = [kind.field(i) for i in range(kind.num_fields)]
        if not any(_may_need_text(f.type) for f in fields):
            return column, False
        children = [_arrow_text(child, f"{path}.{f.name}", invalid) for child, f in zip(column.flatten(), fields)]
        rebuilt = pa.StructArray.from_arrays(
            [c for c, _ in children], fields=[pa.field(f.name, c.type) for f, (c, _) in zip(fields, children)], mask=column.is_null()
        )
        return rebuilt, any(numbers for _, numbers in children)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        if not _may_need_text(kind.value_type):
            return column, False
        inner: list[tuple[str, np.ndarray]] = []
        values, numbers = _arrow_text(column.flatten(), path, inner)
        parents = pc.list_parent_indices(column).to_numpy()
        for where, bad in inner:
            rows = np.zeros(len(column), dtype=bool)
            rows[parents[bad]] = True
            invalid.append((where, rows))
        offsets = pc.subtract(column.offsets, column.offsets[0])
        array_type = pa.ListArray if pa.types.is_list(kind) else pa.LargeListArray
        return array_type.from_arrays(offsets, values, mask=column.is_null()), numbers
    return column, False


def _may_need_text(kind: pa.DataType) -> bool:
    if pa.types.is_struct(kind):
        return any(_may_need_text(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _may_need_text(kind.value_type)
    return (
        pa.types.is_decimal(kind) or pa.types.is_floating(kind) or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind)
    )


def _parquet_chunk(batch: pa.RecordBatch, first_row: int) -> Chunk:
    """One Parquet batch as a chunk: :func:`_arrow_text` first, then the tabular JSON."""
    invalid: list[tuple[str, np.ndarray]] = []
    columns, numbers = [], False
    for name, column in zip(batch.schema.names, batch.columns):
        prepared, has_numbers = _arrow_text(column, name, invalid) if _may_need_text(column.type) else (column, False)
        columns.append(prepared)
        numbers = numbers or has_numbers
    frame = pl.from_arrow(pa.RecordBatch.from_arrays(columns, names=batch.schema.names))
    assert isinstance(frame, pl.DataFrame)
    unreadable: dict[int, str] = {}
    if invalid:
        for row in np.flatnonzero(np.logical_or.reduce([bad for _, bad in invalid])):
            unreadable[int(row)] = "invalid UTF-8 in column(s) " + ", ".join(dict.fromkeys(p for p, bad in invalid if bad[row]))
    return _tabular_chunk(frame, first_row, number_texts=numbers, unreadable=unreadable)


def read_parquet(src: Source, chunk_records: int) -> Iterator[Chunk]:
    """Parquet: nested fields as structs or dotted column names; ``line`` = row (1-based)."""
    import pyarrow.parquet as pq

    with _seekable(src) as f:
        try:
            pf = pq.ParquetFile(f)
        except (pa.ArrowInvalid, OSError) as exc:
            raise FileProblem(f"not a Parquet file: {exc}", line=0) from None
        check_unique_columns(pf.schema_arrow.names, "Parquet schema")
        size = src.path.stat().st_size
        total = max(1, pf.metadata.num_rows)
        row = 1
        try:
            for batch in pf.iter_batches(batch_size=chunk_records):
                if batch.num_rows == 0:
                    continue
                chunk = _parquet_chunk(batch, row)
                if not src.compressed:
                    src.on_bytes(int(size * batch.num_rows / total))
                row += batch.num_rows
                yield chunk
        except (pa.ArrowException, OSError) as exc:
            raise FileProblem(f"damaged Parquet file: {exc}", line=row) from None


# -- Avro ------------------------------------------------------------------------------------------
def _avro_default(value: Any, *, shown: bool = False) -> Any:
    """JSON for fastavro's logical types: decimals exactly, ``bytes`` / ``fixed`` as UTF-8 text.

    Bytes that are not UTF-8 raise ``UnicodeDecodeError`` (the record is quarantined, as for a
    Parquet binary or a CSV cell), unless ``shown``: then U+FFFD, for the quarantine's ``raw``.
    """
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds") + "Z"
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return _NumberText(str(value))
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace" if shown else "strict")
    raise TypeError(f"cannot represent {type(value).__name__} as JSON")


def _not_utf8_fields(value: Any, path: str = "") -> list[str]:
    """The dotted paths of the ``bytes`` values of a record that are not UTF-8."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _not_utf8_fields(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [p for v in value for p in _not_utf8_fields(v, path)]
    return [path] if isinstance(value, (bytes, bytearray)) and _not_utf8(bytes(value)) else []


def _strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value]
    return value


def _avro_text(record: Any, line: int) -> str | ReadFailure:
    if isinstance(record, ReadFailure):
        return record
    record = _strip_none(record)
    try:
        return _dumps(record, default=_avro_default)
    except UnicodeDecodeError:
        fields = ", ".join(dict.fromkeys(_not_utf8_fields(record)))
        shown = _dumps(record, default=functools.partial(_avro_default, shown=True))
        return ReadFailure(line=line, raw=cut_text(shown), reason=f"invalid UTF-8 in field(s) {fields}")
    except (TypeError, ValueError) as exc:
        return ReadFailure(line=line, raw=cut_text(repr(record)), reason=f"record cannot be represented as JSON: {exc}")


#: What decoding one Avro record can raise when its bytes are damaged.
_AVRO_DAMAGE = (ValueError, UnicodeDecodeError, IndexError, AssertionError, EOFError)


def _avro_records(blocks: Iterator[Any], compressed: bool, problems: list[FileProblem]) -> Iterator[tuple[int, Any]]:
    """``(record index, record or ReadFailure)`` block by block.

    A record that cannot be decoded is quarantined (invalid UTF-8 by that name), and so are the
    records after it in its block, since Avro records have no boundaries of their own; the next
    block (after its sync marker) is read as usual. A file that ends early or whose block framing
    is damaged stops there: the records read so far are kept and the problem is recorded in
    ``problems`` for the caller to raise (the file is then ``partial``).
    """
    index = 0
    try:
        for block in blocks:
            end = index + block.num_records
            try:
                for record in block:
                    index += 1
                    yield index, record
            except _AVRO_DAMAGE as exc:
                bad = index + 1
                what = "invalid UTF-8" if isinstance(exc, UnicodeDecodeError) else "damaged Avro record"
                for line in range(bad, end + 1):
                    reason = (f"{what}: {exc}" if line == bad else
                              f"Avro record after the damaged record {bad} in the same block: cannot be decoded")
                    yield line, ReadFailure(line=line, raw="", reason=reason)
                index = end
    except (EOFError, OSError, zlib.error) as exc:
        problems.append(FileProblem(_stream_problem(exc, compressed=compressed), line=index + 1))
    except (ValueError, UnicodeDecodeError, IndexError, AssertionError) as exc:
        problems.append(FileProblem(f"damaged Avro data after record {index}: {exc}", line=index + 1))


def read_avro(src: Source, chunk_records: int) -> Iterator[Chunk]:
    """Avro object container files (fastavro); null fields are absent; ``line`` = record index (1-based)."""
    import fastavro

    with open_binary(src) as stream:
        try:
            blocks = fastavro.block_reader(stream)
        except (ValueError, EOFError, OSError, zlib.error, StopIteration) as exc:
            raise FileProblem(f"not an Avro object container file: {exc}", line=0) from None
        problems: list[FileProblem] = []
        yield from _records_to_chunks(_avro_records(blocks, src.compressed, problems), chunk_records, _avro_text)
        if problems:
            raise problems[0]


Reader = Callable[[Source, int], Iterator[Chunk]]

#: Never a file's problem: the user's interrupt, the interpreter's exit, a generator being closed.
_NOT_THE_FILE = (KeyboardInterrupt, SystemExit, GeneratorExit)


def _guarded(reader: Reader) -> Reader:
    """``reader``, with any unexpected failure turned into the file's :class:`FileProblem`.

    A library can fail on input nobody foresaw (a polars error, even a Rust panic, which pyo3
    raises as a ``BaseException``): that is one file's problem, recorded with its reason, and
    the chunks read before it are kept, so it never stops the run's other files.
    """

    @functools.wraps(reader)
    def guarded(src: Source, chunk_records: int) -> Iterator[Chunk]:
        last = 0  # the highest record number handed out
        try:
            for chunk in reader(src, chunk_records):
                numbers = [f.line for f in chunk.failures]
                if len(chunk.lines):
                    numbers.append(pc.max(chunk.lines).as_py())
                last = max([last, *numbers])
                yield chunk
        except (FileProblem, *_NOT_THE_FILE):
            raise
        except BaseException as exc:  # noqa: BLE001 -- the safety net: see the docstring
            detail = str(exc).strip().splitlines()
            reason = f"cannot read the file: {type(exc).__name__}" + (f": {detail[0]}" if detail else "")
            raise FileProblem(reason, line=last + 1 if last else 0) from exc

    return guarded


#: The reader of each format (keys are the formats :func:`detect_format` returns).
READERS: dict[str, Reader] = {
    fmt: _guarded(reader)
    for fmt, reader in {
        "ndjson": read_ndjson,
        "json": read_json,
        "csv": read_csv,
        "parquet": read_parquet,
        "avro": read_avro,
    }.items()
}


def cut_text(text: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """At most ``limit`` UTF-8 bytes of ``text``, never splitting a character; a surrogate (an
    undecodable byte or a lone escape, not storable text) is shown as U+FFFD."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATE.sub("\ufffd", text)
        data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


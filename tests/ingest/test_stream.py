"""One contract query per file: the stream of chunks, its rows back in file order, its errors."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ingest.load as load
from ingest.contract import chunk_sql
from ingest.readers import Chunk, FileProblem, ReadFailure
from tests.ingest.conftest import NOW, ingest, rows, write_lines

MSG = {"type": "track", "event": "E", "userId": "u1", "timestamp": "2024-03-01T10:00:00Z"}


class _Sent:
    """What a :class:`load._Feed` knows once every batch was handed over."""

    def __init__(self, batches: list[list[int]]) -> None:
        self.ends = [b[-1] for b in batches]
        self.sizes = [len(b) for b in batches]


def _result(lines: list[int], blank: set[int]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {"line": pa.array(lines, pa.int64()), "v": pa.array([f"r{n}" for n in lines], pa.string()),
         "blank": pa.array([n in blank for n in lines], pa.bool_())}
    )


@st.composite
def _streams(draw):
    """Batches fed (increasing lines with gaps), the result rows shuffled, cut into result batches."""
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=8))
    gaps = draw(st.lists(st.integers(1, 3), min_size=sum(sizes), max_size=sum(sizes)))
    lines = list(np.cumsum(gaps))
    batches, at = [], 0
    for n in sizes:
        batches.append([int(x) for x in lines[at : at + n]])
        at += n
    flat = [n for b in batches for n in b]
    order = draw(st.permutations(flat))
    cuts = sorted(draw(st.lists(st.integers(0, len(flat)), max_size=6)))
    pieces = [list(order[a:b]) for a, b in zip([0, *cuts], [*cuts, len(flat)])]
    blank = set(draw(st.lists(st.sampled_from(flat), max_size=3)))
    return batches, pieces, blank


@settings(max_examples=200, deadline=None)
@given(_streams())
def test_rows_are_released_once_each_and_in_file_order(stream):
    batches, pieces, blank = stream
    order = load._InOrder(_Sent(batches))  # type: ignore[arg-type]
    released: list[list[int]] = []
    for piece in pieces:
        released.append([n for b in order.add(_result(piece, blank)) for n in b.column("line").to_pylist()])
    released.append([n for b in order.rest() for n in b.column("line").to_pylist()])
    everything = [n for group in released for n in group]
    assert sorted(everything) == [n for b in batches for n in b if n not in blank]
    # each release comes after every row released before it (duplicates are decided in file order)
    for before, after in zip(released, released[1:]):
        if before and after:
            assert max(before) < min(after)
    # blank records and the blank column are gone
    for piece in pieces:
        assert "blank" not in load._without_blanks(_result(piece, blank)).schema.names


def test_a_batch_is_released_only_when_all_its_rows_came_back():
    order = load._InOrder(_Sent([[1, 2, 3], [5, 6]]))  # type: ignore[arg-type]
    assert order.add(_result([5, 1], set())) == []  # batch 1 lacks 2 and 3
    got = order.add(_result([3, 2], set()))
    assert sorted(n for b in got for n in b.column("line").to_pylist()) == [1, 2, 3]
    got = order.add(_result([6], {6}))
    assert [n for b in got for n in b.column("line").to_pylist()] == [5]
    assert order.rest() == []


def test_fewer_rows_than_fed_is_an_error():
    order = load._InOrder(_Sent([[1, 2]]))  # type: ignore[arg-type]
    order.add(_result([1], set()))
    with pytest.raises(RuntimeError, match="fewer rows"):
        order.rest()


def test_blanks_option_keeps_one_row_per_record_and_changes_no_other_row():
    texts = ['{"type":"track","event":"E","userId":"u"}', "", "   \r", "{broken", '{"type":"page","userId":"u"}', "\t"]
    _in = pa.table({"line": pa.array(range(1, 7), pa.int64()), "text": pa.array(texts, pa.large_string())})  # noqa: F841
    con = duckdb.connect()
    kept = con.sql(chunk_sql("_in", NOW, blanks=True)).to_arrow_table().sort_by("line")
    dropped = con.sql(chunk_sql("_in", NOW)).to_arrow_table().sort_by("line")
    assert kept.column("line").to_pylist() == [1, 2, 3, 4, 5, 6]
    assert kept.column("blank").to_pylist() == [False, True, True, False, False, True]
    assert kept.filter(pc.invert(kept.column("blank"))).drop_columns(["blank"]).equals(dropped)


def test_many_small_chunks_through_one_query_keep_file_order_for_duplicates(store, tmp_path):
    """Chunks of 7 records, results fetched 7 rows at a time: the first occurrence still wins."""
    random.seed(3)
    msgs = [dict(MSG, messageId=f"m{random.randrange(40)}", event=f"E{i}") for i in range(400)]
    path = write_lines(tmp_path / "a.ndjson", msgs)
    report = ingest(store, path, chunk_records=7)
    first: dict[str, tuple[str, int]] = {}
    for line, m in enumerate(msgs, start=1):
        first.setdefault(m["messageId"], (m["event"], line))
    assert rows(store, "SELECT message_id, event, source_line FROM events ORDER BY message_id") == sorted(
        (k, e, n) for k, (e, n) in first.items()
    )
    assert report.files[0].duplicates == 400 - len(first)


def _reader_of(chunks: list[Chunk], problem: Exception | None = None):
    def read(src, chunk_records):
        yield from chunks
        if problem is not None:
            raise problem
    return read


def _chunk(lines: list[int], failures: tuple[ReadFailure, ...] = ()) -> Chunk:
    texts = [f'{{"type":"track","event":"E","userId":"u","messageId":"m{n}"}}' for n in lines]
    return Chunk(lines=pa.array(lines, pa.int64()), texts=pa.array(texts, pa.large_string()), failures=failures)


def test_a_file_problem_after_the_chunks_keeps_their_rows_and_failures(store, tmp_path, monkeypatch):
    path = write_lines(tmp_path / "a.ndjson", [MSG])
    bad = ReadFailure(line=3, raw="\ufffd", reason="invalid UTF-8 (byte 1 of the line)")
    monkeypatch.setitem(
        load.READERS, "ndjson", _reader_of([_chunk([1, 2]), _chunk([4], (bad,))], FileProblem("the file ends early", line=5))
    )
    (file,) = ingest(store, path).files
    assert (file.status, file.records, file.ingested, file.quarantined) == ("partial", 4, 3, 2)
    assert rows(store, "SELECT line, reason FROM quarantine ORDER BY line") == [
        (3, "invalid UTF-8 (byte 1 of the line)"), (5, "file: the file ends early"),
    ]


def test_an_error_inside_the_stream_is_raised_as_itself_and_the_file_rolls_back(store, tmp_path, monkeypatch):
    path = write_lines(tmp_path / "a.ndjson", [MSG])
    monkeypatch.setitem(load.READERS, "ndjson", _reader_of([_chunk([1, 2])], OSError("disk on fire")))
    with pytest.raises(OSError, match="disk on fire"):
        ingest(store, path)
    assert rows(store, "SELECT count(*) FROM events") == [(0,)]
    assert rows(store, "SELECT count(*) FROM ingest_log") == [(0,)]


def test_record_numbers_out_of_order_are_a_reader_bug(store, tmp_path, monkeypatch):
    path = write_lines(tmp_path / "a.ndjson", [MSG])
    monkeypatch.setitem(load.READERS, "ndjson", _reader_of([_chunk([1, 5]), _chunk([4])]))
    with pytest.raises(RuntimeError, match="out of order"):
        ingest(store, path)


def test_no_pandas_import(tmp_path):
    """pyarrow imports pandas on some conversions (about a second of CPU): the stream avoids them."""
    import subprocess
    import sys

    path = write_lines(tmp_path / "a.ndjson", [dict(MSG, messageId=f"m{i % 50}") for i in range(300)] + ["", "{x"])
    code = (
        "import sys\nfrom datetime import datetime, timezone\nfrom engine.store import Store\n"
        "from ingest.load import ingest_paths\n"
        "with Store.open(None) as s:\n"
        f"    ingest_paths(s, [{str(path)!r}], now=datetime(2024, 6, 1, tzinfo=timezone.utc), chunk_records=64)\n"
        "print('pandas' in sys.modules)\n"
    )
    root = Path(__file__).parent.parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""Odd files never stop a run: each is read as events.md says, or is one file's recorded problem.

Every test here failed before the fix it pins (session 6's spec review, issue 3): a traceback
aborted the whole ingest, or two formats disagreed on the same value.
"""

from __future__ import annotations

import codecs
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.cli import main
from ingest import readers

from .conftest import event, ingest, reasons, rows, write_lines

MESSAGE = {"type": "track", "event": "E", "userId": "u", "timestamp": "2024-01-01T00:00:00Z"}


def good_ndjson(tmp_path, name: str = "z.ndjson", message_id: str = "z"):
    return write_lines(tmp_path / name, [{**MESSAGE, "messageId": message_id}])


def log(store) -> list[tuple]:
    return rows(store, "SELECT regexp_replace(path, '.*/', ''), status FROM ingest_log ORDER BY ingest_id")


# -- the safety net: any failure while reading one file is that file's problem ----------------------
class FakePanic(BaseException):
    """Stands for pyo3's PanicException: a BaseException, not an Exception."""


def _parquet(path, count: int):
    pq.write_table(pa.table({
        "type": ["track"] * count, "event": ["E"] * count, "userId": ["u"] * count,
        "timestamp": ["2024-01-01T00:00:00Z"] * count, "messageId": [f"p{i}" for i in range(1, count + 1)],
    }), path)
    return path


@pytest.mark.parametrize("fail_at", [1, 2])
def test_a_reader_failing_unexpectedly_is_a_file_problem_and_the_other_files_are_ingested(store, tmp_path, monkeypatch, fail_at):
    calls = []
    original = readers._tabular_chunk

    def boom(*args, **kwargs):
        calls.append(1)
        if len(calls) == fail_at:
            raise FakePanic("operator does not support primitive `Int256`\nsecond line")
        return original(*args, **kwargs)

    monkeypatch.setattr(readers, "_tabular_chunk", boom)
    report = ingest(store, _parquet(tmp_path / "a.parquet", 4), good_ndjson(tmp_path), chunk_records=2)
    bad, good = report.files
    status = "unreadable" if fail_at == 1 else "partial"
    assert (bad.status, bad.ingested, good.status, good.ingested) == (status, 2 * (fail_at - 1), "ingested", 1)
    line = 0 if fail_at == 1 else 3
    assert rows(store, "SELECT line, reason FROM quarantine") == [
        (line, "file: cannot read the file: FakePanic: operator does not support primitive `Int256`")
    ]
    assert log(store) == [("a.parquet", status), ("z.ndjson", "ingested")]


def test_a_reader_error_never_reaches_the_cli_as_a_traceback(tmp_path, monkeypatch, capsys):
    def boom(*args, **kwargs):
        raise RuntimeError("a library's bug")

    monkeypatch.setattr(readers, "_tabular_chunk", boom)
    store = tmp_path / "s.duckdb"
    code = main(["--store", str(store), "--quiet", "ingest", str(_parquet(tmp_path / "a.parquet", 1)), str(good_ndjson(tmp_path))])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    assert "a.parquet (cannot read the file: RuntimeError: a library's bug)" in err


def test_an_interrupt_is_not_turned_into_a_file_problem(store, tmp_path, monkeypatch):
    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(readers, "_tabular_chunk", stop)
    with pytest.raises(KeyboardInterrupt):
        ingest(store, _parquet(tmp_path / "a.parquet", 1))
    assert log(store) == []


# -- 1. a column named twice -----------------------------------------------------------------------
def test_a_csv_header_naming_a_column_twice_is_unreadable_and_the_next_file_is_ingested(store, tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("type,event,userId, userId,timestamp\ntrack,E,a,b,2024-01-01T00:00:00Z\n")
    report = ingest(store, path, good_ndjson(tmp_path))
    assert [f.status for f in report.files] == ["unreadable", "ingested"]
    assert reasons(store) == {0: "file: the header names a column more than once: 'userId' (columns 3, 4)"}


def test_a_parquet_schema_naming_a_column_twice_is_unreadable_and_the_next_file_is_ingested(store, tmp_path):
    path = tmp_path / "dup.parquet"
    table = pa.Table.from_arrays(
        [pa.array(["track"]), pa.array(["u"]), pa.array([1]), pa.array([2])], names=["type", "userId", "properties.a", "properties.a"]
    )
    pq.write_table(table, path)
    report = ingest(store, path, good_ndjson(tmp_path))
    assert [f.status for f in report.files] == ["unreadable", "ingested"]
    assert reasons(store) == {0: "file: the Parquet schema names a column more than once: 'properties.a' (columns 3, 4)"}


# -- 2. a lone surrogate escape in a .json document --------------------------------------------------
def test_a_lone_surrogate_escape_is_invalid_json_in_a_json_document_as_in_ndjson(store, tmp_path):
    bad = '{"type":"track","event":"x\\ud800","userId":"u3","timestamp":"2024-01-01T00:00:00Z"}'
    pair = '{"type":"track","event":"x\\ud83d\\ude00","userId":"u4","timestamp":"2024-01-01T00:00:00Z","messageId":"pair"}'
    (tmp_path / "a.json").write_text(f"[{bad},{pair}]")
    (tmp_path / "b.ndjson").write_text(f"{bad}\n{pair.replace('pair', 'pair2')}\n")
    report = ingest(store, tmp_path / "a.json", tmp_path / "b.ndjson")
    assert [(f.status, f.ingested, f.quarantined) for f in report.files] == [("ingested", 1, 1), ("ingested", 1, 1)]
    assert rows(store, "SELECT regexp_replace(source_file, '.*/', ''), line, reason, raw FROM quarantine ORDER BY 1") == [
        ("a.json", 1, "invalid JSON", bad),
        ("b.ndjson", 1, "invalid JSON", bad),
    ]
    assert event(store, "pair")["event"] == event(store, "pair2")["event"] == "x\U0001f600"


def test_invalid_utf8_and_a_lone_surrogate_escape_in_one_json_document(store, tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(
        b'[{"type":"track","event":"E","userId":"u\xff","messageId":"a"},'
        b'{"type":"track","event":"x\\udbff","userId":"u","messageId":"b"},'
        b'{"type":"track","event":"E","userId":"u","messageId":"c"}]'
    )
    assert ingest(store, path).ingested == 1
    assert rows(store, "SELECT line, reason, raw FROM quarantine ORDER BY line") == [
        (1, "invalid UTF-8 (character 40 of the record)", '{"type":"track","event":"E","userId":"u\ufffd","messageId":"a"}'),
        (2, "invalid JSON", '{"type":"track","event":"x\\udbff","userId":"u","messageId":"b"}'),
    ]


def test_a_json_document_that_is_not_json_and_holds_a_surrogate_is_a_file_problem(store, tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b'[{"event":"\xff"} oops')
    report = ingest(store, path, good_ndjson(tmp_path))
    assert [f.status for f in report.files] == ["unreadable", "ingested"]
    assert rows(store, "SELECT raw FROM quarantine") == [('[{"event":"\ufffd"} oops',)]


# -- 4. line ends and encodings of spreadsheets' exports ---------------------------------------------
CSV = "type,event,userId,timestamp,messageId,properties.city\ntrack,E,u,2024-01-01T00:00:00Z,m1,Zürich\ntrack,E,u,2024-01-01T00:00:00Z,m2,\n"
NDJSON = "".join(json.dumps({**MESSAGE, "messageId": m, "properties": {"city": "Zürich"}}, ensure_ascii=False) + "\n" for m in ("m1", "m2"))


def _stored(store) -> list[tuple]:
    return rows(store, "SELECT message_id, source_line, CAST(properties AS VARCHAR) FROM events ORDER BY message_id")


@pytest.mark.parametrize("ends", ["\r", "\r\n", "\n"])
def test_csv_lines_may_end_in_cr_alone_as_in_excel_for_mac(store, tmp_path, ends):
    path = tmp_path / "mac.csv"
    path.write_bytes(CSV.replace("\n", ends).encode())
    report = ingest(store, path)
    assert (report.files[0].status, report.ingested) == ("ingested", 2)
    assert _stored(store) == [("m1", 1, '{"city":"Zürich"}'), ("m2", 2, None)]


def test_a_cr_only_csv_row_with_the_wrong_number_of_fields_is_quarantined_alone(store, tmp_path):
    path = tmp_path / "mac.csv"
    path.write_bytes(b"type,event,userId,messageId\rtrack,E,u,m1\rtrack,E\rtrack,E,u,m3\r")
    assert ingest(store, path).ingested == 2
    assert reasons(store) == {2: "CSV row has 2 field(s), the header has 4"}


BOMS = [("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE), ("utf-32-le", codecs.BOM_UTF32_LE), ("utf-32-be", codecs.BOM_UTF32_BE)]


@pytest.mark.parametrize(("encoding", "bom"), BOMS)
@pytest.mark.parametrize(("suffix", "text"), [("csv", CSV), ("ndjson", NDJSON), ("json", "[" + NDJSON.strip().replace("\n", ",") + "]")])
def test_utf16_and_utf32_files_with_a_byte_order_mark_read_as_their_utf8_twin(store, tmp_path, encoding, bom, suffix, text):
    utf8 = tmp_path / f"a.{suffix}"
    utf8.write_text(text, encoding="utf-8")
    other = tmp_path / f"b.{suffix}.gz"
    other.write_bytes(gzip.compress(bom + text.encode(encoding)))
    report = ingest(store, utf8, other, chunk_records=1)
    assert [(f.status, f.ingested, f.duplicates, f.conflicts) for f in report.files] == [("ingested", 2, 0, 0), ("ingested", 0, 2, 0)]
    assert rows(store, "SELECT count(*) FROM quarantine") == [(0,)]


def test_an_undecodable_utf16_record_is_quarantined_alone(store, tmp_path):
    path = tmp_path / "a.ndjson"
    lines = NDJSON.split("\n")
    # a lone high surrogate in the first record's UTF-16 (not text): that record only
    data = codecs.BOM_UTF16_LE + lines[0].encode("utf-16-le").replace("Z".encode("utf-16-le"), b"\x00\xd8", 1) + "\n".encode("utf-16-le")
    data += (lines[1] + "\n").encode("utf-16-le")
    path.write_bytes(data)
    report = ingest(store, path)
    assert (report.ingested, report.quarantined) == (1, 1)
    (reason,) = reasons(store).values()
    assert reason.startswith("invalid UTF-8")


def test_a_utf16_csv_without_a_byte_order_mark_is_unreadable_with_a_hint(store, tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(CSV.encode("utf-16-le"))
    report = ingest(store, path, good_ndjson(tmp_path))
    assert [f.status for f in report.files] == ["unreadable", "ingested"]
    assert "UTF-16 without a byte-order mark" in reasons(store)[0]

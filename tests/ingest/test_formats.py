"""Every input format, compression, and every file-level problem (truncated, mislabelled, empty)."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest

from engine.errors import InputError
from ingest.readers import detect_format
from tests.ingest.conftest import CASES, event, ingest, reasons, rows, write_lines


def test_ndjson_and_its_gzip_give_the_same_events(store):
    report = ingest(store, CASES / "valid.ndjson", CASES / "valid.ndjson.gz")
    plain, packed = report.files
    assert (plain.status, plain.ingested) == ("ingested", 10)
    assert (packed.status, packed.ingested, packed.duplicates, packed.conflicts) == ("ingested", 0, 10, 0)
    assert packed.format == "ndjson"


def test_jsonl_suffix_and_crlf_lines(store, tmp_path):
    path = tmp_path / "x.JSONL"
    path.write_bytes(b'{"type":"track","event":"E","userId":"u","messageId":"m1"}\r\n\r\n{"type":"track","event":"E","userId":"u","messageId":"m2"}\r\n')
    report = ingest(store, path)
    assert (report.records, report.ingested) == (2, 2)
    assert rows(store, "SELECT source_line, raw FROM events ORDER BY 1")[1] == (3, '{"type":"track","event":"E","userId":"u","messageId":"m2"}')


def test_json_single_message(store):
    report = ingest(store, CASES / "single.json")
    assert report.ingested == 1 and event(store, "j-single")["event"] == "Single"


def test_json_array_uses_record_index(store):
    report = ingest(store, CASES / "array.json")
    assert (report.records, report.ingested, report.quarantined) == (4, 2, 2)
    assert reasons(store) == {3: "message is a number, not a JSON object", 4: "missing userId and anonymousId"}
    assert rows(store, "SELECT source_line FROM events ORDER BY 1") == [(1,), (2,)]


def test_batch_envelope_context_is_merged_under_each_message(store):
    ingest(store, CASES / "batch.json")
    own = json.loads(event(store, "b-1")["context"])
    assert own == {"library": {"name": "own-lib", "version": "1.0"}, "ip": "9.9.9.9", "page": {"path": "/own"}}
    inherited = json.loads(event(store, "b-2")["context"])
    assert inherited == {"library": {"name": "batch-lib", "version": "1.0"}, "ip": "9.9.9.9"}
    assert json.loads(event(store, "b-2")["raw"])["context"] == inherited


def test_csv_dotted_columns_nest_and_empty_fields_are_absent(store):
    report = ingest(store, CASES / "dotted.csv")
    assert (report.records, report.ingested, report.quarantined) == (4, 3, 1)
    assert reasons(store) == {4: "missing userId and anonymousId"}
    first = event(store, "c-1")
    assert first["user_id"] == "123"  # CSV values are text
    assert json.loads(first["properties"]) == {"total": "19.99", "order": {"id": "o1"}}
    assert json.loads(first["context"]) == {"traits": {"email": "ana@example.com"}}
    second = event(store, "c-2")
    assert (second["user_id"], second["anonymous_id"], second["properties"]) == (None, "a1", None)
    assert json.loads(second["raw"]) == {
        "type": "track", "messageId": "c-2", "anonymousId": "a1", "event": "Order Completed", "timestamp": "2024-03-01T11:00:00Z",
    }


def test_csv_gzip_and_invalid_utf8_row(store, tmp_path):
    data = b"type,userId,event,messageId\ntrack,u1,E,c1\ntrack,u\xff,E,c2\ntrack,u3,E,c3\n"
    path = tmp_path / "x.csv.gz"
    path.write_bytes(gzip.compress(data))
    report = ingest(store, path)
    assert (report.records, report.ingested, report.quarantined) == (3, 2, 1)
    assert reasons(store) == {2: "invalid UTF-8 in column(s) userId"}


@pytest.mark.parametrize("chunk_records", [1, 1000])
def test_csv_rows_with_the_wrong_number_of_fields_are_quarantined_alone(store, tmp_path, chunk_records):
    path = tmp_path / "ragged.csv"
    path.write_text(
        "type,userId,event,messageId\n"
        "track,u1,E,c1\n"
        "track,u2,E,c2,extra\n"
        "track,u3,E,c3\n"
        "track,u4\n"
        "track,u5,E,c5\n",
        encoding="utf-8",
    )
    report = ingest(store, path, chunk_records=chunk_records)
    assert (report.records, report.ingested, report.quarantined) == (5, 3, 2)
    assert reasons(store) == {
        2: "CSV row has 5 field(s), the header has 4",
        4: "CSV row has 2 field(s), the header has 4",
    }
    assert rows(store, "SELECT message_id, source_line FROM events ORDER BY source_line") == [
        ("c1", 1), ("c3", 3), ("c5", 5),
    ]


def test_csv_row_numbers_stay_exact_across_blocks_after_skipped_rows(store, tmp_path):
    bad = {n for n in range(1, 4001) if n % 97 == 0}
    lines = ["type,userId,event,messageId,padding"]
    lines += [f"track,u{n},E,c{n}" if n in bad else f"track,u{n},E,c{n},{'x' * 20}" for n in range(1, 4001)]
    path = tmp_path / "big.csv"  # about 200 KB: several 64 KiB parse blocks
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = ingest(store, path, chunk_records=10)  # 64 KiB blocks
    assert (report.ingested, report.quarantined) == (4000 - len(bad), len(bad))
    assert set(reasons(store)) == bad
    stored = rows(store, "SELECT message_id, source_line FROM events")
    assert all(message_id == f"c{line}" for message_id, line in stored)


def test_parquet_structs_and_dotted_columns_are_the_same_events(store):
    report = ingest(store, CASES / "structs.parquet", CASES / "dotted.parquet")
    structs, dotted = report.files
    assert (structs.ingested, dotted.duplicates, dotted.conflicts) == (3, 3, 0)
    first = event(store, "p-1")
    assert json.loads(first["properties"]) == {"total": 19.5, "order": {"id": "o1"}}
    assert first["timestamp"].isoformat() == "2024-03-01T10:00:00+00:00"
    second = event(store, "p-2")
    assert (second["user_id"], second["anonymous_id"], second["properties"]) == (None, "a2", None)
    assert json.loads(event(store, "p-3")["traits"]) == {"plan": "pro"}


def test_avro_records(store):
    report = ingest(store, CASES / "events.avro")
    assert (report.records, report.ingested, report.quarantined) == (3, 2, 1)
    assert reasons(store) == {3: "missing userId and anonymousId"}
    first = event(store, "v-1")
    assert json.loads(first["properties"]) == {"total": 19.5, "currency": "EUR"}
    assert first["timestamp"].isoformat() == "2024-03-01T10:00:00+00:00"
    assert event(store, "v-2")["user_id"] == "42"


def test_invalid_utf8_line_is_quarantined_and_neighbours_kept(store):
    report = ingest(store, CASES / "invalid_utf8.ndjson")
    assert (report.records, report.ingested, report.quarantined) == (3, 2, 1)
    assert reasons(store) == {2: "invalid UTF-8 (byte 29 of the line)"}
    assert rows(store, "SELECT raw FROM quarantine")[0][0].startswith('{"type":"track","event":"caf\ufffd \ufffd"')


def test_invalid_utf8_in_json_document_quarantines_only_its_record(store, tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b'[{"type":"track","event":"E","userId":"u\xff","messageId":"a"},{"type":"track","event":"E","userId":"u","messageId":"b"}]')
    report = ingest(store, path)
    assert (report.ingested, report.quarantined) == (1, 1)
    assert reasons(store)[1].startswith("invalid UTF-8")


def test_truncated_gzip_keeps_the_lines_before_the_break(store):
    report = ingest(store, CASES / "truncated.ndjson.gz")
    (file,) = report.files
    assert file.status == "partial"
    assert 100 < file.ingested < 400 and file.ingested == file.records
    assert file.quarantined == 1
    assert report.unreadable == (file,)
    line, reason = rows(store, "SELECT line, reason FROM quarantine")[0]
    assert line == file.records + 1 and reason == "file: the gzip stream ends early (truncated file)"
    assert f"at line {line}" in file.message


def test_truncated_csv_gzip_keeps_the_whole_rows_before_the_break(store, tmp_path):
    rows_text = [f"track,E,u{i},m{i},2024-01-01T00:00:00Z,{'x' * 50}{i}" for i in range(3000)]
    data = gzip.compress(("type,event,userId,messageId,timestamp,properties.v\n" + "\n".join(rows_text) + "\n").encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    (file,) = ingest(store, path).files
    assert file.status == "partial" and 100 < file.ingested == file.records < 3000
    values = rows(store, "SELECT message_id, properties->>'v' FROM events ORDER BY message_id")
    assert all(v == "x" * 50 + m[1:] for m, v in values)  # no row cut at the break
    line, reason, raw = rows(store, "SELECT line, reason, raw FROM quarantine")[0]
    assert (line, reason) == (file.records + 1, "file: the gzip stream ends early (truncated file)")
    assert rows_text[file.records].startswith(raw)  # the cut row is kept as far as it could be read


def _avro_file(path, count: int, *, sync_interval: int = 16000) -> bytes:
    import fastavro

    schema = fastavro.parse_schema({"type": "record", "name": "M", "fields": [
        {"name": n, "type": "string"} for n in ("type", "event", "userId", "messageId", "timestamp")]})
    with path.open("wb") as fh:
        fastavro.writer(fh, schema, [
            {"type": "track", "event": "E", "userId": f"u{i}", "messageId": f"m{i}", "timestamp": "2024-01-01T00:00:00Z"}
            for i in range(count)], sync_interval=sync_interval)
    return path.read_bytes()


def test_a_damaged_avro_record_is_quarantined_and_the_next_blocks_are_kept(store, tmp_path):
    path = tmp_path / "bad.avro"
    data = _avro_file(path, 6, sync_interval=100)  # blocks of 3 records
    path.write_bytes(data.replace(b"u1", b"\xff1", 1))
    report = ingest(store, path)
    assert (report.records, report.ingested, report.quarantined) == (6, 4, 2)
    assert reasons(store)[2].startswith("invalid UTF-8")
    assert reasons(store)[3] == "Avro record after the damaged record 2 in the same block: cannot be decoded"
    assert rows(store, "SELECT message_id FROM events ORDER BY 1") == [("m0",), ("m3",), ("m4",), ("m5",)]


def test_a_truncated_avro_file_keeps_the_records_before_the_break(store, tmp_path):
    path = tmp_path / "cut.avro"
    data = _avro_file(path, 6, sync_interval=100)
    path.write_bytes(data[:-60])
    (file,) = ingest(store, path).files
    assert (file.status, file.ingested) == ("partial", 3)
    assert rows(store, "SELECT line, reason FROM quarantine") == [(4, "file: the file ends early (truncated file)")]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("not_gzip.ndjson.gz", "file: not gzip-compressed although its name ends in .gz"),
        ("not_parquet.parquet", "file: not a Parquet file"),
        ("not_json.json", "file: not a JSON document"),
    ],
)
def test_a_file_that_is_not_what_its_suffix_says_is_unreadable(store, name, reason):
    report = ingest(store, CASES / name)
    (file,) = report.files
    assert (file.status, file.records, file.quarantined) == ("unreadable", 0, 1)
    assert rows(store, "SELECT reason FROM quarantine")[0][0].startswith(reason)
    assert rows(store, "SELECT status FROM ingest_log") == [("unreadable",)]


def test_avro_suffix_on_text_is_unreadable(store, tmp_path):
    path = tmp_path / "x.avro"
    path.write_text("not avro")
    assert ingest(store, path).files[0].status == "unreadable"


def test_empty_file_is_empty_not_an_error(store, tmp_path):
    blank = write_lines(tmp_path / "blank.ndjson", ["", "   "])
    report = ingest(store, CASES / "empty.ndjson", blank)
    assert [f.status for f in report.files] == ["empty", "empty"]
    assert report.unreadable == () and rows(store, "SELECT count(*) FROM quarantine") == [(0,)]
    assert rows(store, "SELECT status, records, size_bytes FROM ingest_log ORDER BY ingest_id") == [
        ("empty", 0, 0), ("empty", 0, blank.stat().st_size),
    ]


@pytest.mark.parametrize("name", ["e.ndjson", "e.json", "e.csv", "e.parquet", "e.avro", "e.ndjson.gz"])
def test_zero_byte_file_is_logged_as_empty_in_every_format(store, tmp_path, name):
    """A zero-byte file has an ``ingest_log`` row like any file; the same (empty) content again is
    ``already ingested``, as for any file whose content hash is logged."""
    path = tmp_path / name
    path.write_bytes(b"")
    assert [(f.status, f.message) for f in ingest(store, path).files] == [("empty", "the file is empty")]
    assert rows(store, "SELECT path, status, records, size_bytes, content_hash, message FROM ingest_log") == [
        (str(path), "empty", 0, 0, hashlib.sha256(b"").hexdigest(), "the file is empty"),
    ]
    other = tmp_path / ("other-" + name)
    other.write_bytes(b"")
    again = ingest(store, path, other).files
    assert [f.status for f in again] == ["already ingested", "already ingested"]
    assert str(path) in again[1].message
    assert rows(store, "SELECT count(*) FROM ingest_log") == [(1,)]


@pytest.mark.parametrize(
    ("name", "fmt", "gz"),
    [("a.ndjson", "ndjson", False), ("a.jsonl.gz", "ndjson", True), ("a.JSON", "json", False),
     ("a.b.parquet", "parquet", False), ("a.csv.GZ", "csv", True), ("a.avro", "avro", False)],
)
def test_detect_format(tmp_path, name, fmt, gz):
    assert detect_format(tmp_path / name) == (fmt, gz)


def test_unknown_suffix_fails_before_anything_is_ingested(store):
    with pytest.raises(InputError, match="notes.txt: unknown file type"):
        ingest(store, CASES / "valid.ndjson", CASES / "unknown" / "notes.txt")
    assert rows(store, "SELECT count(*) FROM events") == [(0,)]


def test_missing_path_and_empty_glob_fail_before_anything_is_ingested(store, tmp_path):
    with pytest.raises(InputError, match="no such file or directory"):
        ingest(store, CASES / "valid.ndjson", tmp_path / "nope.ndjson")
    with pytest.raises(InputError, match="no file matches this pattern"):
        ingest(store, CASES / "valid.ndjson", tmp_path / "*.ndjson")
    assert rows(store, "SELECT count(*) FROM ingest_log") == [(0,)]


def test_directories_are_recursive_and_sorted_and_globs_expand(store, tmp_path):
    msg = {"type": "track", "event": "E", "userId": "u", "timestamp": "2024-03-01T10:00:00Z"}
    (tmp_path / "b" / "deep").mkdir(parents=True)
    write_lines(tmp_path / "b" / "deep" / "z.ndjson", [dict(msg, messageId="3")])
    write_lines(tmp_path / "b" / "a.ndjson", [dict(msg, messageId="2")])
    write_lines(tmp_path / "a.ndjson", [dict(msg, messageId="1")])
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.txt").write_text("ignored")
    report = ingest(store, tmp_path)
    assert [f.path.removeprefix(str(tmp_path)) for f in report.files] == ["/a.ndjson", "/b/a.ndjson", "/b/deep/z.ndjson"]
    report = ingest(store, tmp_path / "**" / "*.ndjson")
    assert {f.status for f in report.files} == {"already ingested"}


def test_utf8_bom_at_the_start_of_ndjson_is_dropped(store, tmp_path):
    path = tmp_path / "bom.ndjson"
    path.write_bytes(b'\xef\xbb\xbf{"type":"track","event":"E","userId":"u","messageId":"m"}\n')
    assert ingest(store, path).ingested == 1
    assert rows(store, "SELECT raw FROM events") == [('{"type":"track","event":"E","userId":"u","messageId":"m"}',)]


def test_tabular_null_stripping_never_touches_string_values(store, tmp_path):
    path = tmp_path / "tricky.csv"
    path.write_text(
        'type,userId,event,messageId,properties.note,properties.empty\n'
        'track,u1,E,t1,"{""k"":null,""x"":{}} and ,""a"":null",\n',
        encoding="utf-8",
    )
    assert ingest(store, path).ingested == 1
    assert json.loads(event(store, "t1")["properties"]) == {"note": '{"k":null,"x":{}} and ,"a":null'}


def test_numbers_beyond_a_double_are_json_in_json_documents_as_in_ndjson(store, tmp_path):
    """``1e400`` is RFC 8259 JSON (events.md: valid JSON is accepted): both formats keep the
    message and its number as sent; only NaN / Infinity are quarantined, in both formats."""
    text = '{"type":"track","event":"E","userId":"u","messageId":"m","properties":{"big":1e400,"neg":-1E+400,"x":1.5}}'
    lines = tmp_path / "big.ndjson"
    lines.write_text(text + "\n" + text.replace('"m"', '"n"').replace("1e400", "Infinity") + "\n")
    doc = tmp_path / "big.json"
    doc.write_text("[" + text.replace('"m"', '"j"') + "," + text.replace('"m"', '"k"').replace("1e400", "NaN") + "]")
    report = ingest(store, lines, doc)
    assert [(f.ingested, f.quarantined) for f in report.files] == [(1, 1), (1, 1)]
    stored = dict(rows(store, "SELECT message_id, CAST(properties AS VARCHAR) FROM events"))
    assert stored["m"] == stored["j"] and "1e400" in stored["m"] and "-1E+400" in stored["m"]
    assert "1e400" in rows(store, "SELECT raw FROM events WHERE message_id = 'j'")[0][0]
    assert set(reasons(store).values()) == {"invalid JSON: NaN and Infinity are not JSON numbers"}


def test_a_batch_level_sent_at_corrects_the_clock_skew_of_its_messages(store, tmp_path):
    """Segment's HTTP API sends ``sentAt`` once per batch; a message with its own keeps it."""
    doc = {"sentAt": "2024-03-01T10:00:00Z", "batch": [
        {"type": "track", "event": "E", "userId": "u", "messageId": "inherits",
         "originalTimestamp": "2024-03-01T09:59:30Z", "receivedAt": "2024-03-01T10:01:00Z"},
        {"type": "track", "event": "E", "userId": "u", "messageId": "own", "sentAt": "2024-03-01T09:59:50Z",
         "originalTimestamp": "2024-03-01T09:59:30Z", "receivedAt": "2024-03-01T10:01:00Z"},
    ]}
    path = tmp_path / "b.json"
    path.write_text(json.dumps(doc))
    ingest(store, path)
    got = dict(rows(store, "SELECT message_id, strftime(timestamp, '%H:%M:%S') FROM events"))
    assert got == {"inherits": "10:00:30", "own": "10:00:40"}

"""The message contract of events.md: every quarantine rule, event time, normalisation, columns."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.contract import _LENIENT_HINTS, derived_message_id
from tests.ingest.conftest import CASES, event, ingest, reasons, rows, write_lines

OK = {"type": "track", "event": "E", "userId": "u1", "timestamp": "2024-03-01T10:00:00Z"}

# line of tests/cases/ingest/quarantine.ndjson -> the reason it must get (exactly)
QUARANTINE_CASES = {
    2: "invalid JSON",
    3: "message is an array, not a JSON object",
    4: "message is a string, not a JSON object",
    5: "unknown type 'foo'",
    6: "missing type (and no event to make it a track)",
    7: "missing userId and anonymousId",
    8: "missing userId and anonymousId",
    9: "userId is a boolean; missing userId and anonymousId",
    10: "anonymousId is an object",
    11: "track without event",
    12: "track without event",
    13: "track event is a number, not a string",
    14: "alias without previousId",
    15: "alias without userId",
    16: "group without groupId",
    17: "timestamp 'yesterday' is not ISO-8601 or epoch milliseconds",
    18: "timestamp 2199-01-01T00:00:00.000000Z is more than 100 days after the ingest time 2024-06-01T00:00:00.000000Z",
    19: "timestamp 1969-12-31T23:59:59.000000Z is before 1970-01-01",
    20: "properties is not an object (it is an array)",
    21: "traits is not an object (it is a string)",
    22: "context is not an object (it is a number)",
    23: "type is a number, not a string",
    24: "sentAt 'not a time' is not ISO-8601 or epoch milliseconds",
}


def test_every_quarantine_rule_names_its_rule(store):
    report = ingest(store, CASES / "quarantine.ndjson")
    assert (report.records, report.ingested, report.quarantined) == (24, 1, 23)
    assert reasons(store) == QUARANTINE_CASES
    assert rows(store, "SELECT message_id FROM events") == [("q-ok",)]


def test_quarantine_keeps_raw_text_and_file(store):
    ingest(store, CASES / "quarantine.ndjson")
    raw, source = rows(store, "SELECT raw, source_file FROM quarantine WHERE line = 5")[0]
    assert raw == '{"type":"foo","userId":"u1","timestamp":"2024-03-01T10:00:00Z"}'
    assert source.endswith("quarantine.ndjson")


def test_message_over_32_kib_is_quarantined_with_its_size_and_raw_cut(store):
    report = ingest(store, CASES / "huge_line.ndjson")
    assert (report.ingested, report.quarantined) == (2, 1)
    line, reason, raw = rows(store, "SELECT line, reason, raw FROM quarantine")[0]
    size = len((CASES / "huge_line.ndjson").read_bytes().split(b"\n")[1])
    assert (line, reason) == (2, f"message is {size} bytes, over the 32 KiB limit")
    assert len(raw.encode()) == 32 * 1024


def test_exactly_32_kib_is_accepted(store, tmp_path):
    msg = dict(OK, messageId="m", properties={"p": ""})
    pad = 32 * 1024 - len(write_lines(tmp_path / "probe.ndjson", [msg]).read_bytes()) + 1
    msg["properties"] = {"p": "x" * pad}
    path = write_lines(tmp_path / "a.ndjson", [msg])
    assert len(path.read_bytes()) - 1 == 32 * 1024
    assert ingest(store, path).ingested == 1


# -- event time ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"timestamp": "2024-03-01T10:00:00Z"}, datetime(2024, 3, 1, 10, tzinfo=timezone.utc)),
        ({"timestamp": "2024-03-01T10:00:00"}, datetime(2024, 3, 1, 10, tzinfo=timezone.utc)),  # no offset = UTC
        ({"timestamp": "2024-03-01T12:30:00.250+02:30"}, datetime(2024, 3, 1, 10, 0, 0, 250000, tzinfo=timezone.utc)),
        ({"timestamp": 1709287200000}, datetime(2024, 3, 1, 10, tzinfo=timezone.utc)),  # epoch ms
        ({"timestamp": "1709287200123"}, datetime(2024, 3, 1, 10, 0, 0, 123000, tzinfo=timezone.utc)),
        (  # clock-skew correction: receivedAt - (sentAt - originalTimestamp)
            {"originalTimestamp": "2024-03-01T10:00:00Z", "sentAt": "2024-03-01T10:05:00Z", "receivedAt": "2024-03-01T09:00:30Z"},
            datetime(2024, 3, 1, 8, 55, 30, tzinfo=timezone.utc),
        ),
        (  # snake_case spellings count the same
            {"original_timestamp": "2024-03-01T10:00:00Z", "sent_at": "2024-03-01T10:05:00Z", "received_at": "2024-03-01T09:00:30Z"},
            datetime(2024, 3, 1, 8, 55, 30, tzinfo=timezone.utc),
        ),
        ({"originalTimestamp": "2024-03-01T10:00:00Z", "sentAt": "2024-03-01T10:05:00Z"}, datetime(2024, 3, 1, 10, tzinfo=timezone.utc)),
        ({"originalTimestamp": "2024-03-01T10:00:00Z", "receivedAt": "2024-03-02T00:00:00Z"}, datetime(2024, 3, 1, 10, tzinfo=timezone.utc)),
        ({"receivedAt": "2024-03-02T00:00:00Z"}, datetime(2024, 3, 2, tzinfo=timezone.utc)),
        ({}, datetime(2024, 6, 1, tzinfo=timezone.utc)),  # nothing: the ingest time
        ({"timestamp": None, "receivedAt": "2024-03-02T00:00:00Z"}, datetime(2024, 3, 2, tzinfo=timezone.utc)),
        ({"timestamp": "1990-05-17T00:00:00Z"}, datetime(1990, 5, 17, tzinfo=timezone.utc)),  # old history welcome
        ({"timestamp": "2024-09-09T00:00:00Z"}, datetime(2024, 9, 9, tzinfo=timezone.utc)),  # now + 100 days
        ({"timestamp": "1970-01-01T00:00:00Z"}, datetime(1970, 1, 1, tzinfo=timezone.utc)),
    ],
)
def test_event_time_rules(store, tmp_path, fields, expected):
    msg = {"type": "track", "event": "E", "userId": "u", "messageId": "m", **fields}
    report = ingest(store, write_lines(tmp_path / "t.ndjson", [msg]))
    assert report.ingested == 1, reasons(store)
    assert event(store, "m")["timestamp"] == expected


def test_received_at_defaults_to_ingest_time(store, tmp_path):
    ingest(store, write_lines(tmp_path / "t.ndjson", [dict(OK, messageId="m")]))
    assert event(store, "m")["received_at"] == datetime(2024, 6, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("value", ["2024-09-09T00:00:01Z", 4102444800000])
def test_more_than_100_days_ahead_is_quarantined(store, tmp_path, value):
    ingest(store, write_lines(tmp_path / "t.ndjson", [dict(OK, timestamp=value)]))
    assert "more than 100 days after the ingest time" in reasons(store)[1]


def test_skew_corrected_time_out_of_range_names_its_source(store, tmp_path):
    msg = dict(OK, timestamp=None, originalTimestamp="1970-01-01T00:00:00Z", sentAt="1970-01-01T01:00:00Z",
               receivedAt="1970-01-01T00:30:00Z")
    ingest(store, write_lines(tmp_path / "t.ndjson", [msg]))
    assert reasons(store)[1].startswith("clock-skew-corrected time (receivedAt - (sentAt - originalTimestamp)) 1969-12-31T23:30:00")


def test_a_null_record_is_named_null_in_its_reason(store, tmp_path):
    nd = write_lines(tmp_path / "t.ndjson", ["null", OK])
    doc = tmp_path / "n.json"
    doc.write_text("null")
    ingest(store, nd, doc)
    got = rows(store, "SELECT source_file, line, reason FROM quarantine ORDER BY source_file")
    assert [(r[1], r[2]) for r in got] == [(1, "message is null, not a JSON object")] * 2


# -- normalisation and columns ---------------------------------------------------------------------------
def test_numeric_identifiers_become_their_json_text_and_strings_are_trimmed(store, tmp_path):
    msg = {"type": "group", "messageId": 991, "userId": 123, "anonymousId": "  a 1 ", "groupId": 7.5,
           "timestamp": "2024-03-01T10:00:00Z"}
    ingest(store, write_lines(tmp_path / "t.ndjson", [msg]))
    row = event(store, "991")
    assert (row["user_id"], row["anonymous_id"], row["group_id"]) == ("123", "a 1", "7.5")


def test_empty_identifier_is_absent(store, tmp_path):
    ingest(store, write_lines(tmp_path / "t.ndjson", [dict(OK, messageId="m", anonymousId="   ")]))
    assert event(store, "m")["anonymous_id"] is None


def test_columns_of_each_type(store):
    ingest(store, CASES / "valid.ndjson")
    page, screen = event(store, "m-page"), event(store, "m-screen")
    assert (page["type"], page["event"], page["name"]) == ("page", "Page Viewed", "Pricing")
    assert (screen["type"], screen["event"], screen["name"]) == ("screen", "Screen Viewed", "Home")
    implicit = event(store, "m-implicit")
    assert (implicit["type"], implicit["event"]) == ("track", "Implicit Track")
    alias = event(store, "m-alias")
    assert (alias["user_id"], alias["previous_id"]) == ("u1", "a1")
    track = event(store, "m-track")
    assert track["properties"] == '{"total":19.99,"order":{"id":"o1"}}'
    assert track["traits"] is None and track["context"] is None
    identify = event(store, "m-identify")
    assert identify["user_id"] == "u1" and identify["anonymous_id"] == "a1"
    assert identify["timestamp"] == datetime(2024, 3, 1, 8, 0, 0, 123000, tzinfo=timezone.utc)


def test_raw_is_the_line_byte_for_byte_with_unicode(store):
    ingest(store, CASES / "unicode.ndjson")
    lines = (CASES / "unicode.ndjson").read_text(encoding="utf-8").splitlines()
    stored = dict(rows(store, "SELECT source_line, raw FROM events"))
    assert stored == {1: lines[0], 2: lines[1]}
    props = event(store, "m-unicode-raw")["properties"]
    for text in ("👩\u200d👩\u200d👧 🇫🇷", "שלום עולם مرحبا", "e\u0301 a\u0308 n\u0303", "\u00e9 e\u0301"):
        assert text in props  # NFC is not applied: decomposed and composed forms both survive


def test_payload_hash_is_md5_of_the_message_text(store, tmp_path):
    import hashlib

    path = write_lines(tmp_path / "t.ndjson", [dict(OK, messageId="m")])
    ingest(store, path)
    line = path.read_text().splitlines()[0]
    assert event(store, "m")["payload_hash"] == hashlib.md5(line.encode()).hexdigest()


def test_stored_sha256_payload_hashes_still_tell_duplicates_from_conflicts(store, tmp_path):
    """Stores written before the switch to md5 hold sha256 hashes: the hashes then always differ,
    and the canonical-JSON comparison decides, so a re-sent message is still a plain duplicate."""
    import hashlib

    line = '{"type":"track","event":"E","userId":"u1","messageId":"m","timestamp":"2024-03-01T10:00:00Z"}'
    store.con.execute(
        "INSERT INTO events (message_id, type, event, timestamp, user_id, raw, payload_hash, ingest_id, source_line) "
        "VALUES ('m', 'track', 'E', TIMESTAMPTZ '2024-03-01 10:00:00+00', 'u1', ?, ?, 1, 1)",
        [line, hashlib.sha256(line.encode()).hexdigest()],
    )
    store.con.execute(
        "INSERT INTO ingest_log (ingest_id, path, content_hash, status, started_at) VALUES (1, 'old', 'x', 'ingested', now())"
    )
    changed = line.replace('"E"', '"Other"')
    report = ingest(store, write_lines(tmp_path / "t.ndjson", [line, changed]))
    assert (report.ingested, report.duplicates, report.conflicts) == (0, 2, 1)


def test_derived_message_id_is_canonical_json_hash(store, tmp_path):
    msg = {"type": "track", "event": "E", "userId": "u1", "timestamp": "2024-03-01T10:00:00Z"}
    reordered = '{"timestamp": "2024-03-01T10:00:00Z", "userId": "u1", "event": "E", "type": "track"}'
    expected = derived_message_id(reordered)
    assert expected == derived_message_id('{"event":"E","timestamp":"2024-03-01T10:00:00Z","type":"track","userId":"u1"}')
    ingest(store, write_lines(tmp_path / "t.ndjson", [msg]))
    assert rows(store, "SELECT message_id FROM events") == [(expected,)]
    assert expected.startswith("derived-") and len(expected) == len("derived-") + 32


# -- RFC 8259: what DuckDB's parser accepts and JSON does not; nesting ---------------------------------
def test_nan_infinity_and_trailing_commas_are_quarantined_and_the_rest_kept(store):
    report = ingest(store, CASES / "rfc8259.ndjson")
    assert (report.records, report.ingested, report.quarantined) == (8, 3, 5)
    non_finite, comma = "invalid JSON: NaN and Infinity are not JSON numbers", "invalid JSON: trailing comma"
    assert reasons(store) == {2: non_finite, 3: non_finite, 4: non_finite, 5: comma, 6: comma}
    lines = (CASES / "rfc8259.ndjson").read_text().splitlines()
    quarantined = dict(rows(store, "SELECT line, raw FROM quarantine"))
    assert quarantined[2] == lines[1] and quarantined[6] == lines[5]
    assert rows(store, "SELECT message_id FROM events ORDER BY source_line") == [("r-ok",), ("r-text",), ("r-ok2",)]


def _nested(levels: int, message_id: str) -> str:
    return (
        '{"type":"track","event":"E","userId":"u1","messageId":"' + message_id + '","properties":{"p":'
        + "[" * (levels - 2) + "]" * (levels - 2) + "}}"
    )


def test_deep_nesting_is_quarantined_with_its_depth_and_the_rest_kept(store, tmp_path):
    path = write_lines(tmp_path / "deep.ndjson", [dict(OK, messageId="a"), _nested(10_000, "deep"),
                                                   _nested(512, "at-limit"), _nested(513, "over")])
    report = ingest(store, path)
    assert (report.ingested, report.quarantined) == (2, 2)
    assert reasons(store) == {
        2: "message is nested 10000 levels deep, over the limit of 512",
        4: "message is nested 513 levels deep, over the limit of 512",
    }
    assert rows(store, "SELECT message_id FROM events ORDER BY source_line") == [("a",), ("at-limit",)]


def test_deep_nesting_without_message_id_does_not_reach_pythons_parser(store, tmp_path):
    deep = _nested(5000, "x").replace('"messageId":"x",', "")
    report = ingest(store, write_lines(tmp_path / "deep.ndjson", [deep, dict(OK)]))
    assert (report.ingested, report.quarantined) == (1, 1)


@pytest.mark.parametrize("batch", [False, True])
def test_json_document_too_deep_for_python_keeps_its_other_records(store, tmp_path, batch):
    records = [json.dumps(dict(OK, messageId="a")), _nested(5000, "deep"), _nested(600, "over"), json.dumps(dict(OK, messageId="b"))]
    text = "[" + ",".join(records) + "]"
    if batch:
        text = '{"batch":' + text + ',"context":{"ip":"10.0.0.1"}}'
    path = tmp_path / "deep.json"
    path.write_text(text)
    report = ingest(store, path)
    assert (report.files[0].status, report.ingested, report.quarantined) == ("ingested", 2, 2)
    assert reasons(store) == {
        2: "message is nested over 512 levels deep",
        3: "message is nested 600 levels deep, over the limit of 512",
    }
    contexts = rows(store, "SELECT message_id, context FROM events ORDER BY message_id")
    assert contexts == ([("a", '{"ip":"10.0.0.1"}'), ("b", '{"ip":"10.0.0.1"}')] if batch else [("a", None), ("b", None)])


def test_a_single_json_message_too_deep_for_python_is_quarantined(store, tmp_path):
    path = tmp_path / "one.json"
    path.write_text(_nested(5000, "deep"))
    report = ingest(store, path)
    assert (report.files[0].status, report.quarantined) == ("ingested", 1)
    assert reasons(store) == {1: "message is nested over 512 levels deep"}


# -- ISO-8601 spellings --------------------------------------------------------------------------------
MARCH_1 = datetime(2024, 3, 1, 10, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01t10:00:00z", MARCH_1),  # RFC 3339 allows lower case
        ("2024-03-01 10:00:00Z", MARCH_1),
        ("2024-03-01T10:00Z", MARCH_1),
        ("2024-03-01T10Z", MARCH_1),
        ("2024-03-01T11:00:00+01", MARCH_1),
        ("2024-03-01T11:30:00+0130", MARCH_1),
        ("2024-03-01T04:30:00-05:30", MARCH_1),
        ("2024-03-01T10:00:00,5Z", MARCH_1.replace(microsecond=500000)),
        ("2024-03-01T10:00:00.123456789Z", MARCH_1.replace(microsecond=123456)),  # cut to microseconds
        ("20240301T100000Z", MARCH_1),  # basic format
        ("20240301t110000+0100", MARCH_1),
        ("20240301T1100+01", MARCH_1),
        ("20240301T10", MARCH_1),
        ("20240301T100000.25z", MARCH_1.replace(microsecond=250000)),
        ("2024-03-01", datetime(2024, 3, 1, tzinfo=timezone.utc)),  # a date is its midnight UTC
        ("2024-02-29T24:00:00Z", datetime(2024, 3, 1, tzinfo=timezone.utc)),  # end of day
    ],
)
@pytest.mark.parametrize("field", ["timestamp", "originalTimestamp", "sentAt", "receivedAt"])
def test_every_iso_8601_spelling_in_every_time_field(store, tmp_path, field, text, expected):
    msg = {"type": "track", "event": "E", "userId": "u", "messageId": "m", field: text}
    ingest(store, write_lines(tmp_path / "t.ndjson", [msg]))
    assert reasons(store) == {}
    column = {"timestamp": "timestamp", "originalTimestamp": "original_timestamp", "sentAt": "sent_at",
              "receivedAt": "received_at"}[field]
    assert event(store, "m")[column] == expected


@pytest.mark.parametrize(
    "text",
    ["2024-W09-5", "2024-061", "2024-03-01T1000", "20240301T10:00:00Z", "2024-03-01T10:00:00 UTC", "2024-03-01Z",
     "2024-03-01T10:00:60Z", "2024-03-01T24:00:01Z", "2024-03-01T10:00:00+24:00", "2024-3-1T10:00:00Z", "0240301T10"],
)
@pytest.mark.parametrize("field", ["timestamp", "originalTimestamp", "sentAt", "receivedAt"])
def test_other_spellings_are_quarantined_in_every_time_field(store, tmp_path, field, text):
    # the field is the one the event time is taken from (sentAt only in the clock-skew correction)
    skew = {"originalTimestamp": "2024-03-01T10:00:00Z", "receivedAt": "2024-03-01T10:00:01Z"}
    msg = {"type": "track", "event": "E", "userId": "u", "messageId": "m"} | (skew if field == "sentAt" else {})
    ingest(store, write_lines(tmp_path / "t.ndjson", [msg | {field: text}]))
    assert reasons(store) == {1: f"{field} '{text}' is not ISO-8601 or epoch milliseconds"}


GOOD = "2024-03-01T10:00:00Z"


@pytest.mark.parametrize(
    ("times", "column"),
    [
        ({"timestamp": GOOD, "sentAt": "not a time"}, "sent_at"),
        ({"timestamp": GOOD, "originalTimestamp": "not a time"}, "original_timestamp"),
        ({"timestamp": GOOD, "sentAt": True}, "sent_at"),
        ({"originalTimestamp": GOOD, "sentAt": "not a time"}, "sent_at"),  # no receivedAt: no correction
    ],
)
def test_a_time_field_the_event_time_does_not_use_need_not_parse(store, tmp_path, times, column):
    """events.md requires only the event time to parse; the other field is stored as NULL (raw keeps it)."""
    ingest(store, write_lines(tmp_path / "t.ndjson", [{"type": "track", "event": "E", "userId": "u", "messageId": "m"} | times]))
    assert reasons(store) == {}
    row = event(store, "m")
    assert row["timestamp"] == datetime(2024, 3, 1, 10, tzinfo=timezone.utc)
    assert row[column] is None


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_a_blank_time_field_is_absent(store, tmp_path, blank):
    msg = {"type": "track", "event": "E", "userId": "u", "messageId": "m", "timestamp": blank,
           "originalTimestamp": GOOD, "sentAt": blank}
    ingest(store, write_lines(tmp_path / "t.ndjson", [msg]))
    assert reasons(store) == {}
    row = event(store, "m")
    assert (row["timestamp"], row["original_timestamp"], row["sent_at"]) == (
        datetime(2024, 3, 1, 10, tzinfo=timezone.utc), datetime(2024, 3, 1, 10, tzinfo=timezone.utc), None)


@pytest.mark.parametrize("text", [" 2024-03-01T10:00:00Z ", "\t2024-03-01T10:00:00+00:00\n", " 1709287200000 "])
def test_time_strings_are_trimmed_of_ascii_whitespace(store, tmp_path, text):
    msg = {"type": "track", "event": "E", "userId": "u", "messageId": "m", "timestamp": text}
    ingest(store, write_lines(tmp_path / "t.ndjson", [msg]))
    assert reasons(store) == {}
    assert event(store, "m")["timestamp"] == datetime(2024, 3, 1, 10, tzinfo=timezone.utc)


def test_every_field_of_the_skew_correction_must_parse(store, tmp_path):
    msg = {"type": "track", "event": "E", "userId": "u", "messageId": "m", "originalTimestamp": "x",
           "sentAt": GOOD, "receivedAt": "y"}
    ingest(store, write_lines(tmp_path / "t.ndjson", [msg]))
    assert reasons(store) == {1: "originalTimestamp 'x' is not ISO-8601 or epoch milliseconds; "
                                 "receivedAt 'y' is not ISO-8601 or epoch milliseconds"}


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=' \t\n\r:[],{}"-nNaAiIfFx0', max_size=14))
def test_the_rfc_8259_hints_are_the_one_alternation_they_replace(text):
    """The four per-first-byte regular expressions hint exactly the texts the single one did."""
    one = "(?:^|[:\\[,])[ \\t\\n\\r]*-?(?:[Nn][Aa][Nn]|[Ii][Nn][Ff])|,[ \\t\\n\\r]*[\\]}]"
    con = duckdb.connect()
    hinted = " OR ".join("regexp_matches($1, $" + str(i + 2) + ")" for i in range(len(_LENIENT_HINTS)))
    got = con.execute(f"SELECT {hinted}", [text, *_LENIENT_HINTS]).fetchall()[0][0]
    want = con.execute("SELECT regexp_matches($1, $2)", [text, one]).fetchall()[0][0]
    assert got == want

"""The common-shape path of the contract query gives exactly what the full formulation gives.

``chunk_sql(..., common=False)`` sends every record through the full per-field formulation
(kinds, reasons); the default reads records of the common shape without them. The same records
through both must give identical rows (typed values, reasons), whichever path each one takes.
"""

from __future__ import annotations

import json

import duckdb
import polars as pl
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.contract import chunk_sql
from tests.ingest.conftest import NOW

ABSENT = object()

ident = st.one_of(
    st.sampled_from([
        "u1", " u1", "u1 ", "\tu1", "u1\n", "\fu\v", "u 1", "", " ", "ünï", "😀", "\u00a0u\u00a0", "a\\b", 'q"t',
        "\x1f", "1e5", "null", "-", "x" * 70,
    ]),
    st.integers(-(2**63), 2**64),
    st.sampled_from([0, -0.0, 1.5, 1e3, 1e400, True, False, {}, {"a": "b"}, [], ["u"], None]),
    st.text(max_size=6),
)
times = st.one_of(
    st.sampled_from([
        "2024-03-01T10:00:00Z", "2024-03-01T10:00:00.123Z", "2024-03-01T10:00:00.123456789+02:00",
        "2024-03-01 10:00:00-0530", "2024-03-01T10:00+01", "2024-03-01", "2024-03-01T10Z", "2024-03-01t10:00:00z",
        "2024-03-01T10:00:00,5Z", "20240301T100000Z", " 2024-03-01T10:00:00Z", "2024-03-01T10:00:00Z ",
        "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", "2024-03-01T24:00:00Z", "2024-03-01T10:00:60Z",
        "1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z", "2024-09-09T00:00:00Z", "2024-09-10T00:00:00Z",
        "2199-01-01T00:00:00Z", "1709287200000", " 1709287200000", "", "  ", "yesterday", "2024-03-01T10:00:00 UTC",
        "２０２４-03-01",
    ]),
    st.integers(-(10**15), 10**15),
    st.sampled_from([1709287200000.5, 1.7e12, -1, 0, 10**14, True, {"t": 1}, ["2024-03-01"], None]),
)
FIELDS = {
    "type": st.sampled_from([
        "track", "identify", "alias", "page", "screen", "group", "Track", "PAGE", " page", "page ", "foo", "",
        "tráck", "track\u00a0", 5, True, None,
    ]),
    "event": st.sampled_from(["E", "Order Completed", "", " ", "\t", "\u00a0", "é 😀", 'q"t', "a\\b", 3, {}, [], None]),
    "name": st.sampled_from(["Home", "", " Home ", "ü", 'a"b', 4, {}, None]),
    "messageId": ident,
    "message_id": ident,
    "userId": ident,
    "user_id": ident,
    "anonymousId": ident,
    "anonymous_id": ident,
    "previousId": ident,
    "groupId": ident,
    "group_id": ident,
    "timestamp": times,
    "originalTimestamp": times,
    "sentAt": times,
    "receivedAt": times,
    "received_at": times,
    "properties": st.sampled_from([{}, {"a": 1, "b": {"c": "é"}}, {"v": 1.50}, [1], "s", 3, True, None]),
    "traits": st.sampled_from([{}, {"email": "a@b.c"}, [], "t", None]),
    "context": st.sampled_from([{}, {"ip": "1.2.3.4"}, 0, None]),
}
message = st.fixed_dictionaries(
    {k: st.one_of(st.just(ABSENT), st.just(ABSENT), v) for k, v in FIELDS.items()}
).map(lambda d: {k: v for k, v in d.items() if v is not ABSENT})
#: One or two fields changed, so records stay near the edge of the common shape.
few_changes = st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=2, unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({k: FIELDS[k] for k in keys})
)
COMMON = {"type": "track", "event": "E", "userId": "u1", "anonymousId": "a1", "messageId": "m1",
          "timestamp": "2024-03-01T10:00:00.123Z", "properties": {"p": 1}, "context": {"ip": "1.2.3.4"}}
TEMPLATES = [
    COMMON,
    {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "receivedAt": "2024-03-01T10:00:00Z"},
    {"type": "page", "anonymousId": "a1", "name": "Home", "originalTimestamp": "2024-03-01T10:00:00+01:00"},
    {"type": "alias", "userId": "u1", "previousId": "a1", "sentAt": "2024-03-01T10:00:01Z",
     "originalTimestamp": "2024-03-01T10:00:00Z", "receivedAt": "2024-03-01T10:00:02Z"},
    {"type": "group", "userId": "u1", "groupId": "g1", "timestamp": 1709287200000},
]


def _spell(msg: dict, ascii_only: bool, spaced: bool) -> str:
    """JSON text of a message: unicode escaped or not, minified or with spaces."""
    return json.dumps(msg, ensure_ascii=ascii_only, separators=(", ", ": ") if spaced else (",", ":"))


near_common = st.builds(lambda base, changes: {**base, **changes}, st.sampled_from(TEMPLATES), few_changes)
record = st.one_of(
    st.builds(_spell, message, st.booleans(), st.booleans()),
    st.builds(_spell, near_common, st.booleans(), st.booleans()),
    st.builds(_spell, near_common, st.booleans(), st.booleans()),
)


def _both(texts: list[str]) -> tuple[list[dict], list[dict]]:
    """The rows of the same records through the common-shape path and through the full formulation."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    _in = pa.table({"line": pa.array(range(1, len(texts) + 1), pa.int64()), "text": pa.array(texts, pa.string())})  # noqa: F841
    # times as epoch microseconds: exact, and a time before year 1 (a quarantined record's
    # receivedAt of -62135596800001 ms) has no Python datetime
    fast = con.sql(chunk_sql("_in", NOW)).pl()
    full = con.sql(chunk_sql("_in", NOW, common=False)).pl()
    fast, full = (f.with_columns(pl.col(pl.Datetime).dt.epoch("us")).sort("line").rows(named=True) for f in (fast, full))
    con.close()
    return fast, full


def _agree(texts: list[str]) -> list[bool]:
    fast, full = _both(texts)
    assert len(fast) == len(full) == len(texts)
    for a, b, text in zip(fast, full, texts, strict=True):
        assert not b["common"], text
        assert {k: v for k, v in a.items() if k != "common"} == {k: v for k, v in b.items() if k != "common"}, text
    return [row["common"] for row in fast]


@settings(max_examples=30, deadline=None)
@given(st.lists(record, min_size=5, max_size=40))
def test_common_shape_and_full_formulation_give_identical_rows(texts):
    _agree(texts)


def test_a_time_before_year_one_compares_too():
    """Found by hypothesis: a time before year 1 (here a receivedAt) has no Python datetime, so rows compare times as integers."""
    assert _agree([json.dumps({**COMMON, "receivedAt": -62135596800001}), '{"received_at":-62135596800001}']) == [True, False]


# record -> whether it takes the common-shape path (it must give the same row either way)
WORKED = [
    (COMMON, True),
    ({**COMMON, "userId": 123, "timestamp": 1709287200000}, True),  # integer ids and epoch-ms numbers are plain
    ({"type": "page", "anonymousId": "a", "name": "Home", "event": {"x": 1}}, True),  # event read only for tracks
    ({"type": "alias", "userId": "u", "previousId": "p"}, True),
    ({"type": "group", "userId": "u", "groupId": "g", "traits": {}}, True),
    ({**COMMON, "sentAt": "2024-03-01T10:00:01Z", "originalTimestamp": "2024-03-01T10:00:00Z"}, True),
    ({**COMMON, "event": "é 😀"}, True),
    ({**COMMON, "userId": " u1"}, False),  # trimmed
    ({**COMMON, "userId": ""}, False),  # empty = absent
    ({**COMMON, "userId": 1.5}, False),  # respelled by DuckDB
    ({**COMMON, "userId": True}, False),  # a reason
    ({**COMMON, "type": "Track"}, False),  # case folded
    ({**COMMON, "event": " "}, False),  # track without event
    ({**COMMON, "timestamp": "2024-03-01t10:00:00z"}, False),  # a rarer ISO spelling
    ({**COMMON, "timestamp": "2024-13-01T00:00:00Z"}, False),  # does not parse
    ({**COMMON, "timestamp": "2199-01-01T00:00:00Z"}, False),  # out of range
    ({**COMMON, "sentAt": "garbage"}, False),  # stored as NULL
    ({**COMMON, "properties": []}, False),
    ({"type": "alias", "userId": "u"}, False),
    ({"type": "group", "userId": "u"}, False),
    ({"type": "identify", "traits": {}}, False),
    ({"event": "E", "userId": "u"}, False),  # no type: a track
]


def test_worked_records_take_the_expected_path_and_agree():
    texts = [json.dumps(m, ensure_ascii=False) for m, _ in WORKED]
    assert _agree(texts) == [common for _, common in WORKED]


def test_escapes_the_json_writer_keeps_take_the_full_formulation():
    """DuckDB writes ``\\u00e9`` back as ``é`` (plain), but keeps an escaped quote or backslash."""
    texts = [
        json.dumps({**COMMON, "event": "é"}, ensure_ascii=True),
        '{"type":"track","event":"E","userId":"u\\u0031"}',
        json.dumps({**COMMON, "userId": 'q"t'}),
        json.dumps({**COMMON, "event": "a\\b"}),
    ]
    assert _agree(texts) == [True, True, False, False]

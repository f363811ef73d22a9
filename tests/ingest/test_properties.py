"""Hypothesis: the SQL contract equals the naive oracle; file split / order / repeats change nothing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from unittest.mock import patch

import duckdb
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ingest.load as load
from engine.store import Store
from ingest.contract import chunk_sql
from ingest.load import ingest_paths
from tests.ingest import oracle
from tests.ingest.conftest import NOW

ABSENT = object()
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FEW = settings(SETTINGS, max_examples=8)

ident = st.one_of(
    st.sampled_from(["u1", "  u1 ", "", "   ", "\tx\n", "ünï 😀", "a\\b", 'q"t']),
    st.integers(-(2**53), 2**53),
    st.sampled_from([7.5, True, False, {}, {"a": 1}, [], [1], None]),
)
moment = st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2200, 1, 1))
offset = st.sampled_from(["Z", "z", "+02:00", "-05:30", "+0530", "-11", "+00:00", ""])


def _spell(d: datetime, basic: bool, sep: str, precision: int, digits: int, comma: bool, zone: str) -> str:
    """One ISO-8601 spelling of ``d``: basic or extended, a separator, hh / hh:mm / hh:mm:ss, a fraction."""
    date = d.strftime("%Y%m%d" if basic else "%Y-%m-%d")
    clock = [d.strftime("%H"), d.strftime("%M"), d.strftime("%S")][: precision + 1]
    text = date + ("T" if basic and sep == " " else sep) + ("" if basic else ":").join(clock)
    if precision == 2 and digits:
        text += ("," if comma else ".") + (d.strftime("%f") + "123")[:digits]
    return text + zone


iso_time = st.one_of(
    st.builds(_spell, moment, st.booleans(), st.sampled_from(["T", "t", " "]), st.integers(0, 2), st.integers(0, 9), st.booleans(), offset),
    moment.map(lambda d: d.strftime("%Y-%m-%d")),
    st.sampled_from(ISO_EDGES := [
        "2024-03-01T24:00:00Z", "2024-03-01T24:00:01Z", "2024-03-01T12:00:60Z", "2024-W09-5", "2024-061", "20240301",
        "2024-03-01T1000", "20240301T10:00:00Z", "2024-03-01T10:00:00 UTC", "2024-03-01T10:00:00+24:00", "2024-03-01T10Z",
        "2024-03-01Z", "2024-03-01T10:00:00.Z", "2024-02-29t23:59:59.999999999z", "2023-02-29T00:00:00Z",
    ]),
)
epoch = st.builds(lambda d: int((d.replace(tzinfo=timezone.utc) - oracle.EPOCH) / timedelta(milliseconds=1)), moment)
time_value = st.one_of(
    iso_time, epoch, epoch.map(str),
    st.sampled_from(["yesterday", "2024-13-01", "2024-02-30T00:00:00Z", "", True, {"t": 1}, None, 10**15]),
)
obj = st.sampled_from([{}, {"a": 1, "b": {"c": "é"}}, [1], "s", 3, True, None])
FIELDS = {
    "type": st.sampled_from(["track", "identify", "alias", "page", "screen", "group", "Track", " page ", "foo", 5, None]),
    "event": st.sampled_from(["E", "", "  ", "Événement 😀", 3, None]),
    "name": st.sampled_from(["Home", 4, None]),
    "messageId": ident,
    "userId": ident,
    "user_id": ident,
    "anonymousId": ident,
    "previousId": ident,
    "previous_id": ident,
    "groupId": ident,
    "timestamp": time_value,
    "originalTimestamp": time_value,
    "sentAt": time_value,
    "receivedAt": time_value,
    "received_at": time_value,
    "properties": obj,
    "traits": obj,
    "context": obj,
}
message = st.fixed_dictionaries({k: st.one_of(st.just(ABSENT), v) for k, v in FIELDS.items()}).map(
    lambda d: {k: v for k, v in d.items() if v is not ABSENT}
)
NOT_JSON = [  # what DuckDB's parser reads and RFC 8259 does not, and nesting
    '{"type":"track","event":"E","userId":"u","properties":{"v":NaN}}',
    '{"type":"track","event":"E","userId":"u","properties":{"v":[1, -Infinity , inf]}}',
    '{"type":"track","event":"E","userId":"u","properties":{"v":[1,2,]},}',
    '{"type":"track","event":"E","userId":"u","properties":{"v":nan, "w":{"a":1 , }}}',
    '{"type":"track","event":"E","userId":"u","properties":{"s":"NaN, Infinity, [1,] {,}"}}',
    "NaN", "[1,]",
    '{"type":"track","event":"E","userId":"u","properties":{"p":' + "[" * 511 + "]" * 511 + "}}",
    '{"type":"track","event":"E","userId":"u","properties":{"p":' + "[" * 600 + "]" * 600 + "}}",
    '{"type":"track","event":"E","userId":"u","properties":{"p":' + '{"a":' * 700 + "1" + "}" * 700 + "}}",
    '{"type":"track","event":"E","userId":"u","properties":{"p":"' + "[" * 600 + '"}}',
]
record = st.one_of(
    message.map(lambda m: json.dumps(m, ensure_ascii=False)), st.sampled_from(["[1]", '"s"', "{bad", "42"] + NOT_JSON)
)


def _contract_rows(texts: list[str]) -> list[dict]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("_in", pa.table({"line": pa.array(range(1, len(texts) + 1), pa.int64()), "text": texts}))
    got = con.sql(chunk_sql("_in", NOW)).pl().rows(named=True)
    con.close()
    return got


def test_every_listed_edge_case_equals_the_naive_oracle():
    """The hand-picked records and time spellings, each once (hypothesis samples only some)."""
    times = ISO_EDGES + ["2024-03-01t10:00:00z", "20240301T100000Z", "20240301t100000,25+0100", "2024-03-01 10:00+05"]
    texts = NOT_JSON + [json.dumps({"type": "track", "event": "E", "userId": "u", "timestamp": t}) for t in times]
    for row, text in zip(_contract_rows(texts), texts, strict=True):
        reasons, columns = oracle.check(text, NOW)
        assert row["reasons"] == ("; ".join(reasons) or None), text
        if not reasons:
            assert {k: row[k] for k in columns} == columns, text


@SETTINGS
@given(st.lists(record, min_size=1, max_size=25))
def test_sql_contract_equals_the_naive_oracle(texts):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("_in", pa.table({"line": pa.array(range(1, len(texts) + 1), pa.int64()), "text": texts}))
    got = con.sql(chunk_sql("_in", NOW)).pl().rows(named=True)
    con.close()
    assert len(got) == len(texts)
    for row, text in zip(got, texts):
        reasons, columns = oracle.check(text, NOW)
        assert row["reasons"] == ("; ".join(reasons) or None), text
        if not reasons:
            assert {k: row[k] for k in columns} == columns, text


# -- order independence --------------------------------------------------------------------------------
def _base(i: int) -> dict:
    return {"type": "track", "event": f"E{i % 3}", "userId": f"u{i % 4}", "timestamp": f"2024-03-{1 + i % 28:02d}T10:00:00Z",
            "properties": {"i": i, "text": "é😀"}}


unique_events = st.lists(
    st.tuples(st.integers(0, 10_000), st.booleans()), min_size=1, max_size=20, unique_by=lambda t: t[0]
).map(lambda items: [dict(_base(i), **({"messageId": f"m{i}"} if with_id else {})) for i, with_id in items]
       + ["{not json", {"type": "track", "event": "E", "timestamp": "2024-03-01T10:00:00Z"}])

EVENT_COLUMNS = "message_id, type, event, name, timestamp, user_id, anonymous_id, previous_id, group_id, " \
    "original_timestamp, sent_at, received_at, properties, traits, context, raw, payload_hash"


def _write(path, records, fmt):
    texts = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records]
    if fmt == "json":
        path = path.with_suffix(".json")
        path.write_text("[" + ",".join(t if not t.startswith("{not") else '"not json"' for t in texts) + "]", encoding="utf-8")
    else:
        path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def _stored(paths):
    with Store.open(None) as store:
        for group in paths:
            ingest_paths(store, group, now=NOW, chunk_records=8)
        return store.con.execute(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY message_id").fetchall()


@FEW
@given(records=unique_events, data=st.data())
def test_any_split_any_order_ingested_twice_gives_the_same_events(tmp_path_factory, records, data):
    folder = tmp_path_factory.mktemp("split")
    expected = _stored([[_write(folder / "all.ndjson", records, "ndjson")]])
    cuts = sorted(data.draw(st.lists(st.integers(0, len(records)), max_size=4)))
    pieces = [records[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)]) if records[a:b]]
    files = [
        _write(folder / f"part{k}.ndjson", piece, data.draw(st.sampled_from(["ndjson", "json"])))
        for k, piece in enumerate(pieces)
    ]
    order = data.draw(st.permutations(files))
    again = data.draw(st.lists(st.sampled_from(files), max_size=3))
    runs = [list(order[: len(order) // 2]), list(order[len(order) // 2 :]), again]
    # how later runs find the stored ids: a semi-join per chunk, loaded after a few, or loaded at once
    with patch.object(load, "SCANS_BEFORE_LOAD", data.draw(st.sampled_from([0, 1, 10**6]))):
        assert _stored(runs) == expected


@SETTINGS
@given(st.lists(st.lists(st.tuples(st.integers(0, 2**64 - 1) | st.integers(0, 50), st.integers(-1, 99)), max_size=40), max_size=12),
       st.lists(st.integers(0, 2**64 - 1) | st.integers(0, 50), max_size=40))
def test_seen_ids_answers_like_a_python_dict(batches, probes):
    """The sorted levels of SeenIds, however they merged, give every location added under a hash."""
    import numpy as np

    from ingest.load import SeenIds

    seen, naive = SeenIds(), {}
    for batch in batches:
        seen.add(np.array([h for h, _ in batch], dtype=np.uint64), np.array([loc for _, loc in batch], dtype=np.int64))
        for h, loc in batch:
            naive.setdefault(h, []).append(loc)
        queries = probes + [h for h, _ in batch]
        index, locations = seen.lookup(np.array(queries, dtype=np.uint64))
        got = sorted(zip(index.tolist(), locations.tolist()))
        assert got == sorted((i, loc) for i, q in enumerate(queries) for loc in naive.get(q, []))


def test_locations_pack_ingest_id_and_line_or_are_unknown():
    import numpy as np

    from ingest.load import SeenIds

    packed = SeenIds.location(np.array([1, 7, 3, -1, 1 << 30]), np.array([5, 0, -1, 4, 2]))
    assert packed.tolist() == [(1 << 40) | 5, 7 << 40, -1, -1, -1]

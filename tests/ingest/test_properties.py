"""Hypothesis: the SQL contract equals the naive oracle; file split / order / repeats change nothing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import duckdb
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
offset = st.sampled_from(["Z", "+02:00", "-05:30", ""])
iso_time = st.builds(
    lambda d, o, frac: d.strftime("%Y-%m-%dT%H:%M:%S") + (d.strftime(".%f") if frac else "") + o, moment, offset, st.booleans()
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
record = st.one_of(message.map(lambda m: json.dumps(m, ensure_ascii=False)), st.sampled_from(["[1]", '"s"', "{bad", "42"]))


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
    assert _stored(runs) == expected

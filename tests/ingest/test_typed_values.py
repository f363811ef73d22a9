"""Typed values of the binary formats (Parquet, Avro) mean what the same JSON in NDJSON means.

Decimals keep their exact digits (raw is lossless, events.md), NaN / Infinity make the record
invalid JSON in every format, and bytes are UTF-8 text or the record is quarantined (events.md:
invalid UTF-8 is a quarantine reason). Each test failed before session 6's fixes.
"""

from __future__ import annotations

import json
from decimal import Decimal

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.store import Store

from .conftest import event, ingest, reasons, rows, write_lines

BASE = {"type": "track", "event": "E", "userId": "u", "timestamp": "2024-01-01T00:00:00Z"}
NAN_REASON = "invalid JSON: NaN and Infinity are not JSON numbers"


def parquet(path, columns: dict[str, pa.Array]):
    count = len(next(iter(columns.values())))
    base = {k: pa.array([v] * count) for k, v in BASE.items()}
    pq.write_table(pa.table({**base, "messageId": pa.array([f"{path.stem}-{i}" for i in range(1, count + 1)]), **columns}), path)
    return path


def avro(path, properties_type: object, values: list[object]):
    schema = fastavro.parse_schema({"type": "record", "name": "M", "fields": [
        *({"name": n, "type": "string"} for n in (*BASE, "messageId")),
        {"name": "properties", "type": {"type": "record", "name": "P", "fields": [{"name": "x", "type": properties_type}]}},
    ]})
    with path.open("wb") as fh:
        fastavro.writer(fh, schema, [{**BASE, "messageId": f"{path.stem}-{i}", "properties": {"x": v}} for i, v in enumerate(values, start=1)])
    return path


def raw_of(store, message_id: str) -> str:
    return rows(store, "SELECT raw FROM events WHERE message_id = ?", [message_id])[0][0]


# -- 3. decimals: exact, and never a panic ------------------------------------------------------------
EXACT = Decimal("12345678901234567890.12")


@pytest.mark.parametrize("kind", [pa.decimal128(38, 2), pa.decimal256(40, 2), pa.decimal256(76, 2)])
def test_parquet_decimals_keep_their_exact_digits_as_a_json_number(store, tmp_path, kind):
    path = parquet(tmp_path / "d.parquet", {"properties.revenue": pa.array([EXACT, Decimal("-0.50"), None], kind)})
    lines = write_lines(tmp_path / "d.ndjson", [f'{{"type":"track","event":"E","userId":"u","messageId":"n","properties":{{"revenue":{EXACT}}}}}'])
    report = ingest(store, path, lines)
    assert [(f.status, f.ingested) for f in report.files] == [("ingested", 3), ("ingested", 1)]
    assert '"properties":{"revenue":12345678901234567890.12}' in raw_of(store, "d-1")
    assert json.loads(raw_of(store, "d-2"), parse_float=Decimal)["properties"] == {"revenue": Decimal("-0.50")}
    assert event(store, "d-3")["properties"] is None
    # the stored object is the same as for the same number sent in NDJSON (DuckDB's spelling, see docs)
    assert event(store, "d-1")["properties"] == event(store, "n")["properties"]


def test_parquet_decimals_nested_in_structs_and_lists(store, tmp_path):
    structs = pa.array([{"total": Decimal("1.10"), "items": [Decimal("0.55"), None]}, None],
                       pa.struct([("total", pa.decimal256(40, 2)), ("items", pa.list_(pa.decimal128(10, 2)))]))
    report = ingest(store, parquet(tmp_path / "s.parquet", {"properties": structs}))
    assert report.ingested == 2
    assert '"properties":{"total":1.10,"items":[0.55,null]}' in raw_of(store, "s-1")
    assert event(store, "s-2")["properties"] is None


def test_avro_decimals_keep_their_exact_digits(store, tmp_path):
    kind = {"type": "bytes", "logicalType": "decimal", "precision": 40, "scale": 2}
    ingest(store, avro(tmp_path / "a.avro", kind, [EXACT]))
    assert '"properties":{"x":12345678901234567890.12}' in raw_of(store, "a-1")


@settings(max_examples=25, deadline=None)
@given(st.decimals(min_value=Decimal("-1e30"), max_value=Decimal("1e30"), places=3, allow_nan=False, allow_infinity=False))
def test_a_decimal_means_the_same_in_parquet_avro_and_ndjson(tmp_path_factory, value):
    tmp = tmp_path_factory.mktemp("dec")
    text = format(value, "f")
    with Store.open(None) as store:
        ingest(store,
               parquet(tmp / "p.parquet", {"properties.x": pa.array([value], pa.decimal256(40, 3))}),
               avro(tmp / "a.avro", {"type": "bytes", "logicalType": "decimal", "precision": 40, "scale": 3}, [value]),
               write_lines(tmp / "n.ndjson", [f'{{"type":"track","event":"E","userId":"u","messageId":"n-1","properties":{{"x":{text}}}}}']))
        stored = {m: (json.loads(r, parse_float=Decimal)["properties"]["x"], p)
                  for m, r, p in rows(store, "SELECT message_id, raw, CAST(properties AS VARCHAR) FROM events")}
    assert stored["p-1"][0] == stored["a-1"][0] == stored["n-1"][0] == value
    assert stored["p-1"][1] == stored["a-1"][1] == stored["n-1"][1]


# -- 5. NaN and Infinity: not JSON, in every format ------------------------------------------------------
@pytest.mark.parametrize("kind", [pa.float64(), pa.float32()])
def test_parquet_nan_and_infinity_quarantine_the_record_as_in_avro_and_ndjson(store, tmp_path, kind):
    values = pa.array([1.5, float("nan"), float("inf"), float("-inf"), None], kind)
    path = parquet(tmp_path / "f.parquet", {"properties.amount": values})
    report = ingest(store, path, avro(tmp_path / "a.avro", "double", [float("nan"), 2.5]),
                    write_lines(tmp_path / "n.ndjson", ['{"type":"track","event":"E","userId":"u","properties":{"amount":NaN}}']))
    assert [(f.ingested, f.quarantined) for f in report.files] == [(2, 3), (1, 1), (0, 1)]
    assert set(rows(store, "SELECT reason FROM quarantine")) == {(NAN_REASON,)}
    assert rows(store, "SELECT line FROM quarantine WHERE source_file LIKE '%f.parquet' ORDER BY line") == [(2,), (3,), (4,)]
    assert '"amount":-Infinity' in rows(store, "SELECT raw FROM quarantine WHERE line = 4")[0][0]
    assert json.loads(event(store, "f-1")["properties"]) == {"amount": 1.5}
    assert event(store, "f-5")["properties"] is None


def test_parquet_nan_inside_a_struct_or_a_list_quarantines_the_record(store, tmp_path):
    nested = pa.array([{"a": float("nan"), "b": [1.0]}, {"a": 2.0, "b": [float("inf")]}, {"a": 3.0, "b": [4.0]}])
    ingest(store, parquet(tmp_path / "s.parquet", {"properties": nested}))
    assert reasons(store) == {1: NAN_REASON, 2: NAN_REASON}
    assert json.loads(event(store, "s-3")["properties"]) == {"a": 3.0, "b": [4.0]}


# -- 6. bytes: UTF-8 text, or the record is quarantined, in Parquet and Avro alike ---------------------
def test_bytes_that_are_utf8_are_text_in_parquet_and_avro(store, tmp_path):
    text = "Zürich".encode()
    report = ingest(store, parquet(tmp_path / "p.parquet", {"properties.x": pa.array([text], pa.binary())}),
                    avro(tmp_path / "a.avro", "bytes", [text]))
    assert report.ingested == 2
    assert json.loads(event(store, "p-1")["properties"]) == json.loads(event(store, "a-1")["properties"]) == {"x": "Zürich"}


def test_a_parquet_string_column_written_as_plain_binary_is_read_as_text(store, tmp_path):
    """Older writers (Hive, Impala) store strings as BYTE_ARRAY without the UTF8 annotation."""
    path = tmp_path / "old.parquet"
    pq.write_table(pa.table({k: pa.array([v.encode()], pa.binary()) for k, v in {**BASE, "messageId": "old"}.items()}), path)
    assert ingest(store, path).ingested == 1
    assert event(store, "old")["user_id"] == "u"


def test_bytes_that_are_not_utf8_quarantine_the_record_in_parquet_and_avro(store, tmp_path):
    blob = b"\xff\x00\x01"
    report = ingest(
        store,
        parquet(tmp_path / "p.parquet", {"properties.blob": pa.array([blob, b"ok", None], pa.binary()),
                                         "properties.list": pa.array([[b"a"], [b"b", b"\xfe"], None], pa.list_(pa.large_binary()))}),
        avro(tmp_path / "a.avro", "bytes", [blob, b"ok"]),
    )
    assert [(f.ingested, f.quarantined) for f in report.files] == [(1, 2), (1, 1)]
    assert rows(store, "SELECT regexp_replace(source_file, '.*/', ''), line, reason FROM quarantine ORDER BY 1, 2") == [
        ("a.avro", 1, "invalid UTF-8 in field(s) properties.x"),
        ("p.parquet", 1, "invalid UTF-8 in column(s) properties.blob"),
        ("p.parquet", 2, "invalid UTF-8 in column(s) properties.list"),
    ]
    shown = rows(store, "SELECT raw FROM quarantine WHERE line = 1 ORDER BY source_file")
    assert all('"\ufffd\\u0000\\u0001"' in raw for (raw,) in shown)
    assert event(store, "p-3")["properties"] is None
    assert json.loads(event(store, "a-2")["properties"]) == {"x": "ok"}

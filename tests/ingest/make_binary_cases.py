"""Write the binary ingest cases (gzip, Parquet, Avro, broken bytes) into tests/cases/ingest/.

The text cases are hand-written; these cannot be, so this script makes them deterministically.
Re-run it after changing it: ``python -m tests.ingest.make_binary_cases``.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent.parent / "cases" / "ingest"


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def _messages(n: int, prefix: str) -> list[dict]:
    return [
        {
            "type": "track",
            "event": "Tick",
            "messageId": f"{prefix}-{i}",
            "userId": f"u{i % 7}",
            "timestamp": f"2024-03-01T10:{i % 60:02d}:00Z",
            "properties": {"i": i, "pad": "x" * 40},
        }
        for i in range(n)
    ]


def main() -> None:
    (HERE / "valid.ndjson.gz").write_bytes(_gzip((HERE / "valid.ndjson").read_bytes()))

    lines = "".join(json.dumps(m) + "\n" for m in _messages(400, "t")).encode()
    whole = _gzip(lines)
    (HERE / "truncated.ndjson.gz").write_bytes(whole[: len(whole) * 6 // 10])

    good = b'{"type":"track","event":"ok","messageId":"i-1","userId":"u1","timestamp":"2024-03-01T10:00:00Z"}\n'
    bad = b'{"type":"track","event":"caf\xe9 \xff","messageId":"i-2","userId":"u1","timestamp":"2024-03-01T10:00:00Z"}\n'
    good2 = good.replace(b"i-1", b"i-3")
    (HERE / "invalid_utf8.ndjson").write_bytes(good + bad + good2)

    big = {"type": "track", "event": "Big", "messageId": "h-2", "userId": "u1", "timestamp": "2024-03-01T10:00:00Z",
           "properties": {"blob": "y" * 40_000}}
    small = [dict(m, messageId=f"h-{k}") for k, m in ((1, big), (3, big))]
    for m in small:
        m["properties"] = {"blob": "small"}
    (HERE / "huge_line.ndjson").write_text(
        "\n".join(json.dumps(m, separators=(",", ":")) for m in (small[0], big, small[1])) + "\n"
    )

    # Parquet: the same three messages, nested as structs and as dotted column names
    ts = pa.array([1709287200000000, 1709290800000000, 1709294400000000], pa.timestamp("us", tz="UTC"))
    structs = pa.table(
        {
            "type": ["track", "track", "identify"],
            "messageId": ["p-1", "p-2", "p-3"],
            "userId": ["u1", None, "u3"],
            "anonymousId": [None, "a2", None],
            "event": ["Order Completed", "Order Completed", None],
            "timestamp": ts,
            "properties": pa.array(
                [{"total": 19.5, "order": {"id": "o1"}}, {"total": None, "order": {"id": None}}, None],
                pa.struct([("total", pa.float64()), ("order", pa.struct([("id", pa.string())]))]),
            ),
            "traits": pa.array([None, None, {"plan": "pro"}], pa.struct([("plan", pa.string())])),
        }
    )
    pq.write_table(structs, HERE / "structs.parquet")
    dotted = pa.table(
        {
            "type": structs["type"],
            "messageId": structs["messageId"],
            "userId": structs["userId"],
            "anonymousId": structs["anonymousId"],
            "event": structs["event"],
            "timestamp": ts,
            "properties.total": pa.array([19.5, None, None], pa.float64()),
            "properties.order.id": pa.array(["o1", None, None], pa.string()),
            "traits.plan": pa.array([None, None, "pro"], pa.string()),
        }
    )
    pq.write_table(dotted, HERE / "dotted.parquet")

    schema = {
        "type": "record",
        "name": "Message",
        "fields": [
            {"name": "type", "type": "string"},
            {"name": "messageId", "type": ["null", "string"], "default": None},
            {"name": "userId", "type": ["null", "string", "long"], "default": None},
            {"name": "event", "type": ["null", "string"], "default": None},
            {"name": "timestamp", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": None},
            {"name": "properties", "type": ["null", {"type": "map", "values": ["null", "string", "double"]}], "default": None},
        ],
    }
    records = [
        {"type": "track", "messageId": "v-1", "userId": "u1", "event": "Order Completed", "timestamp": 1709287200000,
         "properties": {"total": 19.5, "currency": "EUR"}},
        {"type": "identify", "messageId": "v-2", "userId": 42, "event": None, "timestamp": 1709287200000, "properties": None},
        {"type": "track", "messageId": "v-3", "userId": None, "event": "No User", "timestamp": 1709287200000, "properties": None},
    ]
    with open(HERE / "events.avro", "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(schema), records)


if __name__ == "__main__":
    main()

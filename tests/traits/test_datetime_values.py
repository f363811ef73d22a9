"""The datetime conversion reads ISO-8601 exactly as event times are read (traits.md: "ISO-8601
strings (as event times, events.md)"): one grammar, :mod:`engine.iso8601`, in SQL and in Python."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import iso8601
from tests.ingest.oracle import parse_iso
from tests.traits.oracle import round_half_away
from traits.values import VALUE_TYPES

CON = duckdb.connect()


def as_value(raw: object) -> datetime | None:
    """What the derived datetime column gives for the property value ``raw``."""
    expr = VALUE_TYPES["datetime"].column("at").expression
    props = json.dumps({"at": raw})
    return CON.sql(f"SELECT {expr} FROM (SELECT ?::JSON AS properties, 'track' AS type)", params=[props]).fetchall()[0][0]


def as_sql_timestamp(text: str) -> datetime | None:
    return CON.sql(f"SELECT {iso8601.timestamp_sql('s')} FROM (SELECT ?::VARCHAR AS s)", params=[text]).fetchall()[0][0]


SPELLINGS = [
    ("2025-02-01T10:00:00Z", datetime(2025, 2, 1, 10, tzinfo=UTC)),
    ("2025-02-01t10:00:00z", datetime(2025, 2, 1, 10, tzinfo=UTC)),
    ("20250201T100000Z", datetime(2025, 2, 1, 10, tzinfo=UTC)),
    ("2025-02-01T10:00:00,5Z", datetime(2025, 2, 1, 10, 0, 0, 500000, tzinfo=UTC)),
    ("2025-02-01T10", datetime(2025, 2, 1, 10, tzinfo=UTC)),
    ("2025-02-01 10:30", datetime(2025, 2, 1, 10, 30, tzinfo=UTC)),
    (" 2025-02-01T10:00:00+0100\n", datetime(2025, 2, 1, 9, tzinfo=UTC)),
    ("2025-02-01T10:00:00-05", datetime(2025, 2, 1, 15, tzinfo=UTC)),
    ("2025-02-01T24:00:00Z", datetime(2025, 2, 2, tzinfo=UTC)),
    ("2025-02-01", datetime(2025, 2, 1, tzinfo=UTC)),
    (1738404000000, datetime(2025, 2, 1, 10, tzinfo=UTC)),
    (1738404000000.0006, datetime(2025, 2, 1, 10, 0, 0, 1, tzinfo=UTC)),  # rounded, as at ingest
    ("1738404000000", None),  # a digit string is not ISO-8601 (only event times take epoch-ms strings)
    ("2025-02-30", None), ("2025-13-01T00:00:00Z", None), ("0000-01-01", None), ("2025-02-01T10:00:00+24:00", None),
    ("20250201", None), ("2025-W05-6", None), ("", None), (True, None), ({"at": "2025-02-01"}, None),
]


@pytest.mark.parametrize(("raw", "expected"), SPELLINGS, ids=[repr(r) for r, _ in SPELLINGS])
def test_each_spelling(raw, expected):
    assert as_value(raw) == expected
    if isinstance(raw, str):
        assert iso8601.parse(raw) == expected


_piece = st.sampled_from(["2025", "-", "02", "01", "1999", "12", "31", "T", "t", " ", "10", ":", "00", "59",
                          "60", "24", ".", ",", "5", "123456789", "Z", "z", "+", "01", "05:30", "0530", "13",
                          "\t", "W", "x", "é", "0000"])
_texts = st.one_of(st.lists(_piece, max_size=12).map("".join), st.text(max_size=30))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_texts)
def test_values_read_strings_as_event_times_do(text):
    """For any string: the datetime value == the events oracle's event time (digit strings aside:
    those are epoch milliseconds for an event time, no value for a datetime property), and the
    Python reading (dates in definitions) == the SQL one."""
    expected = None if text.strip(iso8601.WHITESPACE).isdigit() else parse_iso(text.strip(iso8601.WHITESPACE))
    assert as_value(text) == expected
    trimmed = text.strip(iso8601.WHITESPACE)
    assert iso8601.parse(text) == as_sql_timestamp(trimmed) == (None if trimmed.startswith("0000") else parse_iso(trimmed))


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=-62135596800000, max_value=253402300799999, allow_nan=False))
def test_epoch_milliseconds_round_to_the_microsecond(ms):
    micros = round_half_away(ms * 1000)
    assert as_value(ms) == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)

"""Edges a user can reach from a definition: property paths differing only in case, windows and
instants near the ends of the calendar."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from tests.traits.helpers import Ev, one, ts
from traits.values import column_name


@given(st.text(alphabet="abcXYZ_.", min_size=1, max_size=6), st.text(alphabet="abcXYZ_.", min_size=1, max_size=6))
def test_distinct_paths_get_column_names_distinct_for_duckdb(a: str, b: str) -> None:
    # DuckDB compares column names without case: two properties must never share one column
    if a != b:
        assert column_name("txt", a).lower() != column_name("txt", b).lower()


def test_a_lowercase_path_keeps_a_readable_column_name() -> None:
    assert column_name("num", "order.total") == "num:order.total"
    assert column_name("txt", "channelType").startswith("txt:channelType#")


def test_properties_differing_only_in_case_are_two_properties() -> None:
    events = [Ev("m1", "P", "E", ts("2025-01-01T00:00:00Z"), {"channelType": "voice", "ChannelType": "chat"})]
    defs = [
        {"name": "lower", "type": "last", "event": "E", "property": "channelType"},
        {"name": "upper", "type": "last", "event": "E", "property": "ChannelType"},
        {"name": "upper_voice", "type": "event_counter", "event": "E",
         "conditions": [{"property": "ChannelType", "operator": "equals", "value": "voice"}]},
    ]
    assert one(defs, events, ts("2025-02-01T00:00:00Z")) == {"lower": "voice", "upper": "chat", "upper_voice": 0}


def test_windows_reaching_before_year_one_hold_every_earlier_event() -> None:
    events = [
        Ev("m1", "P", "E", ts("0001-01-02T00:00:00Z")),
        Ev("m2", "P", "E", ts("0001-06-01T00:00:00Z")),
    ]
    defs = [
        {"name": "days", "type": "event_counter", "event": "E", "window": {"within_days": 3650}},
        {"name": "hours", "type": "event_counter", "event": "E", "window": {"within_hours": 10**9}},
        {"name": "ago", "type": "event_counter", "event": "E", "window": {"between_days_ago": [100, 10**9]}},
        {"name": "ends_before_year_one", "type": "event_counter", "event": "E", "window": {"between_days_ago": [3650, 3651]}},
    ]
    assert one(defs, events, datetime(2, 1, 1, tzinfo=UTC)) == {
        "days": 2, "hours": 2, "ago": 2, "ends_before_year_one": 0,
    }


def test_between_may_end_on_the_last_day_of_the_calendar() -> None:
    events = [Ev("m1", "P", "E", ts("2025-01-01T00:00:00Z"))]
    defs = [{"name": "n", "type": "event_counter", "event": "E", "window": {"between": ["2024-01-01", "9999-12-31"]}}]
    assert one(defs, events, ts("2025-02-01T00:00:00Z")) == {"n": 1}

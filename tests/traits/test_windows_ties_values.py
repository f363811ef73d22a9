"""Windows at their exact boundaries, sessions, tie rules, value conversions and output types."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.traits.helpers import Ev, one

AS_OF = datetime(2025, 3, 1, tzinfo=UTC)
US = timedelta(microseconds=1)


def at(*times, props=None, event="E"):
    return [Ev(message_id=f"m{i:03d}", profile_id="P", event=event, timestamp=t, properties=(props or {}))
            for i, t in enumerate(times)]


def count(window, times):
    return one([{"name": "n", "type": "event_counter", "event": "E", "window": window}], at(*times), AS_OF)["n"]


def test_all_time_includes_as_of_exactly_and_nothing_after():
    assert count(None, [AS_OF, AS_OF + US, datetime(1990, 1, 1, tzinfo=UTC)]) == 2
    assert count({"all_time": True}, [AS_OF, AS_OF + US]) == 1


def test_within_days_is_open_at_the_start_closed_at_as_of():
    start = AS_OF - timedelta(days=7)
    assert count({"within_days": 7}, [start]) == 0
    assert count({"within_days": 7}, [start + US]) == 1
    assert count({"within_days": 7}, [AS_OF, AS_OF + US]) == 1


def test_within_hours_boundaries():
    start = AS_OF - timedelta(hours=3)
    assert count({"within_hours": 3}, [start, start + US, AS_OF]) == 2


def test_between_days_ago_boundaries():
    low, high = AS_OF - timedelta(days=90), AS_OF - timedelta(days=30)
    assert count({"between_days_ago": [30, 90]}, [low, low + US, high, high + US]) == 2


def test_between_bare_dates_cover_whole_days_and_cap_at_as_of():
    w = {"between": ["2025-01-01", "2025-01-31"]}
    day0 = datetime(2025, 1, 1, tzinfo=UTC)
    end = datetime(2025, 2, 1, tzinfo=UTC)
    assert count(w, [day0 - US, day0, end - US, end]) == 2
    w2 = {"between": ["2025-02-01", "2025-12-31"]}
    assert count(w2, [AS_OF, AS_OF + US, datetime(2025, 6, 1, tzinfo=UTC)]) == 1
    w3 = {"between": ["2025-01-01T10:00:00Z", "2025-01-01T11:00:00Z"]}
    t = datetime(2025, 1, 1, 10, tzinfo=UTC)
    assert count(w3, [t - US, t, t + timedelta(hours=1), t + timedelta(hours=1) + US]) == 2


def test_session_latest_session_only():
    m = timedelta(minutes=30)
    last = AS_OF - timedelta(minutes=29)
    # gaps: 30 (split), 29.99 (same), then last
    times = [last - 2 * m, last - m + US, last - m + 2 * US, last]
    assert count({"session_minutes": 30}, times) == 1 + 2
    # the gap exactly 30 minutes splits; just under does not
    assert count({"session_minutes": 30}, [last - m, last]) == 1
    assert count({"session_minutes": 30}, [last - m + US, last]) == 2


def test_session_expires_m_minutes_after_its_last_event():
    assert count({"session_minutes": 30}, [AS_OF - timedelta(minutes=30)]) == 0
    assert count({"session_minutes": 30}, [AS_OF - timedelta(minutes=30) + US]) == 1
    # events after as_of neither extend nor open a session
    assert count({"session_minutes": 30}, [AS_OF - timedelta(minutes=40), AS_OF + US]) == 0


def test_windows_reaching_past_year_one_are_unbounded():
    """A session or day count longer than the calendar (config allows any positive integer) is not
    an overflow: nothing expires, every earlier event is within it."""
    old = datetime(1900, 1, 1, tzinfo=UTC)
    assert count({"session_minutes": 10**12}, [old, AS_OF - timedelta(days=30)]) == 2
    assert count({"within_days": 10**8}, [old, AS_OF, AS_OF + US]) == 2


def test_session_built_from_events_passing_the_conditions():
    times = [AS_OF - timedelta(minutes=50), AS_OF - timedelta(minutes=25), AS_OF - timedelta(minutes=5)]
    events = at(*times)
    events[1].properties = {"skip": True}
    defs = [{"name": "n", "type": "event_counter", "event": "E", "window": {"session_minutes": 30},
             "conditions": [{"property": "skip", "operator": "not_exists"}]}]
    # without the middle event the gap is 45 minutes: only the last event's session counts
    assert one(defs, events, AS_OF)["n"] == 1


def test_first_last_ties_follow_message_id():
    t = AS_OF - timedelta(days=1)
    events = [Ev(message_id=m, profile_id="P", event="E", timestamp=t, properties={"v": v})
              for m, v in (("b", "B"), ("a", "A"), ("c", "C"))]
    defs = [{"name": "f", "type": "first", "event": "E", "property": "v"},
            {"name": "l", "type": "last", "event": "E", "property": "v"}]
    assert one(defs, events, AS_OF) == {"f": "A", "l": "C"}


def test_first_last_skip_events_without_value():
    events = at(AS_OF - timedelta(days=3), AS_OF - timedelta(days=2), AS_OF - timedelta(days=1))
    events[0].properties = {"v": None}
    events[1].properties = {"v": "mid"}
    events[2].properties = {"v": "x"}
    defs = [{"name": "f", "type": "first", "event": "E", "property": "v"},
            {"name": "l", "type": "last", "event": "E", "property": "v", "value_type": "number"}]
    assert one(defs, events, AS_OF) == {"f": "mid", "l": None}


def _mf(values, value_type="text", min_frequency=1):
    events = [Ev(message_id=f"m{i}", profile_id="P", event="E", timestamp=AS_OF - timedelta(hours=i),
                 properties={"v": v}) for i, v in enumerate(values)]
    defs = [{"name": "x", "type": "most_frequent", "event": "E", "property": "v", "value_type": value_type,
             "min_frequency": min_frequency}]
    return one(defs, events, AS_OF)["x"]


def test_most_frequent_ties_smallest_by_code_point():
    assert _mf(["voice", "Voice", "voice", "Voice"]) == "Voice"
    assert _mf(["é", "z", "é", "z"]) == "z"
    assert _mf(["b", "a", "b"]) == "b"


def test_most_frequent_numbers_numerically_and_equal_spellings_merge():
    assert _mf([10, 9, 10, 9], "number") == 9.0
    assert _mf(["12", 12.0, 3, 3, 3, "12.0"], "number", 2) == 3.0
    assert _mf(["12", 12.0, 3, 3, "12.0"], "number", 2) == 12.0


def test_most_frequent_min_frequency():
    assert _mf(["a", "b"], min_frequency=2) is None
    assert _mf(["a", "b", "b"], min_frequency=2) == "b"


def test_unique_list_sorted_text_by_code_point_numbers_numerically():
    events = [Ev(message_id=f"m{i}", profile_id="P", event="E", timestamp=AS_OF - timedelta(hours=i),
                 properties={"v": v, "n": n}) for i, (v, n) in enumerate([("b", 10), ("é", 9), ("B", "9"), ("a", 100)])]
    defs = [{"name": "t", "type": "unique_list", "event": "E", "property": "v"},
            {"name": "n", "type": "unique_list", "event": "E", "property": "n", "value_type": "number"},
            {"name": "c", "type": "unique_list_count", "event": "E", "property": "n", "value_type": "number"}]
    assert one(defs, events, AS_OF) == {"t": ["B", "a", "b", "é"], "n": [9.0, 10.0, 100.0], "c": 3}


def test_unique_list_cap_keeps_values_seen_first():
    # first occurrences in time order: z, y, x, a (a also occurs late, but first late)
    seq = [("m1", 1, "z"), ("m2", 2, "y"), ("m3", 3, "z"), ("m4", 4, "x"), ("m5", 5, "a")]
    events = [Ev(message_id=m, profile_id="P", event="E", timestamp=AS_OF - timedelta(days=10 - d),
                 properties={"v": v}) for m, d, v in seq]
    defs = [{"name": "u", "type": "unique_list", "event": "E", "property": "v", "max_items": 2},
            {"name": "u3", "type": "unique_list", "event": "E", "property": "v", "max_items": 3},
            {"name": "c", "type": "unique_list_count", "event": "E", "property": "v"}]
    assert one(defs, events, AS_OF) == {"u": ["y", "z"], "u3": ["x", "y", "z"], "c": 4}


def test_aggregations():
    events = at(*(AS_OF - timedelta(hours=i) for i in range(5)))
    for e, v in zip(events, [1, "2.5", None, "x", -4], strict=True):
        e.properties = {"v": v}
    defs = [{"name": f, "type": "aggregation", "function": f, "event": "E", "property": "v"}
            for f in ("sum", "avg", "min", "max")]
    assert one(defs, events, AS_OF) == {"sum": -0.5, "avg": -0.5 / 3, "min": -4.0, "max": 2.5}
    assert one(defs, at(AS_OF, props={"v": "n/a"}), AS_OF) == {"sum": None, "avg": None, "min": None, "max": None}


def test_sum_of_integers_is_exact_up_to_2_53():
    events = at(AS_OF, AS_OF - US, props=None)
    events[0].properties = {"v": 2**53 - 2}
    events[1].properties = {"v": 1}
    defs = [{"name": "s", "type": "aggregation", "function": "sum", "event": "E", "property": "v"}]
    assert one(defs, events, AS_OF)["s"] == float(2**53 - 1)


@pytest.mark.parametrize(("raw", "value_type", "expected"), [
    ("voice", "text", "voice"), (12, "text", "12"), (1.5, "text", "1.5"), (12.0, "text", "12.0"),
    (True, "text", "true"), ({"a": 1}, "text", None), ([1], "text", None), ("中文 ü", "text", "中文 ü"),
    (12, "number", 12.0), ("12", "number", 12.0), (" -1.5e3\n", "number", -1500.0), (".5", "number", 0.5),
    ("nan", "number", None), ("inf", "number", None), ("1e400", "number", None), ("1_000", "number", None),
    ("0x10", "number", None), (True, "number", None), ("", "number", None), ("١٢", "number", None),
    (True, "boolean", True), ("FALSE", "boolean", False), ("True", "boolean", True), (1, "boolean", None),
    (" true", "boolean", None),
    ("2025-01-02T03:04:05Z", "datetime", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2025-01-02T03:04:05+02:00", "datetime", datetime(2025, 1, 2, 1, 4, 5, tzinfo=UTC)),
    ("2025-01-02T03:04:05.1234567", "datetime", datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
    ("2025-01-02", "datetime", datetime(2025, 1, 2, tzinfo=UTC)),
    (1735689600000, "datetime", datetime(2025, 1, 1, tzinfo=UTC)),
    (1735689600000.5, "datetime", datetime(2025, 1, 1, 0, 0, 0, 500, tzinfo=UTC)),
    ("2025-02-30", "datetime", None), ("yesterday", "datetime", None),
    ("2025-01-02T24:00:00Z", "datetime", datetime(2025, 1, 3, tzinfo=UTC)),  # as an event time reads it
    ("20250102T0304Z", "datetime", datetime(2025, 1, 2, 3, 4, tzinfo=UTC)),
    (True, "datetime", None),
])
def test_value_conversion_table(raw, value_type, expected):
    defs = [{"name": "x", "type": "last", "event": "E", "property": "v", "value_type": value_type}]
    assert one(defs, at(AS_OF - timedelta(days=1), props={"v": raw}), AS_OF)["x"] == expected

"""Every operator of the conditions table with present, absent, null and unconvertible values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.traits.helpers import Ev, frame_values, make_store
from traits.registry import parse_traits

AS_OF = datetime(2025, 3, 1, tzinfo=UTC)
ABSENT = object()

# operator, value, [(property value, holds?)]: absent and null are appended to every row (false,
# except for not_exists where they are true).
CASES = [
    ("equals", "Inbound", [("Inbound", True), ("inbound", False), (12, False), ({"a": 1}, False)]),
    ("equals", 12, [(12, True), (12.0, True), ("12", True), (" 12 ", True), ("x", False), (13, False)]),
    ("equals", True, [(True, True), ("TRUE", True), ("true", True), (False, False), ("yes", False), (1, False)]),
    ("equals", "12", [(12, True), ("12", True), (12.0, False)]),
    ("not_equals", "Inbound", [("Inbound", False), ("Outbound", True), (5, True), ([1], False)]),
    ("not_equals", 3, [(3, False), ("3.0", False), (4, True), ("x", False)]),
    ("equals_one_of", ["a", "b"], [("a", True), ("b", True), ("c", False), ("A", False)]),
    ("equals_one_of", [1, 2.5], [(1, True), ("2.5", True), (3, False), ("x", False)]),
    ("equals_one_of", ["a", 1], [("a", True), (1, True), ("1", True), ("b", False)]),
    ("not_equals_one_of", ["a", "b"], [("a", False), ("c", True), ({"o": 1}, False)]),
    ("not_equals_one_of", [1, 2], [(1, False), (3, True), ("x", False)]),
    ("contains", "oic", [("voice", True), ("VOICE", False), (123, False), (True, False)]),
    ("contains", "2", [(123, True), ("abc", False)]),
    ("not_contains", "oic", [("voice", False), ("chat", True), ([1], False)]),
    ("starts_with", "vo", [("voice", True), ("Voice", False), ("avo", False)]),
    ("ends_with", "ce", [("voice", True), ("voicE", False)]),
    ("contains_one_of", ["ha", "oi"], [("chat", True), ("voice", True), ("sms", False)]),
    ("greater_than", 10, [(11, True), (10, False), ("10.5", True), ("abc", False), (True, False)]),
    ("greater_than_or_equal", 10, [(10, True), (9.99, False), ("1e1", True)]),
    ("less_than", 10, [(9, True), (10, False), ("-1.5e3", True), ("nan", False), ("inf", False)]),
    ("less_than_or_equal", 10, [(10, True), (10.5, False)]),
    ("between", [1, 3], [(1, True), (3, True), (2, True), (0.999, False), (3.001, False), ("2", True)]),
    ("before_date", "2025-01-01", [("2024-12-31T23:59:59.999999Z", True), ("2025-01-01T00:00:00Z", False),
                                   ("2025-01-01", False), (1735689599999, True), ("junk", False)]),
    ("after_date", "2025-01-01T12:00:00Z", [("2025-01-01T12:00:00.000001Z", True),
                                            ("2025-01-01T12:00:00Z", False),
                                            ("2025-01-01T13:00:00+01:00", False),
                                            ("2025-01-01T13:00:01+01:00", True), (True, False)]),
    ("within_last_days", 7, [("2025-02-22T00:00:00Z", True), ("2025-02-21T23:59:59.999999Z", False),
                             ("2025-03-01T00:00:00Z", True), ("2025-03-01T00:00:00.000001Z", False),
                             ("2025-02-25", True)]),
    ("within_last_days", 10**6, [("1900-01-01T00:00:00Z", True), ("2025-03-01T00:00:00.000001Z", False)]),
    ("exists", None, [("x", True), (0, True), (False, True), ("", True), ({}, True)]),
    ("not_exists", None, [("x", False), ("", False)]),
    ("is_true", None, [(True, True), ("True", True), (False, False), ("yes", False), (1, False)]),
    ("is_false", None, [(False, True), ("FALSE", True), (True, False), (0, False)]),
]


@pytest.mark.parametrize(("operator", "value", "rows"), CASES, ids=[f"{c[0]}-{c[1]!r}" for c in CASES])
def test_operator_table(operator, value, rows):
    rows = rows + [(ABSENT, operator == "not_exists"), (None, operator == "not_exists")]
    events = []
    for i, (raw, _) in enumerate(rows):
        props = {} if raw is ABSENT else {"x": raw}
        events.append(Ev(message_id=f"m{i}", profile_id=f"p{i:02d}", event="E",
                         timestamp=datetime(2025, 2, 1, tzinfo=UTC), properties=props))
    cond = {"property": "x", "operator": operator}
    if value is not None:
        cond["value"] = value
    traits = parse_traits([{"name": "n", "type": "event_counter", "event": "E", "conditions": [cond]}])
    with make_store(events) as store:
        got = frame_values(store, traits, AS_OF)
    for i, (raw, expected) in enumerate(rows):
        assert got[f"p{i:02d}"]["n"] == int(expected), f"{operator} {value!r} on {raw!r}"


def _events(*props):
    return [Ev(message_id=f"m{i}", profile_id="P", event="E", timestamp=datetime(2025, 2, 1, tzinfo=UTC),
               properties=p) for i, p in enumerate(props)]


def test_match_any_and_all():
    conds = [{"property": "a", "operator": "equals", "value": 1},
             {"property": "b", "operator": "equals", "value": 1}]
    events = _events({"a": 1, "b": 1}, {"a": 1}, {"b": 1, "a": None}, {})
    traits = parse_traits([
        {"name": "all", "type": "event_counter", "event": "E", "conditions": conds},
        {"name": "any", "type": "event_counter", "event": "E", "conditions": conds, "match": "any"},
        {"name": "none", "type": "event_counter", "event": "E"},
    ])
    with make_store(events) as store:
        assert frame_values(store, traits, AS_OF)["P"] == {"all": 1, "any": 3, "none": 4}


def test_nested_dotted_paths_and_unicode_keys():
    events = _events({"order": {"total": "12.5"}}, {"order": {"total": 3}}, {"order": 5}, {"é x": {"ü/~": "v"}})
    traits = parse_traits([
        {"name": "s", "type": "aggregation", "function": "sum", "event": "E", "property": "order.total"},
        {"name": "u", "type": "unique_list", "event": "E", "property": "é x.ü/~"},
    ])
    with make_store(events) as store:
        assert frame_values(store, traits, AS_OF)["P"] == {"s": 15.5, "u": ["v"]}


def test_page_name_and_screen_name_read_the_name():
    events = [
        Ev(message_id="a", profile_id="P", event="Page Viewed", type="page", name="Home",
           timestamp=datetime(2025, 2, 1, tzinfo=UTC), properties={"page_name": "ignored"}),
        Ev(message_id="b", profile_id="P", event="Page Viewed", type="page", name="Pricing",
           timestamp=datetime(2025, 2, 2, tzinfo=UTC)),
        Ev(message_id="c", profile_id="P", event="Page Viewed", type="page", name=None,
           timestamp=datetime(2025, 2, 3, tzinfo=UTC)),
        Ev(message_id="d", profile_id="P", event="Screen Viewed", type="screen", name="Cart",
           timestamp=datetime(2025, 2, 3, tzinfo=UTC)),
    ]
    traits = parse_traits([
        {"name": "pages", "type": "unique_list", "event": "Page Viewed", "property": "page_name"},
        {"name": "pricing", "type": "event_counter", "event": "Page Viewed",
         "conditions": [{"property": "page_name", "operator": "equals", "value": "Pricing"}]},
        {"name": "screen", "type": "last", "event": "Screen Viewed", "property": "screen_name"},
    ])
    with make_store(events) as store:
        assert frame_values(store, traits, AS_OF)["P"] == {"pages": ["Home", "Pricing"], "pricing": 1, "screen": "Cart"}

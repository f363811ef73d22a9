"""Configuration errors name the file, the trait and the key; semantic hashes ignore descriptions."""

from __future__ import annotations

import pytest

from engine.errors import ConfigError
from traits.registry import TRAIT_TYPES, parse_traits, type_table

BASE = {"name": "t", "type": "last", "event": "E", "property": "p"}


def err(table: dict, match: str, key: str | None = None) -> ConfigError:
    with pytest.raises(ConfigError, match=match) as info:
        parse_traits([table], path="proj/profiles.toml")
    e = info.value
    assert e.path == "proj/profiles.toml"
    assert "proj/profiles.toml" in str(e)
    if table.get("name") and isinstance(table["name"], str):
        assert f"traits[{table['name']}]" in str(e)
    if key is not None:
        assert e.key == key, e
    return e


def test_unknown_type_lists_valid_types():
    e = err({**BASE, "type": "median"}, "unknown trait type", "type")
    for name in TRAIT_TYPES:
        assert name in str(e)


@pytest.mark.parametrize(("table", "match", "key"), [
    ({**BASE, "colour": 1}, "unknown key", "colour"),
    ({k: v for k, v in BASE.items() if k != "event"}, "'event' is required", "event"),
    ({k: v for k, v in BASE.items() if k != "property"}, "'property' is required", "property"),
    ({k: v for k, v in BASE.items() if k != "type"}, "'type' is required", "type"),
    ({**BASE, "name": "Bad-Name"}, "'name' is required", "name"),
    ({**BASE, "name": "abc\n"}, "'name' is required", "name"),
    ({**BASE, "name": "profile_id"}, "reserved", "name"),
    ({"name": "c", "type": "event_counter", "event": "E", "property": "x"}, "reads no property", "property"),
    ({"name": "c", "type": "event_counter", "event": "E", "value_type": "text"}, "reads no property", "value_type"),
    ({**BASE, "value_type": "integer"}, "unknown value type", "value_type"),
    ({"name": "a", "type": "aggregation", "event": "E", "property": "p"}, "'function' is required", "function"),
    ({"name": "a", "type": "aggregation", "event": "E", "property": "p", "function": "median"}, "must be one of", "function"),
    ({"name": "a", "type": "aggregation", "event": "E", "property": "p", "function": "sum", "value_type": "text"},
     "must be \"number\"", "value_type"),
    ({**BASE, "type": "most_frequent", "min_frequency": 0}, ">= 1", "min_frequency"),
    ({**BASE, "type": "most_frequent", "min_frequency": "2"}, ">= 1", "min_frequency"),
    ({**BASE, "type": "unique_list", "max_items": True}, ">= 1", "max_items"),
    ({**BASE, "min_frequency": 2}, "unknown key", "min_frequency"),
    ({**BASE, "match": "some"}, "all", "match"),
    ({**BASE, "description": 3}, "string", "description"),
    ({**BASE, "conditions": {"property": "x"}}, "array", "conditions"),
    ({**BASE, "conditions": [{"property": "x", "operator": "like", "value": 1}]}, "unknown operator", "conditions[0].operator"),
    ({**BASE, "conditions": [{"property": "x", "operator": "equals"}]}, "required", "conditions[0].value"),
    ({**BASE, "conditions": [{"property": "x", "operator": "exists", "value": 1}]}, "takes no value", "conditions[0].value"),
    ({**BASE, "conditions": [{"property": "x", "operator": "greater_than", "value": "5"}]}, "number", "conditions[0].value"),
    ({**BASE, "conditions": [{"property": "x", "operator": "between", "value": [3, 1]}]}, "greater", "conditions[0].value"),
    ({**BASE, "conditions": [{"property": "x", "operator": "equals_one_of", "value": []}]}, "non-empty", "conditions[0].value"),
    ({**BASE, "conditions": [{"property": "x", "operator": "contains_one_of", "value": [1]}]}, "strings", "conditions[0].value"),
    ({**BASE, "conditions": [{"property": "x", "operator": "before_date", "value": "soon"}]}, "ISO", "conditions[0].value"),
    ({**BASE, "conditions": [{"property": "x", "operator": "equals", "value": [1]}]}, "string, a number", "conditions[0].value"),
    ({**BASE, "conditions": [{"operator": "exists"}]}, "property", "conditions[0].property"),
    ({**BASE, "conditions": [{"property": "x", "operator": "exists", "when": 1}]}, "unknown key", "conditions[0]"),
    ({**BASE, "window": {"within_days": 0}}, ">= 1", "window.within_days"),
    ({**BASE, "window": {"within_days": 7, "within_hours": 1}}, "exactly one", "window"),
    ({**BASE, "window": {"within_weeks": 1}}, "unknown window", "window.within_weeks"),
    ({**BASE, "window": {"between_days_ago": [90, 30]}}, "A < B", "window.between_days_ago"),
    ({**BASE, "window": {"between": ["2025-03-01", "2025-01-01"]}}, "start", "window.between"),
    ({**BASE, "window": {"session_minutes": 1.5}}, "integer", "window.session_minutes"),
    ({**BASE, "window": {"all_time": False}}, "true", "window.all_time"),
    ({**BASE, "property": "a..b"}, "'a..b' is not a dotted path: it has an empty segment", "property"),
    ({**BASE, "property": 3}, "non-empty dotted path", "property"),
    ({**BASE, "conditions": [{"property": ".x", "operator": "exists"}]}, "empty segment", "conditions[0].property"),
])
def test_config_errors(table, match, key):
    err(table, match, key)


def test_duplicate_names():
    with pytest.raises(ConfigError, match="used twice"):
        parse_traits([BASE, BASE], path="p.toml")


def test_not_a_table():
    with pytest.raises(ConfigError, match=r"traits\[0\]"):
        parse_traits(["x"], path="p.toml")


def test_defaults_and_fields():
    (mf, ul, agg) = parse_traits([
        {**BASE, "type": "most_frequent", "name": "a"},
        {**BASE, "type": "unique_list", "name": "b"},
        {"name": "c", "type": "aggregation", "function": "avg", "event": "E", "property": "p"},
    ])
    assert (mf.min_frequency, mf.value_type, mf.match, mf.window.key) == (2, "text", "all", "all_time")
    assert ul.max_items == 10000 and ul.output_sql_type == "VARCHAR[]"
    assert agg.value_type == "number" and agg.output_sql_type == "DOUBLE"
    assert (mf.name, mf.type, mf.event, mf.description) == ("a", "most_frequent", "E", "")


def test_definitions_are_frozen_slotted():
    (t,) = parse_traits([BASE])
    with pytest.raises(AttributeError):
        t.name = "other"  # type: ignore[misc]
    assert not hasattr(t, "__dict__")


def test_semantic_hash_ignores_description_only():
    (a,) = parse_traits([BASE])
    (b,) = parse_traits([{**BASE, "description": "changed"}])
    (c,) = parse_traits([{**BASE, "property": "q"}])
    (d,) = parse_traits([{**BASE, "window": {"within_days": 3}}])
    assert a.semantic_hash == b.semantic_hash
    assert len({a.semantic_hash, c.semantic_hash, d.semantic_hash}) == 3


def test_toml_dates_are_accepted():
    import tomllib

    data = tomllib.loads("""
[[traits]]
name = "q1"
type = "event_counter"
event = "E"
window = { between = [2025-01-01, 2025-03-31] }
conditions = [ { property = "d", operator = "after_date", value = 2024-06-01T10:00:00Z } ]
""")
    (t,) = parse_traits(data["traits"], path="p.toml")
    assert t.window.end.isoformat() == "2025-03-31T23:59:59.999999+00:00"
    assert t.conditions[0].value.isoformat() == "2024-06-01T10:00:00+00:00"


def test_type_table_is_generated_from_the_registry():
    rows = type_table()
    assert [r["type"] for r in rows] == list(TRAIT_TYPES)
    assert all(r["value"] for r in rows)

"""``[identity]`` parsing: defaults, every key, and errors that name the file, table and key."""

from __future__ import annotations

import pytest

from engine.errors import ConfigError
from engine.identity.rules import default_rules, parse_identity


def test_defaults_when_identity_is_absent():
    rules = parse_identity(None)
    assert rules == default_rules()
    assert rules.types == (
        "user_id", "email", "android.id", "android.idfa", "android.push_token", "anonymous_id",
        "ga_client_id", "ios.id", "ios.idfa", "ios.push_token", "phone",
    )
    assert [r.limit for r in rules.identifiers] == [1] + [5] * 10
    assert {r.period for r in rules.identifiers} == {"ever"}
    assert [r.priority for r in rules.identifiers] == list(range(1, 12))


def test_identity_without_identifiers_keeps_default_types_and_adds_blocking():
    rules = parse_identity({"blocked_values": ["x"], "blocked_patterns": ["^g-.*$"]})
    assert rules.types == default_rules().types
    assert rules.blocked_values == ("x",)
    assert rules.blocked_patterns == ("^g-.*$",)


def test_spec_example_parses_with_priority_in_list_order():
    rules = parse_identity(
        {
            "identifiers": [
                {"type": "user_id", "limit": 1},
                {"type": "email", "limit": 5, "period": "annually"},
                {"type": "phone", "limit": 5, "period": "annually"},
                {"type": "anonymous_id", "limit": 5, "period": "weekly"},
                {"type": "crm_id", "limit": 1, "sources": ["traits.crm_id", "properties.crm_id"]},
            ],
            "blocked_values": ["test@example.com"],
            "blocked_patterns": ["^guest-.*$"],
        }
    )
    assert [(r.type, r.priority, r.limit, r.period) for r in rules.identifiers] == [
        ("user_id", 1, 1, "ever"),
        ("email", 2, 5, "annually"),
        ("phone", 3, 5, "annually"),
        ("anonymous_id", 4, 5, "weekly"),
        ("crm_id", 5, 1, "ever"),
    ]
    assert rules.rule("crm_id").sources == ("traits.crm_id", "properties.crm_id")
    assert rules.rule("anonymous_id").period_micros == 7 * 86_400_000_000
    assert rules.rule("ios.id") is None


@pytest.mark.parametrize(
    ("table", "key", "text"),
    [
        ({"identifiers": [{"type": "email", "limit": 0}]}, "limit", ">= 1"),
        ({"identifiers": [{"type": "email", "limit": True}]}, "limit", "whole number"),
        ({"identifiers": [{"type": "email", "period": "hourly"}]}, "period", "weekly"),
        ({"identifiers": [{"type": "Email"}]}, "type", "lower-case"),
        ({"identifiers": [{"type": "email"}, {"type": "email"}]}, "type", "twice"),
        ({"identifiers": [{"type": "email", "colour": 1}]}, "colour", "valid"),
        ({"identifiers": [{"type": "crm", "sources": ["crm_id"]}]}, "sources", "dotted path"),
        ({"identifiers": []}, "identifiers", "non-empty"),
        ({"identifiers": "email"}, "identifiers", "non-empty"),
        ({"blocked_values": "x"}, "blocked_values", "array of strings"),
        ({"blocked_patterns": ["("]}, "blocked_patterns", "invalid regular expression"),
        ({"blocked_patterns": ["(?=x)x"]}, "blocked_patterns", "invalid regular expression"),
        ({"limits": 1}, "limits", "unknown key"),
    ],
)
def test_errors_name_the_file_and_key(table, key, text, tmp_path):
    path = tmp_path / "profiles.toml"
    with pytest.raises(ConfigError) as err:
        parse_identity(table, path=path)
    assert err.value.key == key
    assert str(path) in str(err.value)
    assert text in str(err.value)

"""Where identifiers are read, how they are normalised and which values are blocked (identity.md)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.identity.extract import identifiers_sql, is_blocked, normalise
from engine.identity.rules import default_rules, parse_identity
from engine.store import Store
from tests.identity.conftest import run
from tests.identity.helpers import ev, load
from tests.identity.oracle import profile_id as pid


def extracted(event: dict[str, Any], rules=None) -> set[tuple[str, str, bool]]:
    rules = rules or default_rules()
    with Store.open(None) as s:
        load(s, [event])
        rows = s.con.execute(f"SELECT type, value, blocked FROM ({identifiers_sql(rules)})").fetchall()
    # the oracle must agree on every event of this module
    run([event], rules)
    return set(rows)


def ok(*pairs: tuple[str, str]) -> set[tuple[str, str, bool]]:
    return {(t, v, False) for t, v in pairs}


def test_user_id_and_anonymous_id_columns():
    assert extracted(ev("m", user_id="u1", anonymous_id="a1")) == ok(("user_id", "u1"), ("anonymous_id", "a1"))


def test_email_from_traits_and_context_traits_both_when_they_differ():
    e = ev("m", type="identify", user_id="u", traits={"email": "A@x.io"}, context={"traits": {"email": "b@x.io "}})
    assert extracted(e) == ok(("user_id", "u"), ("email", "a@x.io"), ("email", "b@x.io"))
    same = ev("n", type="identify", user_id="u", traits={"email": "a@x.io"}, context={"traits": {"email": "A@X.IO"}})
    assert extracted(same) == ok(("user_id", "u"), ("email", "a@x.io"))


def test_phone_from_traits_and_context_traits_normalised():
    e = ev("m", user_id="u", type="identify", traits={"phone": " +1 (555) 010-99.12"},
           context={"traits": {"phone": "555 0100"}})
    assert extracted(e) == ok(("user_id", "u"), ("phone", "+15550109912"), ("phone", "5550100"))


def test_group_traits_describe_the_account_and_are_not_read():
    e = ev("m", type="group", user_id="u", traits={"email": "acct@x.io", "phone": "123"}, group_id="g")
    assert extracted(e) == ok(("user_id", "u"))


@pytest.mark.parametrize("device", ["android", "ios", "iOS"])
def test_device_ids_by_device_type(device):
    d = device.lower()
    ctx = {"device": {"type": device, "id": "D1", "advertisingId": "AD1", "adTrackingEnabled": True, "token": "T1"}}
    assert extracted(ev("m", anonymous_id="a", context=ctx)) == ok(
        ("anonymous_id", "a"), (f"{d}.id", "D1"), (f"{d}.idfa", "AD1"), (f"{d}.push_token", "T1")
    )


@pytest.mark.parametrize("tracking", [False, None, "true", 1])
def test_advertising_id_only_with_ad_tracking_enabled_true(tracking):
    device = {"type": "ios", "id": "D1", "advertisingId": "AD1"}
    if tracking is not None:
        device["adTrackingEnabled"] = tracking
    assert extracted(ev("m", anonymous_id="a", context={"device": device})) == ok(
        ("anonymous_id", "a"), ("ios.id", "D1")
    )


def test_device_ids_ignored_for_other_device_types():
    ctx = {"device": {"type": "tablet", "id": "D1", "token": "T1"}}
    assert extracted(ev("m", anonymous_id="a", context=ctx)) == ok(("anonymous_id", "a"))


def test_ga_client_id_from_context_integrations_only():
    ctx = {"integrations": {"Google Analytics": {"clientId": "GA.1"}}}
    assert extracted(ev("m", anonymous_id="a", context=ctx)) == ok(("anonymous_id", "a"), ("ga_client_id", "GA.1"))
    number = {"integrations": {"Google Analytics": {"clientId": 123}}}
    assert extracted(ev("n", anonymous_id="a", context=number)) == ok(("anonymous_id", "a"), ("ga_client_id", "123"))
    # the message's top-level integrations are routing options, not read (identity.md's table)
    top = ev("o", anonymous_id="a", integrations={"Google Analytics": {"clientId": "GA.2"}})
    assert extracted(top) == ok(("anonymous_id", "a"))


def test_external_ids_users_collection_of_listed_types_only():
    rules = parse_identity(
        {"identifiers": [{"type": "user_id", "limit": 1}, {"type": "crm_id", "limit": 1}, {"type": "email", "limit": 5}]}
    )
    ctx = {
        "externalIds": [
            {"id": "C-1", "type": "crm_id", "collection": "users", "encoding": "none"},
            {"id": "Ana@X.io", "type": "EMAIL", "collection": "users"},
            {"id": "acct", "type": "crm_id", "collection": "accounts", "encoding": "none"},
            {"id": "b64", "type": "crm_id", "collection": "users", "encoding": "base64"},
            {"id": "z", "type": "zendesk_id", "collection": "users", "encoding": "none"},
        ]
    }
    assert extracted(ev("m", user_id="u", context=ctx), rules) == ok(
        ("user_id", "u"), ("crm_id", "C-1"), ("email", "ana@x.io")
    )


def test_custom_sources_from_traits_properties_context_and_message():
    rules = parse_identity(
        {
            "identifiers": [
                {"type": "user_id", "limit": 1},
                {"type": "crm_id", "limit": 5, "sources": ["traits.crm_id", "properties.account.crm",
                                                            "context.crm", "extra.crm"]},
            ]
        }
    )
    e = ev("m", type="identify", user_id="u", traits={"crm_id": 7}, context={"crm": "c2"}, extra={"crm": "c3"})
    assert extracted(e, rules) == ok(("user_id", "u"), ("crm_id", "7"), ("crm_id", "c2"), ("crm_id", "c3"))
    t = ev("n", user_id="u", properties={"account": {"crm": " c4 "}})
    assert extracted(t, rules) == ok(("user_id", "u"), ("crm_id", "c4"))


def test_types_not_listed_are_ignored():
    rules = parse_identity({"identifiers": [{"type": "user_id", "limit": 1}]})
    e = ev("m", user_id="u", anonymous_id="a", type="identify", traits={"email": "a@x.io"})
    assert extracted(e, rules) == ok(("user_id", "u"))


def test_numbers_are_their_json_text_other_non_strings_absent():
    e = ev("m", type="identify", user_id="u", traits={"email": 12, "phone": True},
           context={"traits": {"email": {"a": 1}, "phone": ["1"]}})
    assert extracted(e) == ok(("user_id", "u"), ("email", "12"))


@pytest.mark.parametrize(
    "value",
    ["null", "UNDEFINED", "Anonymous", "-1", "unknown", "None", "N/A", "0", "000", "-", "--", "0-0", " 0 "],
)
def test_builtin_blocked_values_after_normalisation(value):
    got = extracted(ev("m", user_id="u", anonymous_id=value))
    assert ("anonymous_id", value.strip(), True) in got
    assert is_blocked(default_rules(), "anonymous_id", value.strip())


@pytest.mark.parametrize("value", ["10", "-2", "0x", "nul", "anonymous1"])
def test_values_near_the_blocked_forms_are_not_blocked(value):
    assert ("anonymous_id", value, False) in extracted(ev("m", anonymous_id=value))


def test_project_blocked_values_and_full_match_patterns():
    rules = parse_identity(
        {
            "identifiers": [{"type": "user_id", "limit": 1}, {"type": "email", "limit": 5}],
            "blocked_values": ["Test@Example.com"],
            "blocked_patterns": ["guest-.*", "x+"],
        }
    )
    e = ev("m", type="identify", user_id="guest-42", traits={"email": "TEST@example.com"},
           context={"traits": {"email": "xx@y.io"}})
    assert extracted(e, rules) == {
        ("user_id", "guest-42", True),
        ("email", "test@example.com", True),  # compared after normalisation: emails are lower-cased
        ("email", "xx@y.io", False),  # "x+" must match the whole value
    }


def test_project_blocked_values_are_exact_for_case_sensitive_types():
    rules = parse_identity(
        {"identifiers": [{"type": "user_id", "limit": 1}, {"type": "phone", "limit": 5}],
         "blocked_values": ["Guest", "+1 555 0100"]}
    )
    assert extracted(ev("a", user_id="Guest"), rules) == {("user_id", "Guest", True)}
    assert extracted(ev("b", user_id="guest"), rules) == {("user_id", "guest", False)}
    assert extracted(ev("c", user_id="u", traits={"phone": "+1 (555) 01-00"}), rules) == {
        ("user_id", "u", False), ("phone", "+15550100", True),
    }
    assert is_blocked(rules, "user_id", "Guest") and not is_blocked(rules, "user_id", "GUEST")


def test_blocked_values_are_counted_per_type_and_value_and_never_identify():
    res = run(
        [
            ev("a", 1, user_id="unknown", anonymous_id="a1"),
            ev("b", 2, user_id="unknown", anonymous_id="a2"),
            ev("c", 3, anonymous_id="0000"),
        ]
    )
    assert res.blocked == {("user_id", "unknown"): 2, ("anonymous_id", "0000"): 1}
    assert set(res.profiles) == {pid("a"), pid("b")}  # the shared blocked user_id merges nothing
    assert res.unresolved == {"c"}


def test_python_normalise_matches_the_documented_rules():
    assert normalise("email", " A@B.C\t") == "a@b.c"
    assert normalise("phone", "+44 (0)20.7946-0018") == "+4402079460018"
    assert normalise("user_id", 12) == "12"
    assert normalise("user_id", True) is None
    assert normalise("user_id", "   ") is None
    assert normalise("anonymous_id", " Ab ") == "Ab"


def test_escaped_and_unicode_strings_are_read_exactly():
    e = ev("m", type="identify", user_id="u", traits={"email": 'a"b\\c@x.io', "phone": "☎ 12"},
           context={"traits": {"email": "Élan@x.io"}})
    assert extracted(e) == ok(("user_id", "u"), ("email", 'a"b\\c@x.io'), ("email", "élan@x.io"), ("phone", "☎12"))


def test_numbers_keep_their_json_text():
    e = ev("m", type="identify", user_id="u", traits={"email": -7, "phone": 5551234})
    assert extracted(e) == ok(("user_id", "u"), ("email", "-7"), ("phone", "5551234"))


def test_top_level_integrations_can_be_mapped_with_a_source_path():
    rules = parse_identity(
        {
            "identifiers": [
                {"type": "anonymous_id", "limit": 5},
                {"type": "ga_client_id", "limit": 5, "sources": ["integrations.Google Analytics.clientId"]},
            ]
        }
    )
    top = ev("o", anonymous_id="a", integrations={"Google Analytics": {"clientId": "GA.2"}})
    assert extracted(top, rules) == ok(("anonymous_id", "a"), ("ga_client_id", "GA.2"))


def test_emails_are_lower_cased_alike_in_sql_and_python():
    """A final capital sigma and a dotted capital I lower-case differently in Python's ``str.lower``
    (context-dependent and two code points) than in SQL; look-ups and ``blocked_values`` use SQL's."""
    greek, turkish = "ΣΟΦΙΑΣ@Example.gr", "İLKER@example.com"
    assert normalise("email", greek) == "σοφιασ@example.gr"
    assert normalise("email", turkish) == "ilker@example.com"
    assert extracted(ev("g", traits={"email": greek})) == ok(("email", "σοφιασ@example.gr"))
    rules = parse_identity({"identifiers": [{"type": "email", "limit": 5}], "blocked_values": [greek, turkish]})
    assert extracted(ev("t", traits={"email": turkish}), rules) == {("email", "ilker@example.com", True)}
    assert is_blocked(rules, "email", normalise("email", greek))


def test_show_finds_a_profile_by_the_email_as_sent():
    from engine.identity.resolve import find_profile, resolve

    with Store.open(None) as s:
        load(s, [ev("g", traits={"email": "ΣΟΦΙΑΣ@Example.gr"})])
        resolve(s, default_rules())
        assert find_profile(s, "email:ΣΟΦΙΑΣ@EXAMPLE.GR") == pid("g")

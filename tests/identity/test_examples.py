"""identity.md's worked examples and each rule of the algorithm, as plain unit tests.

Every test also checks the engine against the naive oracle (``conftest.run``), so a test fails
when either drifts from the expected values written here.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.identity.rules import parse_identity
from tests.identity.conftest import run
from tests.identity.helpers import T0, ev
from tests.identity.oracle import profile_id as pid


def idents(res, mid):
    return set(res.identifiers[pid(mid)])


def test_example_1_unify_limit_drops_lowest_priority_identifier():
    res = run(
        [
            ev("a", 1, user_id="abc123", traits={"email": "jane@example1.com"}, type="identify"),
            ev("b", 2, user_id="abc456", traits={"email": "jane@example1.com"}, type="identify"),
        ]
    )
    assert set(res.profiles) == {pid("a"), pid("b")}
    assert idents(res, "a") == {("user_id", "abc123"), ("email", "jane@example1.com")}
    assert idents(res, "b") == {("user_id", "abc456")}  # B does not get the email
    assert res.event_profiles == {"a": pid("a"), "b": pid("b")}
    assert [v[2:] for v in res.violations] == [("user_id", 1, "email", "jane@example1.com")]
    assert res.merges == []


def test_example_2_merge_protection_shared_anonymous_id():
    res = run(
        [
            ev("a", 1, user_id="u1", anonymous_id="a1"),
            ev("b", 2, user_id="u2"),
            ev("c", 3, user_id="u2", anonymous_id="a1"),
        ]
    )
    assert idents(res, "a") == {("user_id", "u1"), ("anonymous_id", "a1")}
    assert idents(res, "b") == {("user_id", "u2")}
    assert res.event_profiles["c"] == pid("b")
    assert [v[2:] for v in res.violations] == [("user_id", 1, "anonymous_id", "a1")]
    assert res.merges == []


def test_example_3_plain_merge_into_the_oldest_profile():
    res = run(
        [
            ev("e1", 1, anonymous_id="x"),
            ev("e2", 2, anonymous_id="x", traits={"email": "j@k.com"}, type="identify"),
            ev("e3", 3, anonymous_id="y"),
            ev("e4", 4, anonymous_id="y", traits={"email": "j@k.com"}, type="identify"),
        ]
    )
    assert set(res.profiles) == {pid("e1")}
    assert idents(res, "e1") == {("anonymous_id", "x"), ("anonymous_id", "y"), ("email", "j@k.com")}
    assert set(res.event_profiles.values()) == {pid("e1")}
    assert [(m[0], m[1], m[2]) for m in res.merges] == [(pid("e3"), pid("e1"), "e4")]
    # gain time is kept through the merge
    assert res.identifiers[pid("e1")][("anonymous_id", "y")] == (T0 + timedelta(minutes=3), "e3")


def test_arrival_order_does_not_matter_canonical_order_does():
    events = [
        ev("m2", 5, anonymous_id="y"),
        ev("m1", 5, anonymous_id="y", user_id="u"),  # same timestamp: message_id orders
        ev("m0", 9, anonymous_id="y"),
    ]
    res = run(events)
    assert set(res.profiles) == {pid("m1")}
    assert res.identifiers[pid("m1")][("anonymous_id", "y")][1] == "m1"


def test_three_profiles_merge_at_once_into_the_oldest():
    res = run(
        [
            ev("p3", 3, anonymous_id="c"),
            ev("p1", 1, anonymous_id="a"),
            ev("p2", 2, traits={"email": "b@x.io"}, type="identify", anonymous_id=None, user_id=None),
            ev("join", 4, anonymous_id="c", user_id="u", context={"traits": {"email": "b@x.io"}}),
            ev("join2", 5, anonymous_id="a", user_id="u"),
        ]
    )
    assert set(res.profiles) == {pid("p1")}
    assert sorted((m[0], m[1], m[2]) for m in res.merges) == sorted(
        [(pid("p3"), pid("p2"), "join"), (pid("p2"), pid("p1"), "join2")]
    )


def test_priority_ties_drop_the_greatest_value_of_the_lowest_priority_type():
    rules = parse_identity(
        {"identifiers": [{"type": "user_id", "limit": 1}, {"type": "email", "limit": 1}]}
    )
    res = run(
        [
            ev("p", 0, user_id="u"),
            ev(
                "a",
                1,
                user_id="u",
                type="identify",
                traits={"email": "b@x.io"},
                context={"traits": {"email": "a@x.io"}},
            ),
        ],
        rules,
    )
    assert idents(res, "p") == {("user_id", "u"), ("email", "a@x.io")}
    assert [v[2:] for v in res.violations] == [("email", 1, "email", "b@x.io")]


def test_a_profile_is_created_without_a_limit_check_and_later_matches_hit_the_limit():
    """spec: "if P is empty: create a profile owning ids" (no check at creation)."""
    rules = parse_identity(
        {"identifiers": [{"type": "user_id", "limit": 1}, {"type": "email", "limit": 1}]}
    )
    two_emails = {"traits": {"email": "a@x.io"}, "context": {"traits": {"email": "b@x.io"}}}
    res = run(
        [
            ev("a", 1, user_id="u", type="identify", **two_emails),
            # matches the over-limit profile: merged = its ids, over the email limit whatever
            # is dropped, so every identifier is dropped and the event is unresolved
            ev("b", 2, user_id="u"),
            ev("c", 3, anonymous_id="x", type="identify", traits={"email": "a@x.io"}),
        ],
        rules,
    )
    assert idents(res, "a") == {("user_id", "u"), ("email", "a@x.io"), ("email", "b@x.io")}
    assert res.event_profiles == {"a": pid("a")}
    assert res.unresolved == {"b", "c"}
    assert [v[2:] for v in res.violations] == [
        ("email", 1, "user_id", "u"),
        ("email", 1, "email", "a@x.io"),
    ]


def test_violation_names_the_highest_priority_broken_rule():
    rules = parse_identity(
        {"identifiers": [{"type": "user_id", "limit": 1}, {"type": "anonymous_id", "limit": 1}]}
    )
    res = run(
        [
            ev("a", 1, user_id="u1", anonymous_id="a1"),
            ev("b", 2, user_id="u2", anonymous_id="a2"),
            ev("c", 3, user_id="u2", anonymous_id="a1"),
        ],
        rules,
    )
    assert [v[2:] for v in res.violations] == [("user_id", 1, "anonymous_id", "a1")]


def test_event_without_identifiers_is_unresolved():
    res = run(
        [
            ev("a", 1, user_id="unknown"),
            ev("b", 2, anonymous_id="  "),
            ev("c", 3, user_id="u"),
        ]
    )
    assert res.unresolved == {"a", "b"}
    assert res.blocked == {("user_id", "unknown"): 1}


def test_drops_repeat_until_the_rest_fits_a_single_identifier_always_resolves():
    rules = parse_identity({"identifiers": [{"type": "email", "limit": 1}]})
    res = run(
        [
            ev("p", 0, type="identify", traits={"email": "a@x.io"}),
            ev("a", 1, type="identify", traits={"email": "a@x.io"}, context={"traits": {"email": "b@x.io"}}),
        ],
        rules,
    )
    assert res.event_profiles == {"p": pid("p"), "a": pid("p")}
    assert idents(res, "p") == {("email", "a@x.io")}
    rules2 = parse_identity({"identifiers": [{"type": "anonymous_id", "limit": 1}, {"type": "user_id", "limit": 1}]})
    res = run(
        [
            ev("a", 1, user_id="u1", anonymous_id="x"),
            ev("b", 2, user_id="u2", anonymous_id="y"),
            ev("c", 3, user_id="u2", anonymous_id="x"),  # x's profile + u2 breaks user_id; drop u2
        ],
        rules2,
    )
    assert res.event_profiles["c"] == pid("a")
    # both limits would break; the violation names the highest-priority one (anonymous_id here)
    assert [v[2:] for v in res.violations] == [("anonymous_id", 1, "user_id", "u2")]


@pytest.mark.parametrize(
    ("period", "span"),
    [
        ("daily", timedelta(days=1)),
        ("weekly", timedelta(days=7)),
        ("monthly", timedelta(days=30)),
        ("annually", timedelta(days=365)),
    ],
)
@pytest.mark.parametrize("inside", [True, False])
def test_period_boundary_excludes_values_gained_exactly_one_period_ago(period, span, inside):
    rules = parse_identity(
        {
            "identifiers": [
                {"type": "user_id", "limit": 1},
                {"type": "anonymous_id", "limit": 1, "period": period},
            ]
        }
    )
    later = T0 + span - (timedelta(microseconds=1) if inside else timedelta(0))
    res = run([ev("a", at=T0, user_id="u", anonymous_id="a"), ev("b", at=later, user_id="u", anonymous_id="b")], rules)
    got = idents(res, "a")
    if inside:  # a still counts: gaining b would make 2 in the period
        assert got == {("user_id", "u"), ("anonymous_id", "a")}
        assert [v[2:] for v in res.violations] == [("anonymous_id", 1, "anonymous_id", "b")]
    else:  # timestamp - period < gained is false for a: only b counts
        assert got == {("user_id", "u"), ("anonymous_id", "a"), ("anonymous_id", "b")}
        assert res.violations == []
    assert res.event_profiles["b"] == pid("a")


def test_ever_limit_counts_all_values():
    rules = parse_identity({"identifiers": [{"type": "user_id", "limit": 1}, {"type": "anonymous_id", "limit": 2}]})
    res = run(
        [ev(f"e{i}", at=T0 + timedelta(days=400 * i), user_id="u", anonymous_id=f"a{i}") for i in range(4)],
        rules,
    )
    assert {v for t, v in idents(res, "e0") if t == "anonymous_id"} == {"a0", "a1"}
    assert len(res.violations) == 2


def test_gain_time_survives_merges_for_periodic_limits():
    rules = parse_identity(
        {
            "identifiers": [
                {"type": "user_id", "limit": 1},
                {"type": "anonymous_id", "limit": 2, "period": "daily"},
            ]
        }
    )
    res = run(
        [
            ev("a", 0, anonymous_id="a1"),
            ev("b", 60 * 20, anonymous_id="a2"),  # 20 h later
            ev("c", 60 * 21, anonymous_id="a2", user_id="u"),
            ev("d", 60 * 22, anonymous_id="a1", user_id="u"),  # merge: a1 (0 h) and a2 (20 h)
            ev("e", 60 * 23, anonymous_id="a3", user_id="u"),  # a1, a2 still within the day: drop a3
            ev("f", 60 * 25, anonymous_id="a4", user_id="u"),  # a1 (0 h) left the day: a4 fits
        ],
        rules,
    )
    assert {v for t, v in idents(res, "a") if t == "anonymous_id"} == {"a1", "a2", "a4"}
    assert [(v[0], v[5]) for v in res.violations] == [("e", "a3")]


def test_profile_traits_latest_identify_wins_null_removes_and_merges_keep_latest():
    res = run(
        [
            ev("i1", 1, type="identify", anonymous_id="x", traits={"plan": "free", "name": "A", "age": 3}),
            ev("i2", 2, type="identify", anonymous_id="y", traits={"plan": "pro", "city": "Oslo"}),
            ev("i3", 3, type="identify", anonymous_id="x", traits={"name": None, "tags": ["a", 1]}),
            ev("t", 4, anonymous_id="x", properties={"plan": "ignored"}),
            ev("g", 5, type="group", anonymous_id="x", traits={"plan": "enterprise"}, group_id="g1"),
            ev("j", 6, anonymous_id="x", user_id="u", context={"traits": {}}),
            ev("k", 7, anonymous_id="y", user_id="u"),
        ]
    )
    assert res.traits == {pid("i1"): {"plan": "pro", "age": 3, "city": "Oslo", "tags": ["a", 1]}}

"""Identity as of an instant (engine/identity/asof.py): the as-of-T map equals resolving only the
events with ``timestamp <= T`` (the oracle on that prefix), profile for profile, whatever the
batches and arrival order the store was resolved with."""

from __future__ import annotations

import json
from datetime import timedelta

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import NotFoundError
from engine.identity.asof import event_map, identifiers_as_of, is_latest, profile_as_of, traits_sql
from engine.identity.resolve import resolve
from engine.identity.rules import parse_identity
from engine.store import Store
from tests.identity.helpers import T0, ev, load
from tests.identity.oracle import oracle_resolve, profile_id
from tests.identity.test_properties import SETTINGS, batches, events, rules


def as_of_result(store: Store, at, *, force: bool = True) -> dict:
    """The engine's identity as of ``at`` in the oracle's terms."""
    con = store.con
    emap = event_map(store, at, force=force)
    mapping = dict(con.execute(f"SELECT message_id, profile_id FROM {emap.relation}").fetchall())
    idents: dict[str, dict] = {}
    for pid, ty, value, seen, mid in con.execute(
        f"SELECT profile_id, type, value, first_seen_at, message_id FROM {identifiers_as_of(store, at)}"
    ).fetchall():
        idents.setdefault(pid, {})[(ty, value)] = (seen, mid)
    traits: dict[str, dict] = {}
    for pid, key, value in con.execute(f"SELECT profile_id, key, value FROM ({traits_sql(emap.relation)})").fetchall():
        traits.setdefault(pid, {})[key] = json.loads(value)
    return {"events": mapping, "identifiers": idents, "traits": traits}


def assert_as_of(store: Store, evs: list[dict], rule, at) -> None:
    prefix = [e for e in evs if e["timestamp"] <= at]
    want = oracle_resolve(prefix, rule)
    got = as_of_result(store, at)
    assert got["events"] == want.event_profiles
    assert set(got["events"].values()) == set(want.profiles)
    assert got["identifiers"] == {p: i for p, i in want.identifiers.items() if i}
    assert got["traits"] == want.traits
    if is_latest(store, at):  # the fast path is the same relation
        assert as_of_result(store, at, force=False) == got


def instants(evs: list[dict], data) -> list:
    """Instants at, just before and after event times, and before everything."""
    times = sorted({e["timestamp"] for e in evs})
    picks = data.draw(st.lists(st.sampled_from(times), min_size=1, max_size=4))
    nudge = [timedelta(0), timedelta(microseconds=-1), timedelta(seconds=30)]
    return [t + data.draw(st.sampled_from(nudge)) for t in picks] + [times[0] - timedelta(days=1)]


@SETTINGS
@given(evs=events(max_size=30), rule=rules(), data=st.data())
def test_as_of_map_equals_the_oracle_on_the_events_up_to_then(evs, rule, data):
    with Store.open(None) as s:
        load(s, evs)
        resolve(s, rule)
        if s.first_row("SELECT count(*) FROM identity_merges")[0]:
            hypothesis.event("merges")
        for at in instants(evs, data):
            assert_as_of(s, evs, rule, at)


@SETTINGS
@given(evs=events(max_size=30), rule=rules(), data=st.data())
def test_as_of_map_after_batches_and_late_events_equals_the_oracle(evs, rule, data):
    """Resolved batch by batch in any arrival order (continued, absorbed and re-resolved runs)."""
    arrived: list[dict] = []
    with Store.open(None) as s:
        for k, batch in enumerate(batches(evs, data, max_cuts=3)):
            load(s, batch, ingest_id=k + 1)
            arrived += batch
            report = resolve(s, rule)
            if k and report.absorbed_events:
                hypothesis.event("late events absorbed")
            if k and report.continued_events > report.absorbed_events:
                hypothesis.event("continued")
            seen = [e for e in evs if e in arrived]
            for at in instants(seen, data) if seen else ():
                assert_as_of(s, seen, rule, at)


@SETTINGS
@given(evs=events(max_size=25), rule=rules(), data=st.data())
def test_late_copies_keep_the_as_of_map_exact(evs, rule, data):
    """Late events carrying identifiers already seen (the absorbed path records what they joined)."""
    picks = data.draw(st.lists(st.sampled_from(evs), min_size=1, max_size=6))
    late = [
        ev(f"late{i}", at=e["timestamp"] + timedelta(seconds=data.draw(st.integers(0, 90))),
           type=data.draw(st.sampled_from(["track", "identify"])), user_id=e["user_id"],
           anonymous_id=e["anonymous_id"], traits={"plan": data.draw(st.sampled_from(["a", "b", None]))})
        for i, e in enumerate(picks)
    ]
    with Store.open(None) as s:
        load(s, evs, ingest_id=1)
        resolve(s, rule)
        load(s, late, ingest_id=2)
        if resolve(s, rule).absorbed_events:
            hypothesis.event("late events absorbed")
        everything = [*evs, *late]
        for at in instants(everything, data):
            assert_as_of(s, everything, rule, at)


RULES = parse_identity(None)


def _merge_story(s: Store) -> None:
    """An anonymous visitor and a known user, linked by an identify at minute 10."""
    load(s, [
        ev("a", 0, anonymous_id="anon-1"),
        ev("b", 5, user_id="u1", type="identify", traits={"plan": "free"}),
        ev("c", 10, type="identify", user_id="u1", anonymous_id="anon-1", traits={"plan": "pro"}),
        ev("d", 15, anonymous_id="anon-1"),
    ])
    resolve(s, RULES)


def test_a_merge_after_the_instant_does_not_merge_before_it():
    with Store.open(None) as s:
        _merge_story(s)
        before = as_of_result(s, T0 + timedelta(minutes=9))
        assert before["events"] == {"a": profile_id("a"), "b": profile_id("b")}
        assert before["traits"] == {profile_id("b"): {"plan": "free"}}
        assert set(before["identifiers"]) == {profile_id("a"), profile_id("b")}
        after = as_of_result(s, T0 + timedelta(minutes=10))
        assert set(after["events"]) == {"a", "b", "c"}
        assert set(after["events"].values()) == {profile_id("a")}
        assert after["traits"] == {profile_id("a"): {"plan": "pro"}}
        latest = event_map(s, T0 + timedelta(minutes=15))
        assert latest.latest and latest.relation == "event_profiles"


def test_a_profile_id_as_of_an_instant():
    with Store.open(None) as s:
        _merge_story(s)
        nine, ten = T0 + timedelta(minutes=9), T0 + timedelta(minutes=10)
        assert profile_as_of(s, profile_id("b"), nine) == profile_id("b")
        assert profile_as_of(s, profile_id("b"), ten) == profile_id("a")  # merged away by then
        assert profile_as_of(s, profile_id("a"), nine) == profile_id("a")
        with pytest.raises(NotFoundError, match="did not exist yet"):
            profile_as_of(s, profile_id("a"), T0 - timedelta(minutes=1))

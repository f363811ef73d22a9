"""Hypothesis: the values-only pass (``trait_frame``, one-shot aggregates) equals the naive oracle,
over the events joined to the map and over ``trait_events``, with many equal timestamps (ties)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from engine.compute import compute_traits, trait_frame
from tests.traits import oracle
from tests.traits.helpers import Ev, make_store
from tests.traits.test_properties import AS_OF, SETTINGS, definitions, events, same, shared_store
from traits.registry import parse_traits


def frame(store, traits, *, from_events: bool) -> dict:
    rows = trait_frame(store, traits, as_of=AS_OF, from_events=from_events).to_dicts()
    return {r.pop("profile_id"): r for r in rows}


def check(got: dict, want: dict, traits) -> None:
    assert list(got) == list(want)
    for p in want:
        for t in traits:
            assert same(got[p][t.name], want[p][t.name]), (p, t, got[p][t.name], want[p][t.name])


@SETTINGS
@given(evs=events(), defs=definitions())
def test_frame_equals_oracle_from_events_and_from_trait_events(evs, defs):
    traits = parse_traits(defs, path="h.toml")
    store = shared_store(evs)
    want = oracle.compute(traits, evs, ["p0"], AS_OF)
    check(frame(store, traits, from_events=True), want, traits)
    compute_traits(store, traits, as_of=AS_OF)  # leaves trait_events current: the keyed read
    check(frame(store, traits, from_events=False), want, traits)


def test_first_last_ties_only_in_some_profiles():
    """A profile with two events at one instant takes the exact form; the others the cheap one."""
    t = AS_OF - timedelta(days=1)
    evs = [Ev(message_id=m, profile_id=p, event="E", timestamp=t + timedelta(seconds=s), properties={"v": v})
           for m, p, s, v in (("b", "P", 0, "B"), ("a", "P", 0, "A"), ("c", "P", 0, "C"),
                              ("z", "Q", 0, "Z"), ("y", "Q", 1, "Y"), ("x", "Q", 2, "X"))]
    defs = [{"name": "f", "type": "first", "event": "E", "property": "v"},
            {"name": "l", "type": "last", "event": "E", "property": "v"}]
    traits = parse_traits(defs, path="t.toml")
    with make_store(evs, ["R"]) as store:
        got = frame(store, traits, from_events=True)
        compute_traits(store, traits, as_of=AS_OF)
        keyed = frame(store, traits, from_events=False)  # one arg_min / arg_max over trait_events.seq
    assert got == keyed == {"P": {"f": "A", "l": "C"}, "Q": {"f": "Z", "l": "X"}, "R": {"f": None, "l": None}}


@SETTINGS
@given(n=st.integers(1, 30), seed=st.integers(0, 10_000))
def test_first_last_many_ties(n, seed):
    """Timestamps drawn from three instants: most events tie; the message id decides."""
    import random

    rnd = random.Random(seed)
    base = datetime(2025, 2, 1, tzinfo=UTC)
    evs = [Ev(message_id=f"m{rnd.randrange(10**6):06d}-{i}", profile_id=rnd.choice(["p1", "p2", "p3"]),
              event="E", timestamp=base + timedelta(hours=rnd.randrange(3)),
              properties={"v": rnd.choice([None, "a", "b", 3])}) for i in range(n)]
    defs = [{"name": "f", "type": "first", "event": "E", "property": "v"},
            {"name": "l", "type": "last", "event": "E", "property": "v", "value_type": "number"}]
    traits = parse_traits(defs, path="t.toml")
    store = shared_store(evs)
    want = oracle.compute(traits, evs, ["p0"], AS_OF)
    check(frame(store, traits, from_events=True), want, traits)
    compute_traits(store, traits, as_of=AS_OF)  # trait_events current: first / last by its seq
    check(frame(store, traits, from_events=False), want, traits)


def test_traits_of_several_events_and_values_in_their_own_passes():
    """Traits of other events (``e<k>``) and by-value traits (``v<k>``), a capped list among them."""
    t0 = AS_OF - timedelta(days=2)
    evs = [Ev(message_id=f"m{i}", profile_id="P", event=e, timestamp=t0 + timedelta(minutes=i), properties={"v": v})
           for i, (e, v) in enumerate([("A", "x"), ("B", "c"), ("B", "a"), ("B", "b"), ("A", "x"), ("B", "a")])]
    defs = [{"name": "n", "type": "event_counter", "event": "A"},
            {"name": "u", "type": "unique_list", "event": "B", "property": "v", "max_items": 2},
            {"name": "c", "type": "unique_list_count", "event": "B", "property": "v"},
            {"name": "m", "type": "most_frequent", "event": "A", "property": "v"},
            {"name": "mb", "type": "most_frequent", "event": "B", "property": "v", "min_frequency": 1},
            {"name": "l", "type": "last", "event": "B", "property": "v"}]
    traits = parse_traits(defs, path="t.toml")
    with make_store(evs, ["R"]) as store:
        got = frame(store, traits, from_events=True)
    assert got == {"P": {"n": 2, "u": ["a", "c"], "c": 3, "m": "x", "mb": "a", "l": "a"},
                   "R": {"n": 0, "u": [], "c": 0, "m": None, "mb": None, "l": None}}

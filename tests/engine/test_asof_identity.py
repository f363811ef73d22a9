"""Traits as of an instant use the identity as of that instant: the values computed on the whole
store equal those computed on a store holding only the events up to then (resolved from
scratch), whatever came later (merges included), incrementally or in full."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import event, given
from hypothesis import strategies as st

from engine.compute import compute_traits, explain_trait, trait_frame
from engine.errors import NotFoundError
from engine.identity.resolve import resolve
from engine.store import Store
from tests.traits.test_incremental import RULES, SETTINGS, assert_same, insert, stream, values
from tests.traits.test_properties import AS_OF, definition
from traits.registry import parse_traits

import pytest

INSTANTS = [timedelta(0), -timedelta(minutes=10), -timedelta(days=1), -timedelta(days=7), -timedelta(days=40),
            timedelta(days=3)]


def prefix_values(evs: list[dict], traits, at) -> dict:
    """The oracle: only the events up to ``at`` exist; resolved and computed from scratch."""
    with Store.open(None) as s:
        insert(s, [e for e in evs if e["timestamp"] <= at], 1)
        resolve(s, RULES)
        compute_traits(s, traits, as_of=at, full=True)
        return values(s)


@SETTINGS
@given(
    evs=stream(),
    defs=st.lists(st.integers(0, 10**6), min_size=1, max_size=3).flatmap(
        lambda seeds: st.tuples(*[definition(i) for i in range(len(seeds))])),
    shifts=st.lists(st.sampled_from(INSTANTS), min_size=1, max_size=4),
    split=st.integers(0, 22),
)
def test_values_as_of_an_instant_equal_the_store_of_the_events_up_to_then(evs, defs, shifts, split):
    traits = parse_traits(list(defs), path="a.toml")
    with Store.open(None) as s:
        insert(s, evs[:split], 1)
        resolve(s, RULES)
        compute_traits(s, traits, as_of=AS_OF + shifts[0])
        insert(s, evs[split:], 2)
        resolve(s, RULES)
        if s.first_row("SELECT count(*) FROM identity_merges")[0]:
            event("merges")
        for shift in shifts:
            at = AS_OF + shift
            report = compute_traits(s, traits, as_of=at)
            event("full" if report.full else "incremental")
            want = prefix_values(evs, traits, at)
            assert_same(values(s), want, traits)
            frame = {r.pop("profile_id"): r for r in trait_frame(s, traits, as_of=at, from_events=True).to_dicts()}
            assert_same(frame, want, traits)
        got = values(s)
        compute_traits(s, traits, as_of=at, full=True)
        assert_same(got, values(s), traits)


def _story() -> list[dict]:
    """An anonymous visitor (two A events) and a known user (one), linked at AS_OF - 1 day."""
    base = {"type": "track", "event": "A", "properties": {}}
    return [
        {**base, "message_id": "a1", "timestamp": AS_OF - timedelta(days=3), "user_id": None, "anonymous_id": "x"},
        {**base, "message_id": "a2", "timestamp": AS_OF - timedelta(days=2), "user_id": None, "anonymous_id": "x"},
        {**base, "message_id": "u1", "timestamp": AS_OF - timedelta(days=2, hours=12), "user_id": "u",
         "anonymous_id": None},
        {**base, "message_id": "link", "event": "B", "timestamp": AS_OF - timedelta(days=1), "user_id": "u",
         "anonymous_id": "x"},
    ]


def test_a_merge_after_as_of_does_not_merge_the_values_before_it():
    traits = parse_traits([{"name": "n", "type": "event_counter", "event": "A"}], path="s.toml")
    with Store.open(None) as s:
        insert(s, _story(), 1)
        resolve(s, RULES)
        before = AS_OF - timedelta(days=1, minutes=1)
        report = compute_traits(s, traits, as_of=before)
        assert report.profiles == 2
        assert sorted(v["n"] for v in values(s).values()) == [1, 2]
        compute_traits(s, traits, as_of=AS_OF)
        assert [v["n"] for v in values(s).values()] == [3]
        # and back again: incremental equals full
        compute_traits(s, traits, as_of=before)
        got = values(s)
        compute_traits(s, traits, as_of=before, full=True)
        assert got == values(s) and len(got) == 2


def test_explain_as_of_an_instant_reads_the_profile_then():
    traits = parse_traits([{"name": "n", "type": "event_counter", "event": "A"}], path="s.toml")
    with Store.open(None) as s:
        insert(s, _story(), 1)
        resolve(s, RULES)
        (survivor,) = [r[0] for r in s.con.execute("SELECT profile_id FROM profiles").fetchall()]
        (merged,) = [r[0] for r in s.con.execute("SELECT merged_profile_id FROM identity_merges").fetchall()]
        before = AS_OF - timedelta(days=1, minutes=1)
        ex = explain_trait(s, merged, traits[0], as_of=before)
        assert ex.profile_id == merged
        ex_now = explain_trait(s, merged, traits[0], as_of=AS_OF)  # merged away by then: the survivor
        assert ex_now.profile_id == survivor
        with pytest.raises(NotFoundError, match="did not exist yet"):
            explain_trait(s, survivor, traits[0], as_of=AS_OF - timedelta(days=4))


def test_export_and_show_use_the_identity_as_of_the_stored_values():
    from types import SimpleNamespace

    from engine.export import export_frame
    from engine.views import profile_view

    traits = parse_traits([{"name": "n", "type": "event_counter", "event": "A"}], path="s.toml")
    config = SimpleNamespace(traits=traits, predictions=())
    with Store.open(None) as s:
        insert(s, _story(), 1)
        resolve(s, RULES)
        (survivor,) = [r[0] for r in s.con.execute("SELECT profile_id FROM profiles").fetchall()]
        compute_traits(s, traits, as_of=AS_OF - timedelta(days=1, minutes=1))
        rows = {tuple(r["identifiers"]): r["n"] for r in export_frame(s, config).to_dicts()}
        assert rows == {("anonymous_id:x",): 2, ("user_id:u",): 1}
        view = profile_view(s, config, survivor)
        assert view.traits_note and "as of" in view.traits_note
        assert view.traits["n"] in (1, 2) and view.identifiers.height == 2  # identifiers: now
        compute_traits(s, traits, as_of=AS_OF)
        (row,) = export_frame(s, config).to_dicts()
        assert sorted(row["identifiers"]) == ["anonymous_id:x", "user_id:u"] and row["n"] == 3
        assert profile_view(s, config, survivor).traits_note is None

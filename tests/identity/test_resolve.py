"""``resolve`` against a store: re-runs, late events, rule changes, the report; ``find_profile``."""

from __future__ import annotations

import pytest
from rich.console import Console

from engine.errors import IdentityError, NotFoundError
from engine.identity.extract import documents
from engine.identity.resolve import FEED_KEY, IdentityReport, find_profile, resolve
from engine.identity.rules import parse_identity
from tests.identity.conftest import EXAMPLE_RULES
from tests.identity.helpers import assert_feed_is_the_diff, assert_same, engine_result, ev, event_map, load
from tests.identity.oracle import oracle_resolve
from tests.identity.oracle import profile_id as pid

EVENTS = [
    ev("e1", 1, anonymous_id="x"),
    ev("e2", 2, anonymous_id="x", type="identify", traits={"email": "J@K.com", "phone": "+1 (555) 01"}),
    ev("e3", 3, anonymous_id="y"),
    ev("e4", 4, anonymous_id="y", user_id="u1", type="identify", traits={"email": "j@k.com"}),
    ev("e5", 5, user_id="u2", anonymous_id="y"),  # breaks user_id's limit: drops y
    ev("e6", 6, user_id="unknown"),
]


def test_report_numbers_and_rich_summary(store):
    load(store, EVENTS)
    report = resolve(store, EXAMPLE_RULES)
    assert isinstance(report, IdentityReport)
    assert (report.events, report.resolved_events, report.unresolved_events) == (6, 5, 1)
    assert (report.profiles, report.merges, report.violations, report.blocked) == (2, 1, 1, 1)
    assert report.violations_by_rule == (("user_id", "anonymous_id", 1),)
    assert report.blocked_values == (("user_id", "unknown", 1),)
    assert report.largest_profiles[0] == (pid("e1"), 4)
    assert not report.up_to_date
    console = Console(record=True, width=100)
    console.print(report)
    text = console.export_text()
    assert "Violations by rule" in text and "unknown" in text and pid("e1") in text


def test_second_run_without_changes_is_up_to_date_and_changes_nothing(store):
    load(store, EVENTS)
    resolve(store, EXAMPLE_RULES)
    before = engine_result(store)
    again = resolve(store, EXAMPLE_RULES)
    assert again.up_to_date and again.profiles == 2
    assert engine_result(store) == before


def test_late_events_and_rule_changes_give_the_from_scratch_result(store):
    load(store, EVENTS[3:], ingest_id=1)
    resolve(store, EXAMPLE_RULES)
    load(store, EVENTS[:3], ingest_id=2)  # older than everything resolved so far
    resolve(store, EXAMPLE_RULES)
    assert_same(engine_result(store), oracle_resolve(EVENTS, EXAMPLE_RULES))
    loose = parse_identity({"identifiers": [{"type": "user_id", "limit": 2}, {"type": "anonymous_id", "limit": 5}]})
    assert not resolve(store, loose).up_to_date
    assert_same(engine_result(store), oracle_resolve(EVENTS, loose))


def test_new_events_re_resolve_only_the_components_they_touch(store):
    other = [ev("o1", 1, anonymous_id="z"), ev("o2", 2, anonymous_id="z", user_id="u9")]
    load(store, EVENTS + other, ingest_id=1)
    first = resolve(store, EXAMPLE_RULES)
    assert first.mode == "full" and first.created == 3 and first.new_events == 8
    # a late event that links y to a fresh anonymous id: only e1..e5's component is redone
    late = ev("e0", 0.5, anonymous_id="w", type="identify", traits={"email": "j@k.com"})
    load(store, [late], ingest_id=2)
    report = resolve(store, EXAMPLE_RULES)
    assert report.mode == "incremental" and report.touched_components == 1
    assert (report.new_events, report.reresolved_events) == (1, 6)  # e6 has no usable identifier
    # e0 is now the oldest event of the component: its profile replaces e1's
    kinds = dict(store.con.execute(
        "SELECT profile_id, kind FROM identity_changes WHERE run_id = ?", [report.run_id]
    ).fetchall())
    assert kinds == {pid("e1"): "removed", pid("e0"): "created"}
    assert_same(engine_result(store), oracle_resolve([*EVENTS, *other, late], EXAMPLE_RULES))
    # an event touching nothing known resolves alone and changes nothing else
    load(store, [ev("n1", 9, anonymous_id="new")], ingest_id=3)
    report = resolve(store, EXAMPLE_RULES)
    assert (report.touched_components, report.reresolved_events, report.created, report.changed) == (0, 1, 1, 0)
    # a known profile gaining an event is "changed"
    load(store, [ev("o3", 9, anonymous_id="z")], ingest_id=4)
    report = resolve(store, EXAMPLE_RULES)
    assert (report.created, report.removed, report.changed) == (0, 0, 1)


def test_later_events_continue_and_late_no_op_events_are_absorbed(store):
    load(store, EVENTS, ingest_id=1)
    resolve(store, EXAMPLE_RULES)
    # later events: continue from the stored state (e7 merges nothing, e8 creates a profile)
    later = [ev("e7", 7, anonymous_id="x", type="identify", traits={"plan": "pro"}),
             ev("e8", 8, anonymous_id="q")]
    load(store, later, ingest_id=2)
    report = resolve(store, EXAMPLE_RULES)
    assert (report.new_events, report.continued_events, report.reresolved_events) == (2, 2, 2)
    assert (report.created, report.changed, report.absorbed_events) == (1, 1, 0)
    # a late event whose identifiers were all in one profile (within limits) by then: absorbed;
    # its identify traits lose to the later e7 but add a key
    late = ev("e2b", 2.5, anonymous_id="x", type="identify", traits={"plan": "free", "tier": 1})
    load(store, [late], ingest_id=3)
    report = resolve(store, EXAMPLE_RULES)
    assert (report.absorbed_events, report.reresolved_events, report.changed) == (1, 1, 1)
    # a late event with an identifier not attached then: its component is re-resolved
    late2 = ev("e3b", 3.5, anonymous_id="y", user_id="u7")
    load(store, [late2], ingest_id=4)
    report = resolve(store, EXAMPLE_RULES)
    assert report.absorbed_events == 0 and report.reresolved_events > 1
    assert_same(engine_result(store), oracle_resolve([*EVENTS, *later, late, late2], EXAMPLE_RULES))


def test_a_late_event_re_resolves_the_events_a_limit_left_unresolved(store):
    rules = parse_identity({"identifiers": [{"type": "email", "limit": 1}, {"type": "anonymous_id", "limit": 5}]})
    events = [
        # two emails under a limit of 1: a profile created over its limit ...
        ev("a1", 1, anonymous_id="x", type="identify", traits={"email": "e1@x.io"},
           context={"traits": {"email": "e2@x.io"}}),
        ev("a2", 2, anonymous_id="x"),  # ... so this event drops x and ends unresolved
    ]
    load(store, events, ingest_id=1)
    resolve(store, rules)
    late = ev("a0", 0.5, anonymous_id="x", type="identify", traits={"email": "e1@x.io"})
    load(store, [late], ingest_id=2)
    report = resolve(store, rules)
    assert report.reresolved_events == 3  # a2 too, found through its violations
    assert_same(engine_result(store), oracle_resolve([*events, late], rules))


def test_a_stale_event_rowid_falls_back_to_the_message_id(store):
    """``event_profiles.event_rowid`` is a hint: rows moved in ``events`` since (deleted and
    compacted) are found by message id, and the re-resolution is the same."""
    load(store, EVENTS, ingest_id=1)
    resolve(store, EXAMPLE_RULES)
    # every hint now names the wrong event (or none)
    store.con.execute("UPDATE event_profiles SET event_rowid = event_rowid + 3")
    late = ev("e0", 0.5, anonymous_id="w", user_id="u1")
    load(store, [late], ingest_id=2)
    report = resolve(store, EXAMPLE_RULES)
    assert report.reresolved_events > 1
    assert_same(engine_result(store), oracle_resolve([*EVENTS, late], EXAMPLE_RULES))
    # the re-resolved rows carry their true rowids again
    assert store.con.execute(
        """SELECT count(*) FROM event_profiles ep JOIN events e ON e.rowid = ep.event_rowid
        AND e.message_id = ep.message_id WHERE ep.message_id IN ('e0', 'e1', 'e2', 'e3', 'e4')"""
    ).fetchall()[0][0] == 5


def test_a_merge_in_a_continuation_keeps_a_later_null_from_the_merged_profile(store):
    """Identify traits merge from the stored states: a key removed (null) in one profile after
    the other set it stays removed when they merge, without reading the stored events."""
    events = [
        ev("t1", 1, anonymous_id="a", type="identify", traits={"plan": "pro", "seat": 3}),
        ev("t2", 2, user_id="u", type="identify", traits={"plan": None, "city": "Oslo"}),
        ev("t3", 3, anonymous_id="a", type="identify", traits={"seat": None}),
    ]
    load(store, events, ingest_id=1)
    resolve(store, EXAMPLE_RULES)
    assert store.con.execute("SELECT count(*) FROM identity_trait_nulls").fetchall()[0][0] == 2
    later = [ev("t4", 4, anonymous_id="a", user_id="u"), ev("t5", 5, user_id="u", type="identify",
                                                            traits={"seat": 4})]
    load(store, later, ingest_id=2)
    report = resolve(store, EXAMPLE_RULES)
    assert report.continued_events == 2 and report.reresolved_events == 2
    traits = dict(store.con.execute("SELECT key, value::VARCHAR FROM profile_traits").fetchall())
    assert traits == {"city": '"Oslo"', "seat": "4"}  # plan: null at t2 beats "pro" at t1
    assert_same(engine_result(store), oracle_resolve([*events, *later], EXAMPLE_RULES))


def test_rules_change_or_a_changed_ingest_rebuilds_everything(store):
    load(store, EVENTS, ingest_id=1)
    resolve(store, EXAMPLE_RULES)
    loose = parse_identity({"identifiers": [{"type": "user_id", "limit": 2}, {"type": "anonymous_id", "limit": 5}]})
    assert resolve(store, loose).mode == "full"
    store.con.execute("DELETE FROM events WHERE message_id = 'e5'")
    report = resolve(store, loose)
    assert report.mode == "full"
    assert_same(engine_result(store), oracle_resolve([e for e in EVENTS if e["message_id"] != "e5"], loose))


def test_the_event_feed_lists_each_incremental_run_and_restarts_after_a_full_one(store):
    """A store resolved before the feed existed gets the table on its next run and the feed
    starts there; a full run empties it and the feed starts again with the next run."""
    load(store, EVENTS, ingest_id=1)
    resolve(store, EXAMPLE_RULES)
    store.con.execute("DROP TABLE identity_event_changes")  # as a store of the previous code
    store.con.execute(f"DELETE FROM meta WHERE key = '{FEED_KEY}'")
    before = event_map(store)
    # e0 comes before x's first event: x's profile is re-resolved under a new id (a move)
    load(store, [ev("e0", 0.5, anonymous_id="x"), ev("e9", 9, anonymous_id="q")], ingest_id=2)
    report = resolve(store, EXAMPLE_RULES)
    assert report.mode == "incremental" and store.get_meta(FEED_KEY) == str(report.run_id)
    assert_feed_is_the_diff(store, report.run_id, before, event_map(store))
    moved = store.con.execute(
        "SELECT count(*) FROM identity_event_changes WHERE previous_profile_id IS NOT NULL").fetchall()[0][0]
    assert moved == sum(p == pid("e1") for p in before.values()) > 0  # they left pid(e1) for pid(e0)
    loose = parse_identity({"identifiers": [{"type": "user_id", "limit": 2}, {"type": "anonymous_id", "limit": 5}]})
    report = resolve(store, loose)
    assert report.mode == "full" and store.get_meta(FEED_KEY) == str(report.run_id + 1)
    assert store.con.execute("SELECT count(*) FROM identity_event_changes").fetchall()[0][0] == 0
    before = event_map(store)
    load(store, [ev("e10", 10, anonymous_id="q")], ingest_id=3)
    report = resolve(store, loose)
    assert report.mode == "incremental" and store.get_meta(FEED_KEY) == str(report.run_id)
    assert_feed_is_the_diff(store, report.run_id, before, event_map(store))


def test_custom_sources_in_properties_and_the_message_resolve_incrementally(store):
    """Identity reads ``properties`` / ``raw`` only for custom sources there (``documents``); a
    late event re-resolves stored events through them, as the oracle does."""
    rules = parse_identity({"identifiers": [
        {"type": "user_id", "limit": 1},
        {"type": "crm_id", "limit": 1, "sources": ["properties.crm", "integrations.crm"]},
        {"type": "anonymous_id", "limit": 5}]})
    assert documents(rules) == ("traits", "context", "properties", "raw")
    assert documents(EXAMPLE_RULES) == ("traits", "context")
    events = [ev("c1", 1, anonymous_id="x", properties={"crm": "C1"}),
              ev("c2", 2, anonymous_id="y", integrations={"crm": "C1"}),
              ev("c3", 3, anonymous_id="z", properties={"crm": "C2"})]
    load(store, events, ingest_id=1)
    resolve(store, rules)
    late = [ev("c0", 0.5, anonymous_id="z", user_id="u1"), ev("c4", 4, anonymous_id="y", properties={"crm": "C2"})]
    load(store, late, ingest_id=2)
    report = resolve(store, rules)
    assert report.mode == "incremental" and report.reresolved_events > len(late)
    assert_same(engine_result(store), oracle_resolve([*events, *late], rules))


@pytest.mark.parametrize("late", [False, True])
def test_a_new_profile_id_that_is_already_stored_is_an_error(store, late):
    """The sha256-prefix clash check, on the continued path and on a re-resolution."""
    load(store, EVENTS, ingest_id=1)
    resolve(store, EXAMPLE_RULES)
    new = ev("z0", 0.5 if late else 9, anonymous_id="x" if late else "fresh")
    store.con.execute("INSERT INTO profiles VALUES (?, 'other', TIMESTAMPTZ '2020-01-01')", [pid("z0")])
    load(store, [new], ingest_id=2)
    with pytest.raises(IdentityError, match="collision"):
        resolve(store, EXAMPLE_RULES)


def test_empty_store_resolves_to_nothing(store):
    report = resolve(store, EXAMPLE_RULES)
    assert (report.events, report.profiles) == (0, 0)
    console = Console(record=True, width=100)
    console.print(report)
    assert "profiles ingest" in console.export_text()
    with pytest.raises(NotFoundError, match="profiles resolve"):
        find_profile(store, "user_id:u1")


WITH_PHONE = parse_identity(
    {
        "identifiers": [
            {"type": "user_id", "limit": 1},
            {"type": "email", "limit": 5},
            {"type": "phone", "limit": 5},
            {"type": "anonymous_id", "limit": 5},
        ]
    }
)


@pytest.mark.parametrize(
    ("ident", "creator"),
    [
        ("user_id:u1", "e1"),
        ("email: J@K.COM ", "e1"),
        ("phone:+1 555-01", "e1"),
        ("anonymous_id:y", "e1"),
        ("user_id:u2", "e5"),
    ],
)
def test_find_profile_by_normalised_identifier(store, ident, creator):
    load(store, EVENTS)
    resolve(store, WITH_PHONE)
    assert find_profile(store, ident) == pid(creator)


def test_find_profile_by_id_and_by_merged_id(store):
    load(store, EVENTS)
    resolve(store, EXAMPLE_RULES)
    assert find_profile(store, pid("e1")) == pid("e1")
    assert find_profile(store, pid("e3")) == pid("e1")  # e3's profile was merged into e1's


@pytest.mark.parametrize(
    ("ident", "message"),
    [
        ("user_id:nobody", "check the spelling"),
        ("user_id:unknown", "blocked value"),
        ("crm_id:1", "types in this store"),
        ("prf_0000000000000000", "check the id"),
        ("just-text", "neither a profile id"),
        ("email:", "neither a profile id"),
    ],
)
def test_find_profile_errors_say_what_to_do(store, ident, message):
    load(store, EVENTS)
    resolve(store, EXAMPLE_RULES)
    with pytest.raises(NotFoundError, match=message):
        find_profile(store, ident)


def test_layout_columns_are_added_with_another_store_attached(tmp_path):
    """The added columns are looked up in this store only (an attached resolved store has them)."""
    from engine.store import Store

    other = tmp_path / "other.duckdb"
    with Store.open(other) as s:
        load(s, EVENTS)
        resolve(s, EXAMPLE_RULES)
    with Store.open(None) as s:
        s.con.execute(f"ATTACH '{other}' AS other (READ_ONLY)")
        load(s, EVENTS)
        resolve(s, EXAMPLE_RULES)
        assert_same(engine_result(s), oracle_resolve(EVENTS, EXAMPLE_RULES))


def test_a_repeated_trait_key_reads_its_first_value_for_identifiers_and_profile_traits(tmp_path):
    """Ingest's rule for a member named twice is "the first wins" (docs/ingest.md); the profile
    trait and the identifier of one identify must not read different values of it."""
    from datetime import datetime, timezone

    from engine.identity.asof import traits_sql
    from engine.store import Store
    from ingest.load import ingest_paths

    path = tmp_path / "dup.ndjson"
    path.write_text('{"type":"identify","messageId":"m1","userId":"u1","timestamp":"2024-01-01T00:00:00Z",'
                    '"traits":{"email":"first@x.com","plan":"a","plan":"b","email":"second@x.com"}}\n')
    with Store.open(tmp_path / "s.duckdb") as s:
        ingest_paths(s, [path], now=datetime(2024, 2, 1, tzinfo=timezone.utc))
        resolve(s, parse_identity(None))
        emails = s.con.execute("SELECT value FROM profile_identifiers WHERE type = 'email'").fetchall()
        stored = dict(s.con.execute("SELECT key, value::VARCHAR FROM profile_traits").fetchall())
        as_of = dict(s.con.execute(f"SELECT key, value::VARCHAR FROM ({traits_sql('event_profiles')})").fetchall())
    assert emails == [("first@x.com",)]
    assert stored == as_of == {"email": '"first@x.com"', "plan": '"a"'}

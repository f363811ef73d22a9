"""Incremental compute equals a full recompute, row for row: random events arriving in random
batches (late events included), identity resolved by the real ``resolve`` between batches (merges,
limit drops, re-resolution), definitions edited and ``as_of`` moved between runs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.compute import compute_traits, trait_frame, trait_stats
from engine.identity.asof import event_map
from engine.identity.resolve import resolve
from engine.identity.rules import parse_identity
from engine.store import Store
from tests.traits.test_properties import AS_OF, OFFSETS, definition, properties, same
from traits.registry import parse_traits

RULES = parse_identity(None)
USERS = ["u1", "u2", "u3", None, None]
ANONS = ["a1", "a2", "a3", "a4", None]


@st.composite
def stream(draw):
    """Events with identifiers from small pools, so batches merge and split profiles."""
    n = draw(st.integers(1, 22))
    out = []
    for i in range(n):
        user, anon = draw(st.sampled_from(USERS)), draw(st.sampled_from(ANONS))
        if user is None and anon is None:
            anon = "a1"
        event = draw(st.sampled_from(["A", "A", "B", "Page Viewed"]))
        out.append({
            "message_id": f"m{i:02d}",
            "type": "page" if event == "Page Viewed" else "track",
            "event": event,
            "timestamp": AS_OF + draw(st.sampled_from(OFFSETS)) - timedelta(minutes=draw(st.integers(0, 3))),
            "user_id": user,
            "anonymous_id": anon,
            "properties": draw(properties()),
        })
    return out


def insert(store: Store, events: list[dict], ingest_id: int) -> None:
    """Store events as one ingest would: rows, their derived columns, an ingest_log row."""
    rows = []
    for e in events:
        raw = json.dumps({"messageId": e["message_id"], "type": e["type"]})
        rows.append([e["message_id"], e["type"], e["event"], e["timestamp"], e["user_id"], e["anonymous_id"],
                     json.dumps(e["properties"]), raw, hashlib.sha256(raw.encode()).hexdigest(), ingest_id])
    if rows:
        store.con.executemany(
            "INSERT INTO events (message_id, type, event, timestamp, user_id, anonymous_id, properties, raw, "
            "payload_hash, ingest_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    store.fill_derived_columns("ingest_id = ?", [ingest_id])


def values(store: Store) -> dict[str, dict]:
    rows = store.con.sql("SELECT * FROM trait_values ORDER BY profile_id").pl().to_dicts()
    return {r.pop("profile_id"): r for r in rows}


def assert_trait_events_current(store: Store) -> None:
    """``trait_events`` equals what it replaces: the traits' events LEFT JOINed to the map (the
    identity as of the state's instant)."""
    meta = json.loads(store.get_meta("traits_state"))
    mapped = event_map(store, datetime.fromisoformat(meta["as_of"])).relation
    names = ", ".join(f"'{e}'" for e in meta["tev_events"]) or "NULL"
    cols = "".join(f', "{c}"' for c in meta["tev_columns"])
    got = store.con.sql(f"SELECT profile_id, message_id, timestamp, event{cols} FROM trait_events ORDER BY message_id")
    want = store.con.sql(
        f"""SELECT ep.profile_id, e.message_id, e.timestamp, e.event{cols.replace(', "', ', e."')}
        FROM events e LEFT JOIN {mapped} ep ON ep.message_id = e.message_id
        WHERE e.type IN ('track', 'page', 'screen') AND e.event IN ({names}) AND e.ingest_id <= {meta["watermark"]}
        ORDER BY e.message_id""")
    assert got.fetchall() == want.fetchall()
    # seq (first / last in one aggregate) is the canonical order, however the rows arrived
    by_seq = store.con.sql("SELECT message_id FROM trait_events ORDER BY seq").fetchall()
    assert by_seq == store.con.sql("SELECT message_id FROM trait_events ORDER BY timestamp, message_id").fetchall()
    assert store.first_row("SELECT count(*) FROM trait_events WHERE seq IS NULL")[0] == 0


def assert_same(got: dict, want: dict, traits) -> None:
    assert list(got) == list(want)
    for p in want:
        for t in traits:
            assert same(got[p][t.name], want[p][t.name]), (p, t, got[p][t.name], want[p][t.name])


SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    evs=stream(),
    defs=st.lists(st.integers(0, 10**6), min_size=2, max_size=4).flatmap(
        lambda seeds: st.tuples(*[definition(i) for i in range(len(seeds))])),
    batches=st.integers(1, 4).flatmap(lambda k: st.tuples(st.just(k), st.randoms(use_true_random=False))),
    as_ofs=st.lists(st.sampled_from([timedelta(0), timedelta(days=1), -timedelta(days=1), timedelta(minutes=20),
                                     -timedelta(days=7), timedelta(days=30)]), min_size=4, max_size=4),
    edit=st.integers(0, 3),
    slides=st.lists(st.sampled_from([timedelta(days=1), -timedelta(days=1), timedelta(hours=3), timedelta(days=6),
                                     -timedelta(days=30), timedelta(minutes=20)]), max_size=3),
    unresolved=st.integers(1, 5),
)
def test_incremental_equals_full_for_any_batches_merges_as_of_and_edits(
    evs, defs, batches, as_ofs, edit, slides, unresolved
):
    k, rnd = batches
    order = list(evs)
    rnd.shuffle(order)  # any arrival order: later batches hold earlier (late) events
    cuts = sorted(rnd.randint(0, len(order)) for _ in range(k - 1))
    parts = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True)]
    all_defs = list(defs)
    with Store.open(None) as store:
        for b, part in enumerate(parts):
            insert(store, part, b + 1)
            if b != unresolved:  # that batch is computed before it is resolved (next batch resolves it)
                resolve(store, RULES)
            active = all_defs if b != edit else all_defs[1:]  # one run without the first trait
            if b == edit and len(active) > 1:
                active = [{**active[0], "description": "edited"}, *active[1:]]  # description only
            traits = parse_traits(active, path="i.toml")
            at = AS_OF + as_ofs[b]
            report = compute_traits(store, traits, as_of=at)
            event("full" if report.full else f"merged {bool(report.merged)}, recomputed {bool(report.recomputed)}")
            event(f"identity pass: {report.identity_pass}")
            assert_trait_events_current(store)
            assert_same(values(store), {r.pop("profile_id"): r for r in trait_frame(store, traits, as_of=at, from_events=True).to_dicts()},
                        traits)
            # and over trait_events when the run left it current (first / last by its seq)
            assert_same(values(store), {r.pop("profile_id"): r for r in trait_frame(store, traits, as_of=at).to_dicts()},
                        traits)
            incremental_stats = trait_stats(store).drop("as_of").to_dicts()
        if unresolved < len(parts):  # the batch computed before it was resolved, resolved now
            resolve(store, RULES)
            report = compute_traits(store, traits, as_of=at)
            assert_trait_events_current(store)
            assert_same(values(store), {r.pop("profile_id"): r for r in trait_frame(store, traits, as_of=at, from_events=True).to_dicts()},
                        traits)
            incremental_stats = trait_stats(store).drop("as_of").to_dicts()
        # a last run with nothing new changes nothing; then full must equal what incremental built
        again = compute_traits(store, traits, as_of=at)
        assert (again.recomputed, again.merged, again.dropped) == (0, 0, 0) or report.full
        # slides without new events (identity unchanged): merged deltas, reversed counts
        for shift in slides:
            at = at + shift
            compute_traits(store, traits, as_of=at)
            assert_trait_events_current(store)
            assert_same(values(store), {r.pop("profile_id"): r for r in trait_frame(store, traits, as_of=at, from_events=True).to_dicts()},
                        traits)
            # the values pass reads trait_events now that it is current: same values
            assert_same(values(store), {r.pop("profile_id"): r for r in trait_frame(store, traits, as_of=at).to_dicts()},
                        traits)
            incremental_stats = trait_stats(store).drop("as_of").to_dicts()
        got = values(store)
        compute_traits(store, traits, as_of=at, full=True)
        assert_same(got, values(store), traits)
        assert incremental_stats == trait_stats(store).drop("as_of").to_dicts()


@SETTINGS
@given(
    evs=stream(),
    defs=st.lists(st.integers(0, 10**6), min_size=1, max_size=3).flatmap(
        lambda seeds: st.tuples(*[definition(i) for i in range(len(seeds))])),
    data=st.data(),
)
def test_several_resolves_between_computes_compose_the_identity_feed(evs, defs, data):
    """Batches in any arrival order, each resolved, but computed only after some of them: the
    feed of every run since the state's is composed (an event moved twice, moved back, resolved
    late) and the values equal a one-shot frame, ``trait_events`` the join it replaces."""
    order = data.draw(st.permutations(evs))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(order)), min_size=1, max_size=4)))
    parts = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True)]
    computed = data.draw(st.lists(st.booleans(), min_size=len(parts), max_size=len(parts)))
    traits = parse_traits(list(defs), path="s.toml")
    at = max([AS_OF, *(e["timestamp"] for e in evs)])  # after every event: the latest identity
    with Store.open(None) as store:
        for b, part in enumerate(parts):
            insert(store, part, b + 1)
            resolve(store, RULES)
            if b == 0 or computed[b] or b == len(parts) - 1:
                report = compute_traits(store, traits, as_of=at)
                event(f"identity pass: {report.identity_pass}")
                assert report.full == (b == 0)
                assert report.identity_pass in (None, "feed")
                assert_trait_events_current(store)
                want = trait_frame(store, traits, as_of=at, from_events=True).to_dicts()
                assert_same(values(store), {r.pop("profile_id"): r for r in want}, traits)


def test_appended_events_merge_without_recomputing_others():
    defs = [{"name": "n", "type": "event_counter", "event": "A"},
            {"name": "last_k", "type": "last", "event": "A", "property": "k"}]
    traits = parse_traits(defs, path="i.toml")
    evs = [{"message_id": f"m{i}", "type": "track", "event": "A", "timestamp": AS_OF - timedelta(days=i + 1),
            "user_id": f"u{i % 3}", "anonymous_id": None, "properties": {"k": i}} for i in range(9)]
    with Store.open(None) as store:
        insert(store, evs[:6], 1)
        resolve(store, RULES)
        assert compute_traits(store, traits, as_of=AS_OF).full
        # u0 and u1 gain one event each: late (older than their latest) but not older than their
        # first, which would create the profile anew under another id (identity.md) and recompute
        insert(store, [{**e, "timestamp": AS_OF - timedelta(days=1, hours=12)} for e in evs[6:8]], 2)
        resolve(store, RULES)
        report = compute_traits(store, traits, as_of=AS_OF)
        assert (report.full, report.merged, report.recomputed, report.dropped) == (False, 2, 0, 0)
        assert report.identity_pass == "feed"  # the moves come from identity's feed, no scan
        got = values(store)
        assert sorted(v["n"] for v in got.values()) == [2, 3, 3]
        # a new anonymous event linking u0's and u1's events through one anonymous id: a merge
        insert(store, [{**evs[8], "message_id": "x1", "user_id": None, "anonymous_id": "z"},
                       {**evs[8], "message_id": "x2", "user_id": "u0", "anonymous_id": "z"}], 3)
        resolve(store, RULES)
        report = compute_traits(store, traits, as_of=AS_OF + timedelta(days=1))
        assert not report.full
        frame = trait_frame(store, traits, as_of=AS_OF + timedelta(days=1), from_events=True)
        assert values(store) == {r.pop("profile_id"): r for r in frame.to_dicts()}


def test_a_late_event_at_a_stored_instant_takes_its_place_in_the_order():
    """A new event at the instant of stored ones, with a smaller message id, comes first there:
    the stored rows at that instant are ranked again (trait_events.seq), so the values pass, which
    reads first / last from seq, still breaks the tie by message id."""
    t = AS_OF - timedelta(days=2)
    defs = [{"name": "f", "type": "first", "event": "A", "property": "k"},
            {"name": "l", "type": "last", "event": "A", "property": "k"}]
    traits = parse_traits(defs, path="i.toml")
    ev = {"type": "track", "event": "A", "timestamp": t, "user_id": "u1", "anonymous_id": None}
    with Store.open(None) as store:
        insert(store, [{**ev, "message_id": "m5", "properties": {"k": "five"}},
                       {**ev, "message_id": "m7", "properties": {"k": "seven"}}], 1)
        resolve(store, RULES)
        compute_traits(store, traits, as_of=AS_OF)
        insert(store, [{**ev, "message_id": "m1", "properties": {"k": "one"}},
                       {**ev, "message_id": "m9", "properties": {"k": "nine"}},
                       {**ev, "message_id": "m6", "timestamp": t + timedelta(microseconds=1), "properties": {"k": "six"}}], 2)
        resolve(store, RULES)
        assert not compute_traits(store, traits, as_of=AS_OF).full
        assert_trait_events_current(store)
        keyed = trait_frame(store, traits, as_of=AS_OF).to_dicts()
        assert [{k: v for k, v in r.items() if k != "profile_id"} for r in keyed] == [{"f": "one", "l": "six"}]
        assert values(store) == {r.pop("profile_id"): r for r in keyed}


CRASH = textwrap.dedent("""
    import os, sys
    from datetime import datetime, UTC
    from engine.compute import compute_traits
    from engine.store import Store
    from traits.registry import parse_traits
    import engine.compute as c
    defs = [{"name": "n", "type": "event_counter", "event": "A"},
            {"name": "u", "type": "unique_list", "event": "A", "property": "k"}]
    store = Store.open(sys.argv[1])
    original = c._write_update
    def die(*a, **k):
        original(*a, **k)
        os.kill(os.getpid(), 9)  # killed inside the transaction, after the state was rewritten
    c._write_update = die
    compute_traits(store, parse_traits(defs, path="c.toml"), as_of=datetime(2025, 3, 1, tzinfo=UTC))
""")


def test_kill_9_mid_update_converges(tmp_path: Path):
    defs = [{"name": "n", "type": "event_counter", "event": "A"},
            {"name": "u", "type": "unique_list", "event": "A", "property": "k"}]
    traits = parse_traits(defs, path="c.toml")
    evs = [{"message_id": f"m{i}", "type": "track", "event": "A", "timestamp": AS_OF - timedelta(hours=40 - i),
            "user_id": f"u{i % 4}", "anonymous_id": None, "properties": {"k": f"v{i % 5}"}} for i in range(40)]
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        insert(store, evs[:30], 1)
        resolve(store, RULES)
        compute_traits(store, traits, as_of=AS_OF)
        insert(store, evs[30:], 2)
        resolve(store, RULES)
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", CRASH, str(path)], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with Store.open(path) as store:
        report = compute_traits(store, traits, as_of=AS_OF)
        assert not report.full and report.merged == 4  # the killed update left no trace
        got = values(store)
        compute_traits(store, traits, as_of=AS_OF, full=True)
        assert got == values(store)
        assert sum(v["n"] for v in got.values()) == 40


def test_definition_change_rebuilds_only_that_trait():
    a = {"name": "a", "type": "event_counter", "event": "A"}
    b = {"name": "b", "type": "event_counter", "event": "A", "window": {"within_days": 2}}
    evs = [{"message_id": f"m{i}", "type": "track", "event": "A", "timestamp": AS_OF - timedelta(days=i),
            "user_id": "u1", "anonymous_id": None, "properties": {}} for i in range(5)]
    with Store.open(None) as store:
        insert(store, evs, 1)
        resolve(store, RULES)
        compute_traits(store, parse_traits([a, b], path="d.toml"), as_of=AS_OF)
        b2 = {**b, "window": {"within_days": 4}}
        report = compute_traits(store, parse_traits([a, b2], path="d.toml"), as_of=AS_OF)
        assert report.rebuilt == ("b",) and not report.full
        assert list(values(store).values()) == [{"a": 5, "b": 4}]
        report = compute_traits(store, parse_traits([{**a, "description": "x"}, b2], path="d.toml"), as_of=AS_OF)
        assert report.rebuilt == () and report.recomputed == 0


def test_sliding_as_of_touches_only_profiles_at_window_edges():
    counter = {"name": "recent", "type": "event_counter", "event": "A", "window": {"within_days": 7}}
    last = {"name": "last_k", "type": "last", "event": "A", "property": "k", "window": {"within_days": 7}}
    evs = [{"message_id": f"m{i}", "type": "track", "event": "A", "timestamp": AS_OF - timedelta(days=d),
            "user_id": u, "anonymous_id": None, "properties": {"k": i}}
           for i, (u, d) in enumerate([("u1", 3), ("u2", 6.5), ("u3", 20), ("u3", 21), ("u4", 0.5)])]
    # every event is before both instants, so both use the latest identity (an event after
    # as_of does not exist then: it would be an identity change, docs/incremental.md)
    with Store.open(None) as store:
        insert(store, evs, 1)
        resolve(store, RULES)
        traits = parse_traits([counter], path="s.toml")
        compute_traits(store, traits, as_of=AS_OF)
        report = compute_traits(store, traits, as_of=AS_OF + timedelta(days=1))
        # u2's event left the window: a count is reversible, it merges
        assert (report.recomputed, report.merged) == (0, 1)
        assert sorted(v["recent"] for v in values(store).values()) == [0, 0, 1, 1]
        # a last value is not: the profile whose event left is recomputed
        traits = parse_traits([counter, last], path="s.toml")
        compute_traits(store, traits, as_of=AS_OF, full=True)
        report = compute_traits(store, traits, as_of=AS_OF + timedelta(days=1))
        assert (report.recomputed, report.merged) == (1, 0)
        got = values(store)
        assert got == {r.pop("profile_id"): r for r in trait_frame(
            store, traits, as_of=AS_OF + timedelta(days=1)).to_dicts()}
        # and back: u2's event re-enters (merge)
        report = compute_traits(store, traits, as_of=AS_OF)
        assert (report.recomputed, report.merged) == (0, 1)
        compute_traits(store, traits, as_of=AS_OF)
        assert values(store) == {r.pop("profile_id"): r for r in trait_frame(store, traits, as_of=AS_OF, from_events=True).to_dicts()}


def test_sliding_windows_longer_than_the_calendar():
    """A session or ``within_last_days`` reaching past year 1 slides without overflowing, equal to a full recompute."""
    defs = [{"name": "s", "type": "event_counter", "event": "A", "window": {"session_minutes": 10**12}},
            {"name": "w", "type": "event_counter", "event": "A",
             "conditions": [{"property": "at", "operator": "within_last_days", "value": 10**6}]}]
    traits = parse_traits(defs, path="s.toml")
    evs = [{"message_id": f"m{i}", "type": "track", "event": "A", "timestamp": AS_OF - timedelta(days=d),
            "user_id": "u1", "anonymous_id": None, "properties": {"at": "1950-06-01T00:00:00Z"}}
           for i, d in enumerate([400, 3])]
    with Store.open(None) as store:
        insert(store, evs, 1)
        resolve(store, RULES)
        compute_traits(store, traits, as_of=AS_OF)
        compute_traits(store, traits, as_of=AS_OF + timedelta(days=1))
        got = values(store)
        assert [(v["s"], v["w"]) for v in got.values()] == [(2, 2)]
        compute_traits(store, traits, as_of=AS_OF + timedelta(days=1), full=True)
        assert values(store) == got


def test_a_late_first_event_renames_the_profile_and_merges():
    defs = [{"name": "n", "type": "event_counter", "event": "A"},
            {"name": "first_k", "type": "first", "event": "A", "property": "k"}]
    traits = parse_traits(defs, path="r.toml")
    evs = [{"message_id": f"m{i}", "type": "track", "event": "A", "timestamp": AS_OF - timedelta(days=5 - i),
            "user_id": "u1", "anonymous_id": None, "properties": {"k": i}} for i in range(3)]
    with Store.open(None) as store:
        insert(store, evs, 1)
        resolve(store, RULES)
        compute_traits(store, traits, as_of=AS_OF)
        (before,) = values(store)
        late = {**evs[0], "message_id": "late", "timestamp": AS_OF - timedelta(days=9), "properties": {"k": 9}}
        insert(store, [late], 2)  # now the profile's first event: a new profile id (identity.md)
        resolve(store, RULES)
        report = compute_traits(store, traits, as_of=AS_OF)
        assert (report.merged, report.recomputed, report.dropped) == (1, 0, 1)
        (after,) = values(store).items()
        assert after[0] != before and after[1] == {"n": 4, "first_k": "9"}


def test_without_a_recorded_identity_run_the_fingerprint_pass_decides():
    """A state from before the change log existed (no identity run recorded) still updates exactly."""
    from engine.compute import _change_log_usable, _identity_run, _Previous

    defs = [{"name": "n", "type": "event_counter", "event": "A"},
            {"name": "first_k", "type": "first", "event": "A", "property": "k"}]
    traits = parse_traits(defs, path="f.toml")
    evs = [{"message_id": f"m{i}", "type": "track", "event": "A", "timestamp": AS_OF - timedelta(days=9 - i),
            "user_id": f"u{i % 3}", "anonymous_id": f"a{i % 2}" if i > 5 else None, "properties": {"k": i}}
           for i in range(9)]
    with Store.open(None) as store:
        insert(store, evs[:5], 1)
        resolve(store, RULES)
        compute_traits(store, traits, as_of=AS_OF)
        meta = json.loads(store.get_meta("traits_state"))
        store.set_meta("traits_state", json.dumps({**meta, "run": None}))
        insert(store, evs[5:], 2)  # new events, some linking profiles through anonymous ids
        resolve(store, RULES)
        prev = _Previous.load(store)
        assert prev is not None and not _change_log_usable(store, prev, _identity_run(store))
        report = compute_traits(store, traits, as_of=AS_OF)
        assert not report.full and report.merged
        assert_trait_events_current(store)
        want = {r.pop("profile_id"): r for r in trait_frame(store, traits, as_of=AS_OF, from_events=True).to_dicts()}
        assert values(store) == want


def test_a_full_identity_rebuild_after_a_rules_edit_updates_exactly():
    """A rules edit rebuilds identity from scratch; its change log must still name removed profiles."""
    defs = [{"name": "n", "type": "event_counter", "event": "A"}]
    traits = parse_traits(defs, path="r.toml")
    evs = [
        {"message_id": "m0", "type": "track", "event": "A", "timestamp": AS_OF - timedelta(days=3),
         "user_id": None, "anonymous_id": "a0", "properties": {}},
        {"message_id": "m1", "type": "track", "event": "A", "timestamp": AS_OF - timedelta(days=2),
         "user_id": "u0", "anonymous_id": "a0", "properties": {}},
        {"message_id": "m2", "type": "track", "event": "A", "timestamp": AS_OF - timedelta(days=1),
         "user_id": "u1", "anonymous_id": None, "properties": {}},
    ]
    with Store.open(None) as store:
        insert(store, evs, 1)
        resolve(store, RULES)
        compute_traits(store, traits, as_of=AS_OF)
        assert sorted(values(store).values(), key=lambda v: v["n"]) == [{"n": 1}, {"n": 2}]
        user_ids_only = parse_identity({"identifiers": [{"type": "user_id", "limit": 1}]})
        resolve(store, user_ids_only)  # m0 (anonymous only) is now unresolved: prf(m0) is gone
        report = compute_traits(store, traits, as_of=AS_OF)
        # a full resolve writes no event feed: the change log and a scan of its profiles decide
        assert not report.full and report.identity_pass == "change log"
        want = {r.pop("profile_id"): r for r in trait_frame(store, traits, as_of=AS_OF, from_events=True).to_dicts()}
        assert values(store) == want and len(want) == 2
        assert_trait_events_current(store)
        # the feed starts again with the next (incremental) resolve: a late event of u0 moves
        # nothing but joins u0's profile, a new anonymous-only event stays unresolved
        insert(store, [{**evs[1], "message_id": "m3", "timestamp": AS_OF - timedelta(days=4)},
                       {**evs[0], "message_id": "m4"}], 2)
        resolve(store, user_ids_only)
        report = compute_traits(store, traits, as_of=AS_OF)
        assert not report.full and report.identity_pass == "feed"
        want = {r.pop("profile_id"): r for r in trait_frame(store, traits, as_of=AS_OF, from_events=True).to_dicts()}
        assert values(store) == want and sorted(v["n"] for v in want.values()) == [1, 2]
        assert_trait_events_current(store)


def test_a_renamed_profile_and_a_new_trait_in_one_run_keep_trait_events_exact():
    """Found by hypothesis: a late first event renames the profile while a trait is added."""
    defs = [{"name": "t0", "type": "event_counter", "event": "A"},
            {"name": "t1", "type": "event_counter", "event": "A"}]
    first, late = ({"message_id": m, "type": "track", "event": "A", "timestamp": AS_OF - timedelta(minutes=k),
                    "user_id": "u1", "anonymous_id": "a1", "properties": {}} for m, k in (("m00", 0), ("m01", 1)))
    with Store.open(None) as store:
        insert(store, [first], 1)
        resolve(store, RULES)
        compute_traits(store, parse_traits(defs[1:], path="r.toml"), as_of=AS_OF)
        insert(store, [late], 2)
        resolve(store, RULES)
        compute_traits(store, parse_traits(defs, path="r.toml"), as_of=AS_OF)
        assert_trait_events_current(store)
        assert list(values(store).values()) == [{"t0": 2, "t1": 2}]


def test_one_run_with_a_rename_a_merge_and_new_events_rewrites_only_their_rows():
    """A late first event (rename), an anonymous profile merged into a user's (recompute, the
    anonymous profile gone) and plain appends in one run: every row of ``trait_events`` is where
    the join puts it, values equal a one-shot frame, untouched profiles' rows are not rewritten."""
    defs = [{"name": "n", "type": "event_counter", "event": "A"},
            {"name": "first_k", "type": "first", "event": "A", "property": "k"},
            {"name": "ks", "type": "unique_list", "event": "A", "property": "k"}]
    traits = parse_traits(defs, path="m.toml")

    def ev(mid, days, user, anon, k):
        return {"message_id": mid, "type": "track", "event": "A", "timestamp": AS_OF - timedelta(days=days),
                "user_id": user, "anonymous_id": anon, "properties": {"k": k}}

    base = [ev("m1", 5, "u1", None, 1), ev("m2", 4, "u1", None, 2), ev("m3", 5, "u2", None, 3),
            ev("m4", 4, None, "a3", 4), ev("m5", 3, None, "a3", 5), ev("m6", 5, "u4", None, 6)]
    later = [ev("l1", 9, "u1", None, 7),     # u1's new first event: renamed
             ev("l2", 1, "u2", "a3", 8),     # links a3's profile into u2's: recomputed, a3's gone
             ev("l3", 1, "u4", None, 9)]     # u4 gains an event: merged
    with Store.open(None) as store:
        insert(store, base, 1)
        resolve(store, RULES)
        compute_traits(store, traits, as_of=AS_OF)
        untouched = store.con.sql("SELECT rowid, profile_id FROM trait_events WHERE message_id = 'm6'").fetchall()
        insert(store, later, 2)
        resolve(store, RULES)
        report = compute_traits(store, traits, as_of=AS_OF)
        assert (report.full, report.merged, report.recomputed, report.dropped) == (False, 2, 1, 2)
        assert_trait_events_current(store)
        assert store.con.sql(
            "SELECT rowid, profile_id FROM trait_events WHERE message_id = 'm6'").fetchall() == untouched
        want = {r.pop("profile_id"): r for r in trait_frame(store, traits, as_of=AS_OF, from_events=True).to_dicts()}
        assert values(store) == want
        assert sorted(v["n"] for v in want.values()) == [2, 3, 4]


def test_a_gone_profile_whose_events_no_longer_resolve_keeps_them_unmapped_without_a_recompute():
    """Orphans are found without scanning the map: a rules edit leaves a profile's events without
    identifiers while nothing is recomputed."""
    defs = [{"name": "n", "type": "event_counter", "event": "A"}]
    traits = parse_traits(defs, path="o.toml")
    evs = [{"message_id": f"m{i}", "type": "track", "event": "A", "timestamp": AS_OF - timedelta(days=i + 1),
            "user_id": "u0" if i < 2 else None, "anonymous_id": None if i < 2 else "a0", "properties": {}}
           for i in range(4)]
    with Store.open(None) as store:
        insert(store, evs, 1)
        resolve(store, RULES)
        compute_traits(store, traits, as_of=AS_OF)
        resolve(store, parse_identity({"identifiers": [{"type": "user_id", "limit": 1}]}))
        report = compute_traits(store, traits, as_of=AS_OF)
        assert (report.full, report.recomputed, report.dropped) == (False, 0, 1)
        assert_trait_events_current(store)
        assert list(values(store).values()) == [{"n": 2}]

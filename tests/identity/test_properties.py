"""Hypothesis: the engine equals the naive oracle on random identity-heavy streams, whatever the
rules, ingest split or arrival order; and the bulk path equals the event-by-event replay."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import hypothesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.identity.graph import GraphInput, GraphState, continue_graph, resolve_graph
from engine.identity.resolve import resolve
from engine.identity.rules import PERIODS, parse_identity
from engine.store import Store
from tests.identity.helpers import T0, assert_feed_is_the_diff, assert_same, engine_result, ev, event_map, load
from tests.identity.oracle import oracle_resolve

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])

users = st.sampled_from(["u0", "u1", "u2", "u3", 42, "unknown", None, None])
anons = st.sampled_from(["a0", "a1", "a2", "a3", "a4", "a5", " a1 ", "000", None])
emails = st.sampled_from(["e0@x.io", "E0@X.io", "e1@x.io", "e2@x.io", " e3@x.io", "n/a", None, None])
phones = st.sampled_from(["+1 555", "+1555", "(555) 1", None, None, None])
# minutes over ~3 years with clusters, so daily/weekly/annual windows both hold and expire
offsets = st.one_of(
    st.integers(0, 60 * 48),
    st.integers(0, 60 * 24 * 365 * 3),
    st.sampled_from([0, 60 * 24, 60 * 24 * 7, 60 * 24 * 30, 60 * 24 * 365]),
)


@st.composite
def events(draw, max_size: int = 25):
    n = draw(st.integers(1, max_size))
    out = []
    for i in range(n):
        kind = draw(st.sampled_from(["track", "identify", "identify", "page", "group"]))
        user = draw(users)
        anon = draw(anons)
        if user is None and anon is None:
            anon = "a0"
        traits = None
        context = None
        if kind in ("identify", "group"):
            traits = {"email": draw(emails), "phone": draw(phones), "plan": draw(st.sampled_from(["a", "b", None]))}
        if draw(st.booleans()):
            context = {"traits": {"email": draw(emails)}}
            if draw(st.booleans()):
                context["device"] = {
                    "type": draw(st.sampled_from(["ios", "android"])),
                    "id": draw(st.sampled_from(["d0", "d1", "d2"])),
                    "advertisingId": "ad0",
                    "adTrackingEnabled": draw(st.booleans()),
                }
        out.append(
            ev(
                f"m{i:03d}",
                at=T0 + timedelta(minutes=draw(offsets)),
                type=kind,
                user_id=None if user is None else str(user),
                anonymous_id=anon,
                traits=traits,
                context=context,
            )
        )
    return out


@st.composite
def rules(draw):
    types = ["user_id", "email", "anonymous_id", "phone", "ios.id", "android.id", "ios.idfa"]
    chosen = draw(st.permutations(types))[: draw(st.integers(2, len(types)))]
    return parse_identity(
        {
            "identifiers": [
                {"type": t, "limit": draw(st.sampled_from([1, 2, 3, 10])), "period": draw(st.sampled_from(list(PERIODS)))}
                for t in chosen
            ],
            "blocked_values": draw(st.sampled_from([[], ["a5"]])),
            "blocked_patterns": draw(st.sampled_from([[], ["u[3]"]])),
        }
    )


def batches(evs: list[dict], data, *, max_cuts: int) -> list[list[dict]]:
    """``evs`` in a drawn arrival order, cut into up to ``max_cuts + 1`` batches (some may be empty)."""
    shuffled = data.draw(st.permutations(evs))
    bounds = [0, *sorted(data.draw(st.lists(st.integers(0, len(evs)), max_size=max_cuts))), len(evs)]
    return [shuffled[a:b] for a, b in zip(bounds, bounds[1:])]


@SETTINGS
@given(evs=events(), rule=rules())
def test_engine_equals_oracle(evs, rule):
    with Store.open(None) as s:
        load(s, evs)
        resolve(s, rule)
        assert_same(engine_result(s), oracle_resolve(evs, rule))


@SETTINGS
@given(evs=events(), rule=rules(), data=st.data())
def test_any_ingest_split_and_order_gives_the_from_scratch_result(evs, rule, data):
    shuffled = data.draw(st.permutations(evs))
    cut = data.draw(st.integers(0, len(evs)))
    with Store.open(None) as s:
        load(s, shuffled[:cut], ingest_id=1)
        resolve(s, rule)
        load(s, shuffled[cut:], ingest_id=2)  # late events included
        resolve(s, rule)
        assert_same(engine_result(s), oracle_resolve(evs, rule))


@SETTINGS
@given(evs=events(max_size=30), rule=rules(), data=st.data())
def test_batch_by_batch_resolution_equals_from_scratch_and_the_oracle(evs, rule, data):
    """Any split into batches, in any arrival order (late events), resolved batch by batch."""
    live: set[str] = set()
    with Store.open(None) as s:
        for k, batch in enumerate(batches(evs, data, max_cuts=4)):
            load(s, batch, ingest_id=k + 1)
            before = event_map(s)
            report = resolve(s, rule)
            assert report.mode == ("full" if k == 0 else "incremental") or report.up_to_date
            if k and report.run_id:
                assert_feed_is_the_diff(s, report.run_id, before, event_map(s))
            if k and report.continued_events:
                hypothesis.event("continued from the stored state")
            if k and report.absorbed_events:
                hypothesis.event("late events absorbed")
            if k and report.reresolved_events > report.continued_events:
                hypothesis.event("late: components re-resolved")
            changes = s.con.execute(
                "SELECT profile_id, kind FROM identity_changes WHERE run_id = ?", [report.run_id]
            ).fetchall() if report.run_id else []
            live |= {p for p, kind in changes if kind == "created"}
            live -= {p for p, kind in changes if kind == "removed"}
            assert all(kind != "created" or p not in {q for q, k2 in changes if k2 == "removed"}
                       for p, kind in changes)
        got = engine_result(s)
        assert live == set(got.profiles)
    with Store.open(None) as scratch:
        load(scratch, evs)
        resolve(scratch, rule)
        assert_same(got, engine_result(scratch))
    assert_same(got, oracle_resolve(evs, rule))


@SETTINGS
@given(evs=events(max_size=30), rule=rules(), data=st.data())
def test_batches_in_canonical_order_continue_from_the_stored_state(evs, rule, data):
    """Batches that only add later events never re-resolve a stored event (the continuation
    path runs for every new event), and give the from-scratch result."""
    ordered = sorted(evs, key=lambda e: (e["timestamp"], e["message_id"]))
    cuts = sorted(data.draw(st.lists(st.integers(1, len(evs)), min_size=1, max_size=3)))
    bounds = [0, *cuts, len(evs)]
    with Store.open(None) as s:
        for k in range(len(bounds) - 1):
            load(s, ordered[bounds[k] : bounds[k + 1]], ingest_id=k + 1)
            before = event_map(s)
            report = resolve(s, rule)
            if k and not report.up_to_date:
                assert report.mode == "incremental"
                assert_feed_is_the_diff(s, report.run_id, before, event_map(s))
                assert report.reresolved_events == report.continued_events <= report.new_events
                resolved = s.con.execute(
                    f"SELECT count(*) FROM event_profiles JOIN events USING (message_id) WHERE ingest_id = {k + 1}"
                ).fetchall()[0][0]
                assert report.continued_events >= resolved
        assert_same(engine_result(s), oracle_resolve(evs, rule))


@SETTINGS
@given(evs=events(max_size=25), rule=rules(), data=st.data())
def test_late_copies_of_known_identifiers_are_absorbed_exactly(evs, rule, data):
    """Late events carrying one identifier already seen (mostly absorbed: they change nothing
    but their own row) and some carrying more, after a first resolution: the oracle's result."""
    picks = data.draw(st.lists(st.sampled_from(evs), min_size=1, max_size=6))
    late = []
    for i, e in enumerate(picks):
        keep_user = data.draw(st.booleans()) and e["user_id"] is not None
        late.append(ev(
            f"late{i}", at=e["timestamp"] + timedelta(seconds=data.draw(st.integers(0, 90))),
            type=data.draw(st.sampled_from(["track", "identify"])),
            user_id=e["user_id"] if keep_user else None,
            anonymous_id=e["anonymous_id"] if not keep_user or data.draw(st.booleans()) else None,
            traits={"plan": data.draw(st.sampled_from(["a", "b", None]))},
        ))
    late = [e for e in late if e["user_id"] or e["anonymous_id"]]
    with Store.open(None) as s:
        load(s, evs, ingest_id=1)
        resolve(s, rule)
        load(s, late, ingest_id=2)
        before = event_map(s)
        report = resolve(s, rule)
        if report.run_id and report.mode == "incremental":
            assert_feed_is_the_diff(s, report.run_id, before, event_map(s))
        if report.absorbed_events:
            hypothesis.event("late events absorbed")
        if report.reresolved_events > report.continued_events:
            hypothesis.event("late: components re-resolved")
        assert_same(engine_result(s), oracle_resolve([*evs, *late], rule))


@st.composite
def graphs(draw):
    n_types = draw(st.integers(1, 3))
    n_ids = draw(st.integers(1, 12))
    n_ev = draw(st.integers(1, 30))
    ident_type = np.array([draw(st.integers(0, n_types - 1)) for _ in range(n_ids)], dtype=np.int64)
    rows_e, rows_i = [], []
    for e in range(n_ev):
        ids = sorted(set(draw(st.lists(st.integers(0, n_ids - 1), min_size=1, max_size=3))),
                     key=lambda i: (ident_type[i], i))
        rows_e += [e] * len(ids)
        rows_i += ids
    ts = np.cumsum([draw(st.integers(0, 3)) for _ in range(n_ev)]).astype(np.int64)
    limits = np.array([draw(st.sampled_from([1, 2, 3, 20])) for _ in range(n_types)], dtype=np.int64)
    periods = np.array([draw(st.sampled_from([-1, 2, 5])) for _ in range(n_types)], dtype=np.int64)
    # every identifier occurs; indexes follow priority order within an event (renumber by type)
    used = np.unique(rows_i)
    order = used[np.lexsort((used, ident_type[used]))]
    new_index = np.full(n_ids, -1, dtype=np.int64)
    new_index[order] = np.arange(len(order))
    return GraphInput(
        row_event=np.array(rows_e, dtype=np.int64),
        row_ident=new_index[np.array(rows_i, dtype=np.int64)],
        ident_type=ident_type[order],
        event_ts=ts,
        limits=limits,
        periods=periods,
    )


@settings(max_examples=150, deadline=None)
@given(data=graphs())
def test_bulk_resolution_equals_event_by_event_replay(data):
    bulk = resolve_graph(data)
    replay = resolve_graph(data, bulk=False)
    for name in ("event_profile", "ident_profile", "ident_gain", "violation_event", "violation_type",
                 "violation_ident"):
        assert np.array_equal(getattr(bulk, name), getattr(replay, name)), name
    merges = lambda r: sorted(zip(r.merge_event.tolist(), r.merge_from.tolist(), r.merge_into.tolist()))  # noqa: E731
    assert merges(bulk) == merges(replay)


def _prefix_state(data: GraphInput, k: int, *, bulk: bool = True):
    """Resolve the first ``k`` events from an empty state (profiles named by creating rank, as in
    a full run) and keep only what a continuation starts from: ``(prefix, creators, number of
    each creator, state, the rest of the events as a GraphInput)``."""
    rows = data.row_event < k
    empty = np.zeros(0, dtype=np.int64)
    prefix = continue_graph(
        GraphInput(row_event=data.row_event[rows], row_ident=data.row_ident[rows], ident_type=data.ident_type,
                   event_ts=data.event_ts[:k], limits=data.limits, periods=data.periods),
        GraphState(profiles=0, ident=empty, owner=empty, gain_ts=empty),
        bulk=bulk,
    )
    creators = sorted(set(prefix.event_profile[prefix.event_profile >= 0].tolist()))
    num = {c: i for i, c in enumerate(creators)}
    state = GraphState(
        profiles=len(creators),
        ident=prefix.ident,
        owner=np.array([num[p] for p in prefix.ident_profile.tolist()], dtype=np.int64),
        gain_ts=data.event_ts[prefix.ident_gain],
    )
    rest = ~rows
    tail = GraphInput(row_event=data.row_event[rest] - k, row_ident=data.row_ident[rest],
                      ident_type=data.ident_type, event_ts=data.event_ts[k:], limits=data.limits,
                      periods=data.periods)
    return prefix, creators, num, state, tail


@settings(max_examples=200, deadline=None)
@given(data=graphs(), cut=st.integers(0, 30))
def test_continuing_from_the_state_after_a_prefix_equals_resolving_everything(data, cut):
    """The continuation kernel: resolve the first events, keep only their profiles' identifiers
    and gain times, continue with the rest; same profiles, merges, violations, gains."""
    k = min(cut, len(data.event_ts))
    full = resolve_graph(data)
    prefix, creators, num, state, tail = _prefix_state(data, k)
    gain = dict(zip(prefix.ident.tolist(), prefix.ident_gain.tolist()))
    cont = continue_graph(tail, state)
    back = lambda p: p if p < 0 else (creators[p] if p < len(creators) else p - len(creators) + k)  # noqa: E731
    assert [back(p) for p in cont.event_profile.tolist()] == full.event_profile[k:].tolist()
    final = [back(p) for p in cont.profile_final.tolist()]
    assert [p if p < 0 else final[num[p]] for p in prefix.event_profile.tolist()] == full.event_profile[:k].tolist()
    for i, p in zip(state.ident.tolist(), state.owner.tolist()):
        assert (full.ident_profile[i], full.ident_gain[i]) == (final[p], gain[i])
    for i, p, g in zip(cont.ident.tolist(), cont.ident_profile.tolist(), cont.ident_gain.tolist()):
        assert (full.ident_profile[i], full.ident_gain[i]) == (back(p), g + k)
    merges = sorted(zip((cont.merge_event + k).tolist(), map(back, cont.merge_from.tolist()),
                        map(back, cont.merge_into.tolist())))
    after = full.merge_event >= k
    assert merges == sorted(zip(full.merge_event[after].tolist(), full.merge_from[after].tolist(),
                                full.merge_into[after].tolist()))
    late = full.violation_event >= k
    assert (cont.violation_event + k).tolist() == full.violation_event[late].tolist()
    assert cont.violation_type.tolist() == full.violation_type[late].tolist()
    assert cont.violation_ident.tolist() == full.violation_ident[late].tolist()


@settings(max_examples=200, deadline=None)
@given(data=graphs(), cut=st.integers(0, 30))
def test_continuation_bulk_path_equals_its_event_by_event_replay(data, cut):
    """Limit-safe components of a continuation resolve in bulk; the result equals replaying
    every new event from the state, array for array (joined profiles and merge order included)."""
    k = min(cut, len(data.event_ts))
    _, _, _, state, tail = _prefix_state(data, k, bulk=False)
    bulk, replay = continue_graph(tail, state), continue_graph(tail, state, bulk=False)
    if len(bulk.ident) and len(tail.event_ts):
        hypothesis.event("continuation: some components in bulk")
    for name in ("event_profile", "profile_final", "merge_from", "merge_into", "merge_event",
                 "violation_event", "violation_type", "violation_ident"):
        assert np.array_equal(getattr(bulk, name), getattr(replay, name)), name
    idents = lambda r: sorted(zip(r.ident.tolist(), r.ident_profile.tolist(), r.ident_gain.tolist()))  # noqa: E731
    assert idents(bulk) == idents(replay)
    # the joined profile may be named by a profile merged into it up to the event (the bulk
    # path's union-find label): both lead to the same profile through the merges up to it
    def root_at(r, p, e):
        for f, t, m in zip(r.merge_from.tolist(), r.merge_into.tolist(), r.merge_event.tolist()):
            if m <= e and f == p:
                p = t
        return p
    assert [root_at(bulk, p, e) for e, p in enumerate(bulk.event_joined.tolist())] == \
        [root_at(replay, p, e) for e, p in enumerate(replay.event_joined.tolist())]

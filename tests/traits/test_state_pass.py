"""The stored state's pass (``Plan.agg_sql(stats=True, state=True)``), split per event name and with
the rare diagnostics apart, gives the same rows as one GROUP BY of every partial aggregate (the
reference form: ``Plan.agg_select`` over the whole relation). The values and diagnostics it leads
to are checked against the oracle by ``test_properties``."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given

from engine.compute import _prepare
from engine.progress import Progress
from tests.traits.helpers import Ev, make_store
from tests.traits.test_properties import AS_OF, SETTINGS, definitions, events, shared_store
from traits.plan import Plan
from traits.registry import parse_traits


def state_rows(store, plan: Plan, sql: str) -> list[tuple]:
    """Rows by profile; lists sorted (their order is DuckDB's thread split, not part of the state)."""
    store.con.execute("SET threads = 1")
    try:
        cols = plan.state_columns()
        return store.con.execute(f"SELECT profile_id, {', '.join(cols)} FROM ({sql}) ORDER BY profile_id").fetchall()
    finally:
        store.con.execute("RESET threads")


def one_group_by(plan: Plan) -> str:
    return "WITH " + ",\n    ".join(plan.relation_ctes(stats=True)) + "\n" + plan.agg_select(stats=True, state=True)


def check(store, traits) -> None:
    _prepare(store, traits, Progress())
    plan = Plan.build(traits, as_of=AS_OF)
    got = state_rows(store, plan, plan.agg_sql(stats=True, state=True))
    want = state_rows(store, plan, one_group_by(plan))
    assert got == want


@SETTINGS
@given(evs=events(), defs=definitions())
def test_split_state_pass_equals_one_group_by(evs, defs):
    check(shared_store(evs), parse_traits(defs, path="h.toml"))


def test_profiles_missing_from_a_group_get_empty_partials():
    """P has only A events, Q only B: each lacks the other event's GROUP BY (counts 0, not NULL);
    Q's rejected value is in its diagnostics' relation, P has none there (0 rejected, no examples)."""
    t = AS_OF - timedelta(days=1)
    evs = [
        Ev(message_id="a1", profile_id="P", event="A", timestamp=t, properties={"v": "x"}),
        Ev(message_id="b1", profile_id="Q", event="B", timestamp=t, properties={"v": "not a number"}),
        Ev(message_id="b2", profile_id="Q", event="B", timestamp=t, properties={"v": 2}),
        Ev(message_id="b3", profile_id="Q", event="B", timestamp=t, properties={}),
    ]
    defs = [
        {"name": "na", "type": "event_counter", "event": "A"},
        {"name": "fa", "type": "first", "event": "A", "property": "v"},
        {"name": "sb", "type": "aggregation", "function": "sum", "event": "B", "property": "v"},
        {"name": "nb", "type": "event_counter", "event": "B"},
    ]
    traits = parse_traits(defs, path="t.toml")
    with make_store(evs, ["R"]) as store:
        check(store, traits)
        plan = Plan.build(traits, as_of=AS_OF)
        rows = store.con.execute(
            f"SELECT profile_id, t0_n, t1_counted, t2_counted, t2_missing, t2_rejected, t2_examples, t3_n "
            f"FROM ({plan.agg_sql(stats=True, state=True)}) ORDER BY profile_id"
        ).fetchall()
    examples = rows[1][6]
    assert [r[:6] + r[7:] for r in rows] == [("P", 1, 1, 0, 0, 0, 0), ("Q", 0, 0, 3, 1, 1, 3)]
    assert rows[0][6] is None and [e["m"] for e in examples] == ["b1"]


def test_traits_selecting_the_same_events_share_one_flag():
    """A counter and a ``last`` over one selection, and the counter repeated under another name,
    share one flag column; values (full, values-only, incremental after a move of as_of) equal
    the oracle's."""
    from engine.compute import compute_traits, trait_frame
    from tests.traits import oracle

    t = AS_OF - timedelta(days=1)
    evs = [
        Ev(message_id=f"m{i}", profile_id=p, event="A", timestamp=t - timedelta(days=d),
           properties={"v": v, "k": k})
        for i, (p, d, v, k) in enumerate([("P", 0, "x", "in"), ("P", 3, "y", "in"), ("P", 10, "z", "out"),
                                          ("Q", 1, "w", "in"), ("Q", 40, "u", "in")])
    ]
    inbound = [{"property": "k", "operator": "equals", "value": "in"}]
    defs = [
        {"name": "n", "type": "event_counter", "event": "A", "conditions": inbound, "window": {"within_days": 7}},
        {"name": "last_v", "type": "last", "event": "A", "property": "v", "conditions": inbound,
         "window": {"within_days": 7}},
        {"name": "n_again", "type": "event_counter", "event": "A", "conditions": inbound,
         "window": {"within_days": 7}},
        {"name": "n_all", "type": "event_counter", "event": "A"},
    ]
    traits = parse_traits(defs, path="t.toml")
    plan = Plan.build(traits, as_of=AS_OF)
    flags = plan.relation_ctes(stats=False)[-1]
    assert [plan.flag(i) for i in range(4)] == ['"f0"', '"f0"', '"f0"', '"f3"']
    assert '"f1"' not in flags and '"f2"' not in flags
    later = AS_OF + timedelta(days=5)
    with make_store(evs, ["R"]) as store:
        for at in (AS_OF, later):
            want = oracle.compute(traits, evs, ["P", "Q", "R"], at)
            compute_traits(store, traits, as_of=at)  # full, then incremental (as_of moved: delta_sql)
            stored = {r.pop("profile_id"): r for r in store.con.sql("SELECT * FROM trait_values").pl().to_dicts()}
            frame = {r.pop("profile_id"): r for r in trait_frame(store, traits, as_of=at).to_dicts()}
            assert stored == frame == want, at

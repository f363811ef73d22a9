"""Hypothesis: the engine equals the naive oracle on random events and definitions; explain agrees
with compute; prepare/merge/finalize equals one prepare for any split."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.compute import compute_traits, explain_trait, trait_stats
from tests.traits import oracle
from tests.traits.helpers import Ev, make_store
from traits.base import POLARS_TYPES
from traits.registry import parse_traits

AS_OF = datetime(2025, 3, 1, tzinfo=UTC)
US = timedelta(microseconds=1)
OFFSETS = [
    timedelta(0), US, -US, -timedelta(minutes=10), -timedelta(minutes=30), -timedelta(minutes=30) + US,
    -timedelta(hours=3), -timedelta(days=1), -timedelta(days=7), -timedelta(days=7) + US,
    -timedelta(days=30), -timedelta(days=40), -timedelta(days=90), timedelta(days=2),
]
EVENTS = ["A", "B", "Page Viewed"]
STRINGS = ["voice", "Voice", "chat", "é", "中", "", "12", " 12 ", "-1.5e3", "nan", "inf", "true", "FALSE",
           "2025-02-28T23:00:00Z", "2025-02-22", "2025-01-01T10:00:00+02:00", "x y", "zz"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 20), st.sampled_from([1.5, -2.25, 95.5, 0.1, 12.0, 1000.0]),
    st.sampled_from(STRINGS), st.text(alphabet="aBé中 1", max_size=3),
    st.sampled_from([1740787200000, 1740700800000]),
)
values = st.one_of(scalars, st.just({"a": 1}), st.just([1, 2]))


@st.composite
def properties(draw):
    props = {}
    for key in ("k", "v"):
        if draw(st.integers(0, 3)):
            props[key] = draw(values)
    if draw(st.booleans()):
        props["n"] = draw(st.one_of(st.just(5), st.dictionaries(st.just("x"), scalars, max_size=1)))
    return props


@st.composite
def events(draw):
    n = draw(st.integers(0, 24))
    ids = draw(st.lists(st.text(alphabet="abAé中0", min_size=1, max_size=3), min_size=n, max_size=n, unique=True))
    out = []
    for mid in ids:
        event = draw(st.sampled_from(["A", "A", "A", "B", "Page Viewed"]))
        typ = "page" if event == "Page Viewed" and draw(st.booleans()) else "track"
        base = AS_OF + draw(st.sampled_from(OFFSETS))
        jitter = draw(st.sampled_from([timedelta(0), timedelta(0), timedelta(minutes=-5), -US]))
        out.append(Ev(
            message_id=mid, profile_id=draw(st.sampled_from(["p1", "p1", "p2", None])), event=event,
            timestamp=base + jitter, properties=draw(properties()), type=typ,
            name=draw(st.sampled_from([None, "Home", "Cart"])) if typ == "page" else None,
        ))
    return out


PATHS = ["k", "v", "n.x", "page_name"]
CONDITIONS = st.one_of(
    st.builds(lambda p, op, v: {"property": p, "operator": op, "value": v}, st.sampled_from(PATHS),
              st.sampled_from(["equals", "not_equals"]), st.sampled_from(["voice", "chat", 12, 1.5, True, False, "12"])),
    st.builds(lambda p, op, v: {"property": p, "operator": op, "value": v}, st.sampled_from(PATHS),
              st.sampled_from(["equals_one_of", "not_equals_one_of"]),
              st.sampled_from([["voice", "chat"], [12, 1.5], ["é", 3]])),
    st.builds(lambda p, op, v: {"property": p, "operator": op, "value": v}, st.sampled_from(PATHS),
              st.sampled_from(["contains", "not_contains", "starts_with", "ends_with"]), st.sampled_from(["o", "1", "é", ""])),
    st.builds(lambda p, v: {"property": p, "operator": "contains_one_of", "value": v}, st.sampled_from(PATHS),
              st.sampled_from([["a", "中"], ["2"]])),
    st.builds(lambda p, op, v: {"property": p, "operator": op, "value": v}, st.sampled_from(PATHS),
              st.sampled_from(["greater_than", "greater_than_or_equal", "less_than", "less_than_or_equal"]),
              st.sampled_from([0, 1.5, 12, -1500])),
    st.builds(lambda p, v: {"property": p, "operator": "between", "value": v}, st.sampled_from(PATHS),
              st.sampled_from([[0, 12], [-2000, 1.5]])),
    st.builds(lambda p, op, v: {"property": p, "operator": op, "value": v}, st.sampled_from(PATHS),
              st.sampled_from(["before_date", "after_date"]), st.sampled_from(["2025-02-22", "2025-02-28T23:00:00Z"])),
    st.builds(lambda p, v: {"property": p, "operator": "within_last_days", "value": v}, st.sampled_from(PATHS),
              st.sampled_from([1, 7, 0.5])),
    st.builds(lambda p, op: {"property": p, "operator": op}, st.sampled_from(PATHS),
              st.sampled_from(["exists", "not_exists", "is_true", "is_false"])),
)
WINDOWS = st.sampled_from([
    None, {"all_time": True}, {"within_days": 1}, {"within_days": 7}, {"within_hours": 3},
    {"between_days_ago": [1, 30]}, {"between": ["2025-02-22", "2025-03-01"]},
    {"between": ["2025-01-20T00:00:00Z", "2025-02-28T23:50:00Z"]},
    {"session_minutes": 30}, {"session_minutes": 60 * 24 * 10},
])


@st.composite
def definition(draw, i):
    kind = draw(st.sampled_from(["event_counter", "aggregation", "most_frequent", "first", "last",
                                 "unique_list", "unique_list_count"]))
    d = {"name": f"t{i}", "type": kind, "event": draw(st.sampled_from(["A", "A", "B", "Page Viewed"]))}
    if kind != "event_counter":
        d["property"] = draw(st.sampled_from(PATHS))
        if kind == "aggregation":
            d["function"] = draw(st.sampled_from(["sum", "avg", "min", "max"]))
        else:
            d["value_type"] = draw(st.sampled_from(["text", "number", "boolean", "datetime"]))
    if kind == "most_frequent":
        d["min_frequency"] = draw(st.integers(1, 3))
    if kind == "unique_list":
        d["max_items"] = draw(st.sampled_from([1, 2, 10000]))
    conds = draw(st.lists(CONDITIONS, max_size=2))
    if conds:
        d["conditions"] = conds
        d["match"] = draw(st.sampled_from(["all", "any"]))
    window = draw(WINDOWS)
    if window is not None:
        d["window"] = window
    return d


@st.composite
def definitions(draw):
    n = draw(st.integers(1, 4))
    return [draw(definition(i)) for i in range(n)]


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b and type(a) is type(b)


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_STORE: list = []


def shared_store(evs):
    """One in-memory store for all examples, its events replaced each time (a new one costs 0.3 s)."""
    if not _STORE:
        _STORE.append(make_store([], ["p0"]))
    return make_store(evs, ["p0"], store=_STORE[0])


@SETTINGS
@given(evs=events(), defs=definitions(), pick=st.integers(0, 100))
def test_engine_equals_oracle_and_explain_agrees(evs, defs, pick):
    traits = parse_traits(defs, path="h.toml")
    store = shared_store(evs)
    compute_traits(store, traits, as_of=AS_OF)
    got = {r.pop("profile_id"): r for r in store.con.sql("SELECT * FROM trait_values ORDER BY profile_id").pl().to_dicts()}
    want = oracle.compute(traits, evs, ["p0"], AS_OF)
    assert list(got) == list(want)
    for p in want:
        for t in traits:
            assert same(got[p][t.name], want[p][t.name]), (p, t, got[p][t.name], want[p][t.name])
    stats = {r["trait"]: r for r in trait_stats(store).to_dicts()}
    for t in traits:
        counted, missing, rejected, examples = oracle.stats(t, evs, AS_OF)
        s = stats[t.name]
        assert (s["counted"], s["missing"], s["rejected"], s["rejected_examples"]) == (
            counted, missing, rejected, examples), t
    p = sorted(got)[pick % len(got)]
    t = traits[pick % len(traits)]
    ex = explain_trait(store, p, t, as_of=AS_OF)
    assert same(ex.value, got[p][t.name]), (p, t, ex.value, got[p][t.name])
    assert ex.counted == sum(1 for e in oracle.counting_events(t, [e for e in evs if e.profile_id == p], AS_OF))


# -- mergeable state laws ----------------------------------------------------------------------
STATE_VALUES = {
    "text": st.sampled_from(["a", "b", "B", "é", "中"]),
    "number": st.sampled_from([0.5, 1.0, -2.0, 3.25, 10.0]),  # exact in binary: sums do not round
    "boolean": st.booleans(),
    "datetime": st.sampled_from([datetime(2025, 1, d, tzinfo=UTC) for d in (1, 2, 3)]),
}


@st.composite
def state_case(draw):
    d = draw(definition(0))
    d.pop("conditions", None), d.pop("match", None), d.pop("window", None)
    (trait,) = parse_traits([d])
    vt = getattr(trait, "value_type", "text")
    n = draw(st.integers(0, 14))
    rows = []
    for i in range(n):
        rows.append({
            "profile_id": draw(st.sampled_from(["p1", "p2"])),
            "timestamp": datetime(2025, 2, 1, tzinfo=UTC) + timedelta(hours=draw(st.integers(0, 3))),
            "message_id": f"m{i:02d}",
            "value": draw(st.one_of(st.none(), STATE_VALUES[vt])),
        })
    schema = {"profile_id": pl.String, "timestamp": pl.Datetime("us", "UTC"), "message_id": pl.String,
              "value": POLARS_TYPES[vt]}
    frame = pl.DataFrame(rows, schema=schema)
    parts = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    return trait, frame, parts


def finalized(trait, state):
    return {p: v for p, v in trait.finalize(state).sort("profile_id").iter_rows()}


@settings(max_examples=60, deadline=None)
@given(case=state_case())
def test_prepare_merge_finalize_equals_one_prepare_for_any_split(case):
    trait, frame, parts = case
    pieces = [frame.filter(pl.Series(parts) == k) if frame.height else frame for k in range(3)]
    whole = finalized(trait, trait.prepare(frame))
    a, b, c = (trait.prepare(p) for p in pieces)
    assert finalized(trait, trait.merge(trait.merge(a, b), c)) == whole
    assert finalized(trait, trait.merge(a, trait.merge(b, c))) == whole  # associative
    assert finalized(trait, trait.merge(c, trait.merge(b, a))) == whole  # commutative

"""traits.md's worked example, value by value, through compute, frame, stats and explain."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.compute import compute_traits, explain_trait, trait_frame, trait_stats
from engine.errors import NotFoundError, StoreError
from engine.store import Store
from tests.traits.helpers import Ev, make_store, ts
from traits.registry import parse_traits

E = "Flex - Engagement Initiated"
AS_OF = datetime(2025, 3, 1, tzinfo=UTC)
INBOUND = [{"property": "direction", "operator": "equals", "value": "Inbound"}]
DEFS = [
    {"name": "total_inbounds", "type": "event_counter", "event": E, "conditions": INBOUND},
    {"name": "frequent_inbound_channel", "type": "most_frequent", "event": E,
     "property": "channelType", "min_frequency": 2, "conditions": INBOUND},
    {"name": "frequent_min3", "type": "most_frequent", "event": E,
     "property": "channelType", "min_frequency": 3, "conditions": INBOUND},
    {"name": "last_duration", "type": "last", "event": E, "property": "duration", "value_type": "number"},
    {"name": "total_outbounds", "type": "event_counter", "event": E,
     "conditions": [{"property": "direction", "operator": "equals", "value": "Outbound"}]},
    {"name": "inbounds_last_7_days", "type": "event_counter", "event": E, "conditions": INBOUND,
     "window": {"within_days": 7}},
    {"name": "channels", "type": "unique_list", "event": E, "property": "channelType"},
]
ABSENT = object()
ROWS = [
    ("m1", "2025-02-01T10:00Z", "Inbound", "voice", 120),
    ("m2", "2025-02-03T10:00Z", "Inbound", "chat", "95.5"),
    ("m3", "2025-02-05T10:00Z", "Outbound", "voice", ABSENT),
    ("m4", "2025-02-20T10:00Z", "Inbound", "chat", None),
    ("m5", "2025-02-25T10:00Z", "Inbound", "voice", "n/a"),
    ("m6", "2025-03-02T10:00Z", "Inbound", "sms", 10),
]


def example_events() -> list[Ev]:
    out = []
    for mid, t, direction, channel, duration in ROWS:
        props = {"direction": direction, "channelType": channel}
        if duration is not ABSENT:
            props["duration"] = duration
        out.append(Ev(message_id=mid, profile_id="P", event=E, timestamp=ts(t), properties=props))
    return out


@pytest.fixture
def store():
    s = make_store(example_events(), ["EMPTY"])
    yield s
    s.close()


@pytest.fixture
def traits():
    return parse_traits(DEFS, path="profiles.toml")


EXPECTED = {
    "total_inbounds": 4,
    "frequent_inbound_channel": "chat",
    "frequent_min3": None,
    "last_duration": 95.5,
    "total_outbounds": 1,
    "inbounds_last_7_days": 1,
    "channels": ["chat", "voice"],
}
EMPTY = {
    "total_inbounds": 0, "frequent_inbound_channel": None, "frequent_min3": None, "last_duration": None,
    "total_outbounds": 0, "inbounds_last_7_days": 0, "channels": [],
}


def test_worked_example_values_are_stored_for_every_profile(store, traits):
    report = compute_traits(store, traits, as_of=AS_OF)
    rows = store.con.sql("SELECT * FROM trait_values ORDER BY profile_id").pl().to_dicts()
    assert [r["profile_id"] for r in rows] == ["EMPTY", "P"]
    assert {k: v for k, v in rows[1].items() if k != "profile_id"} == EXPECTED
    assert {k: v for k, v in rows[0].items() if k != "profile_id"} == EMPTY
    assert report.profiles == 2
    assert report.with_value["total_inbounds"] == 1
    assert report.with_value["frequent_min3"] == 0


def test_output_column_types_follow_the_output_section(store, traits):
    compute_traits(store, traits, as_of=AS_OF)
    types = dict(store.con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'trait_values'"
    ).fetchall())
    assert types == {
        "profile_id": "VARCHAR", "total_inbounds": "BIGINT", "frequent_inbound_channel": "VARCHAR",
        "frequent_min3": "VARCHAR", "last_duration": "DOUBLE", "total_outbounds": "BIGINT",
        "inbounds_last_7_days": "BIGINT", "channels": "VARCHAR[]",
    }


def test_worked_example_diagnostics_5_counted_2_missing_1_rejected(store, traits):
    compute_traits(store, traits, as_of=AS_OF)
    stats = {r["trait"]: r for r in trait_stats(store).to_dicts()}
    last = stats["last_duration"]
    assert (last["counted"], last["missing"], last["rejected"]) == (5, 2, 1)
    assert last["rejected_examples"] == ["m5"]
    assert (stats["total_inbounds"]["counted"], stats["total_inbounds"]["missing"]) == (4, 0)
    assert [r["trait"] for r in trait_stats(store).to_dicts()] == [d["name"] for d in DEFS]


def test_runs_record_as_of_and_definitions_hash(store, traits):
    compute_traits(store, traits, as_of=AS_OF)
    compute_traits(store, traits, as_of=AS_OF)
    runs = store.con.sql("SELECT as_of, definitions_hash, traits FROM trait_runs").fetchall()
    assert len(runs) == 2 and runs[0][0] == AS_OF and runs[0][1] == runs[1][1]
    assert runs[0][2] == [d["name"] for d in DEFS]


def test_same_inputs_and_as_of_give_identical_values(store, traits):
    compute_traits(store, traits, as_of=AS_OF)
    first = store.con.sql("SELECT * FROM trait_values ORDER BY profile_id").pl()
    compute_traits(store, traits, as_of=AS_OF)
    assert store.con.sql("SELECT * FROM trait_values ORDER BY profile_id").pl().equals(first)


def test_trait_frame_equals_stored_values(store, traits):
    frame = trait_frame(store, traits, as_of=AS_OF)
    compute_traits(store, traits, as_of=AS_OF)
    assert frame.equals(store.con.sql("SELECT * FROM trait_values ORDER BY profile_id").pl())


def test_events_after_as_of_do_not_exist(store, traits):
    later = trait_frame(store, traits, as_of=datetime(2025, 3, 3, tzinfo=UTC)).filter(profile_id="P").to_dicts()[0]
    assert later["total_inbounds"] == 5
    assert later["last_duration"] == 10.0
    assert later["channels"] == ["chat", "sms", "voice"]


def test_explain_last_duration(store, traits):
    ex = explain_trait(store, "P", traits[3], as_of=AS_OF)
    assert ex.value == 95.5
    statuses = dict(zip(ex.events["message_id"], ex.events["status"], strict=True))
    assert statuses == {
        "m1": "counted", "m2": "counted", "m3": "missing", "m4": "missing", "m5": "rejected",
        "m6": "after as_of",
    }
    assert (ex.counted, ex.missing, ex.rejected) == (5, 2, 1)
    assert "m2" in " ".join(ex.combination)


def test_explain_names_the_false_condition_and_the_window(store, traits):
    ex = explain_trait(store, "P", traits[5], as_of=AS_OF)
    statuses = dict(zip(ex.events["message_id"], ex.events["status"], strict=True))
    assert statuses["m5"] == "counted"
    assert statuses["m1"] == "outside window"
    assert statuses["m6"] == "after as_of"
    ex = explain_trait(store, "P", traits[0], as_of=AS_OF)
    statuses = dict(zip(ex.events["message_id"], ex.events["status"], strict=True))
    assert statuses["m3"] == "condition false: direction equals 'Inbound'"
    assert ex.value == 4


def test_explain_most_frequent_shows_counts(store, traits):
    ex = explain_trait(store, "P", traits[1], as_of=AS_OF)
    assert ex.value == "chat"
    assert ex.combination[:2] == ("'chat': 2", "'voice': 2")


def test_explain_unknown_profile(store, traits):
    with pytest.raises(NotFoundError):
        explain_trait(store, "nobody", traits[0], as_of=AS_OF)


def test_explain_renders(store, traits):
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(explain_trait(store, "P", traits[3], as_of=AS_OF))
    console.print(compute_traits(store, traits, as_of=AS_OF))
    text = console.export_text()
    assert "rejected" in text and "value: 95.5" in text and "total_inbounds" in text


def test_no_profiles_yet_says_run_resolve():
    store = Store.open(None)
    store.con.execute(
        "INSERT INTO events (message_id, type, event, timestamp, raw, payload_hash, ingest_id) "
        "VALUES ('m', 'track', 'x', now(), '{}', 'h', 1)"
    )
    with pytest.raises(StoreError, match="profiles resolve"):
        compute_traits(store, parse_traits(DEFS, path="p.toml"), as_of=AS_OF)
    store.con.execute("DROP TABLE profiles")
    with pytest.raises(StoreError, match="profiles resolve"):
        compute_traits(store, parse_traits(DEFS, path="p.toml"), as_of=AS_OF)

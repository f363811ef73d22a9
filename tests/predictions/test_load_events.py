"""The engine's one event query: counting flags (event + the traits engine's conditions) and amounts."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from engine.predict import load_events
from predictions.definitions import parse_predictions
from tests.predictions.helpers import AS_OF, make_store

ROWS = [  # (event, properties, days before as_of)
    ("Flex - Engagement Initiated", {"direction": "Inbound", "duration": 120}, 3),
    ("Flex - Engagement Initiated", {"direction": "Outbound", "duration": "95.5"}, 2),
    ("Flex - Engagement Initiated", {"direction": None}, 1.5),
    ("Order Completed", {"revenue": "12.5"}, 1.2),
    ("Order Completed", {"revenue": "n/a"}, 1),
    ("Order Completed", {"revenue": 40}, -1),  # after as_of: not loaded
]


def test_flags_and_amounts_follow_traits_rules():
    events = pl.DataFrame({
        "pid": [0, 0, 1, 1, 1, 1],
        "ts": [AS_OF - timedelta(days=d) for _, _, d in ROWS],
        "event": [e for e, _, _ in ROWS],
    })
    store = make_store(events, properties=[p for _, p, _ in ROWS])
    preds = parse_predictions([
        {"name": "inbound", "type": "goal", "event": "Flex - Engagement Initiated", "horizon_days": 30,
         "conditions": [{"property": "direction", "operator": "equals", "value": "Inbound"}]},
        {"name": "long_or_out", "type": "goal", "event": "Flex - Engagement Initiated", "horizon_days": 30,
         "match": "any", "conditions": [{"property": "duration", "operator": "greater_than", "value": 100},
                                        {"property": "direction", "operator": "equals", "value": "Outbound"}]},
        {"name": "ltv", "type": "ltv", "event": "Order Completed", "property": "revenue", "horizon_days": 30},
    ], path=None)
    frame, names = load_events(store, preds, as_of=AS_OF)
    assert frame.height == 5 and sorted(names.values()) == ["Flex - Engagement Initiated", "Order Completed"]
    by_row = frame.sort("ts").to_dicts()  # distinct times: the order of ROWS
    assert [r["c0"] for r in by_row] == [True, False, False, False, False]
    assert [r["c1"] for r in by_row] == [True, True, False, False, False]
    assert [r["c2"] for r in by_row] == [False, False, False, True, True]
    assert sorted(r["a2"] for r in by_row if r["c2"] and r["a2"] is not None) == [12.5]  # "n/a" is no value
    assert [r["u2"] for r in by_row] == [False, False, False, False, True]  # ... and is counted as unreadable
    assert not any(r["u0"] or r["u1"] for r in by_row)  # no amount property: nothing to read
    store.close()

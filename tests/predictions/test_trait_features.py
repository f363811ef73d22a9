"""Numeric and boolean computed traits become point-in-time features (``trait_<name>``)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import polars as pl

from engine.predict import _trait_features, load_events
from predictions.definitions import parse_predictions
from tests.predictions.helpers import AS_OF, churn_world, make_store

EVENT = "Flex - Engagement Initiated"


def test_trait_features_are_numeric_or_boolean_and_as_of_each_cutoff():
    from traits.registry import parse_traits

    _, events = churn_world(60, seed=5)
    props = [{"direction": "Inbound" if i % 3 else "Outbound"} for i in range(events.height)]
    store = make_store(events, properties=props)
    traits = parse_traits([
        {"name": "inbounds", "type": "event_counter", "event": EVENT,
         "conditions": [{"property": "direction", "operator": "equals", "value": "Inbound"}]},
        {"name": "top_direction", "type": "most_frequent", "event": EVENT, "property": "direction"},
    ], path=None)
    preds = parse_predictions([{"name": "c", "type": "churn", "event": EVENT, "horizon_days": 30}], path=None)
    config = SimpleNamespace(predictions=preds, traits=traits)
    load_events(store, preds, as_of=AS_OF)
    cutoff = AS_OF - timedelta(days=30)
    frame = _trait_features(store, config, [cutoff, AS_OF])
    assert frame is not None and set(frame.columns) == {"pid", "cutoff", "trait_inbounds"}
    inbound = events.with_columns(pl.Series("inbound", [p["direction"] == "Inbound" for p in props]))
    for c in (cutoff, AS_OF):
        want = inbound.filter(pl.col("inbound") & (pl.col("ts") <= c)).height
        assert frame.filter(pl.col("cutoff") == c)["trait_inbounds"].sum() == want
    store.close()

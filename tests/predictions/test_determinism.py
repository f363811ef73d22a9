"""Principle 2: the same events and ``as_of`` give bit-identical features, labels, scores and reports,
whatever order the event rows arrive in (DuckDB's parallel join returns them in any order) and however
often the plan runs (Polars' streaming engine combines partial float sums in any order)."""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from engine.predict import run_predictions
from predictions.definitions import parse_predictions
from predictions.features import FeatureSpec, build_features
from predictions.labels import attach_labels, build_labels
from predictions.ltv import TASK as LTV
from predictions.pipeline import run_prediction, training_cutoffs
from tests.predictions.helpers import AS_OF, make_store, poisson_events, to_event_frame

PURCHASE = "Order Completed"
H = 60


def _purchases(n: int = 1500, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    events = poisson_events(rng.gamma(1.5, 0.05, n), start=AS_OF - timedelta(days=400), days=430, seed=seed,
                            event=PURCHASE)
    spend = rng.gamma(3.0, 20.0, n)[events["pid"].to_numpy()]
    return events.with_columns(pl.Series("revenue", rng.gamma(4.0, spend / 4.0) * 1.0000001))


def _shuffled(frame: pl.DataFrame, seed: int) -> pl.DataFrame:
    """The same rows in another order, split into uneven chunks."""
    perm = frame.sample(fraction=1.0, shuffle=True, seed=seed)
    cuts = [0, 7, perm.height // 3, perm.height // 2, perm.height]
    return pl.concat([perm.slice(a, b - a) for a, b in zip(cuts, cuts[1:])], rechunk=False)


def _train_and_score(events: pl.DataFrame):
    cutoffs = training_cutoffs(AS_OF, H, events["ts"].min())
    spec = FeatureSpec(vocabulary=((0, PURCHASE),), horizon_days=H, with_rfm=True)
    train = attach_labels(build_features(events, cutoffs=cutoffs, spec=spec),
                          build_labels(events, cutoffs=cutoffs, horizon_days=H))
    score = build_features(events, cutoffs=[AS_OF], spec=spec)
    return cutoffs, train, score


def test_features_labels_and_ltv_scores_do_not_depend_on_row_order():
    events = to_event_frame(_purchases(), counting_event=PURCHASE, amount="revenue")
    pred = parse_predictions([{"name": "ltv", "type": "ltv", "event": PURCHASE, "property": "revenue",
                               "horizon_days": H}], path=None)[0]
    runs = [_train_and_score(events)] + [_train_and_score(_shuffled(events, s)) for s in (1, 2)]
    for cutoffs, train, score in runs[1:]:
        assert_frame_equal(train, runs[0][1], check_exact=True)
        assert_frame_equal(score, runs[0][2], check_exact=True)
    outcomes = [run_prediction(pred, LTV, train=t, score=s, as_of=AS_OF, cutoffs=c) for c, t, s in runs]
    for o in outcomes[1:]:
        assert_frame_equal(o.scores, outcomes[0].scores, check_exact=True)
        assert o.holdout == outcomes[0].holdout and o.why == outcomes[0].why


def test_the_same_store_predicted_twice_gives_identical_scores_and_reports(tmp_path):
    events = _purchases(n=1200, seed=5).with_row_index("i")
    props = [{"revenue": round(float(r), 4)} for r in events["revenue"]]
    preds = parse_predictions([
        {"name": "ltv_60d", "type": "ltv", "event": PURCHASE, "property": "revenue", "horizon_days": H},
        {"name": "buy_30d", "type": "goal", "event": PURCHASE, "horizon_days": 30},
    ], path=None)
    results = []
    for k, frame in enumerate((events, _shuffled(events, 9))):
        # the second store holds the same events inserted in another order (other message ids)
        store = make_store(frame, properties=[props[i] for i in frame["i"]])
        reports = tmp_path / f"r{k}"
        run_predictions(store, SimpleNamespace(predictions=preds, traits=(), reports_dir=reports), as_of=AS_OF)
        scores = store.con.sql("SELECT prediction, profile_id, score, percentile, model FROM prediction_scores "
                               "ORDER BY prediction, profile_id").pl()
        runs = store.con.sql("SELECT * FROM prediction_runs ORDER BY prediction").fetchall()
        results.append((scores, runs, {p.name: (reports / p.name).with_suffix(".json").read_text() for p in preds},
                        {p.name: (reports / p.name).with_suffix(".html").read_text() for p in preds}))
        store.close()
    (s0, r0, j0, h0), (s1, r1, j1, h1) = results
    assert s0.height > 0
    assert_frame_equal(s0, s1, check_exact=True)
    assert [r[:6] for r in r0] == [r[:6] for r in r1]
    assert [json.loads(r[6]) for r in r0] == [json.loads(r[6]) for r in r1]
    assert j0 == j1 and h0 == h1

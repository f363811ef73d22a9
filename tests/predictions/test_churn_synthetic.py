"""A churn process with a known probability: the engine ranks close to the Bayes optimum."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from engine.errors import DataError
from predictions.definitions import parse_predictions
from predictions.features import FeatureSpec, build_features, choose_vocabulary
from predictions.labels import attach_labels, build_labels
from predictions.pipeline import run_prediction, training_cutoffs
from predictions.tasks import TASKS
from tests.predictions.helpers import AS_OF, churn_world, to_event_frame

EVENT = "Flex - Engagement Initiated"
CHURN = parse_predictions([{"name": "churn_30d", "type": "churn", "event": EVENT, "horizon_days": 30}], path=None)[0]


def frames(events: pl.DataFrame, pred):
    ev = to_event_frame(events, counting_event=EVENT)
    cutoffs = training_cutoffs(AS_OF, pred.horizon_days, ev["ts"].min())
    spec = FeatureSpec(vocabulary=choose_vocabulary(ev, {0: EVENT}, before=min(cutoffs)),
                       horizon_days=pred.horizon_days)
    train = attach_labels(build_features(ev, cutoffs=cutoffs, spec=spec),
                          build_labels(ev, cutoffs=cutoffs, horizon_days=pred.horizon_days))
    return ev, cutoffs, train, build_features(ev, cutoffs=[AS_OF], spec=spec)


@pytest.fixture(scope="module")
def churn_run():
    rates, events = churn_world(3000, seed=0)
    ev, cutoffs, train, score = frames(events, CHURN)
    outcome = run_prediction(CHURN, TASKS["churn"], train=train, score=score, as_of=AS_OF, cutoffs=cutoffs)
    return rates, cutoffs, train, outcome


def test_auc_is_near_the_bayes_optimum_and_far_above_random(churn_run):
    rates, cutoffs, train, outcome = churn_run
    holdout = train.filter((pl.col("cutoff") == cutoffs[0]) & (pl.col("target_count_30d") >= 1))
    churned = (holdout["label_count"] == 0).to_numpy()
    bayes = roc_auc_score(churned, np.exp(-rates[holdout["pid"].to_numpy()] * 30))  # the true P(churn)
    auc = outcome.holdout[outcome.model]["auc"]
    assert auc > 0.75 and bayes > 0.75
    assert auc >= bayes - 0.04, (auc, bayes)
    assert auc > outcome.holdout["baseline"]["auc"] + 0.05  # better than recency alone
    assert outcome.grade in ("Good", "Excellent")
    assert outcome.model in outcome.why and "baseline" in outcome.why


def test_scores_are_probabilities_with_percentiles_for_eligible_profiles_only(churn_run):
    rates, _, _, outcome = churn_run
    s = outcome.scores
    assert s.height == outcome.counts["eligible"] > 0
    assert s["score"].is_between(0, 1).all() and s["percentile"].is_between(0, 100).all()
    # the scores rank churners: low-rate profiles churn more
    corr = np.corrcoef(s["score"].to_numpy(), -rates[s["pid"].to_numpy()])[0, 1]
    assert corr > 0.5
    assert outcome.top_features and outcome.counts["trained_on"] > outcome.counts["holdout_rows"]


def test_history_shorter_than_two_horizons_is_a_clear_data_error():
    with pytest.raises(DataError, match=r"history too short: .* need at least 60 days \(2 x horizon 30\)"):
        training_cutoffs(AS_OF, 30, AS_OF - np.timedelta64(45, "D").item())


def test_too_few_positives_is_a_clear_data_error():
    rates, events = churn_world(150, seed=3)
    _, cutoffs, train, score = frames(events, CHURN)
    with pytest.raises(DataError, match=r"too little data in the training windows .*need at least 100 of each"):
        run_prediction(CHURN, TASKS["churn"], train=train, score=score, as_of=AS_OF, cutoffs=cutoffs)


def test_same_inputs_give_the_same_scores_and_report_bytes(tmp_path):
    from predictions.report import write_report

    goal = parse_predictions([{"name": "g", "type": "goal", "event": EVENT, "horizon_days": 30}], path=None)[0]
    _, events = churn_world(800, seed=11)
    _, cutoffs, train, score = frames(events, goal)
    one, two = (run_prediction(goal, TASKS["goal"], train=train, score=score, as_of=AS_OF, cutoffs=cutoffs)
                for _ in range(2))
    assert one.scores.equals(two.scores) and one.why == two.why
    a = write_report(one, tmp_path / "a")
    b = write_report(two, tmp_path / "b")
    assert a[0].read_bytes() == b[0].read_bytes() and a[1].read_bytes() == b[1].read_bytes()

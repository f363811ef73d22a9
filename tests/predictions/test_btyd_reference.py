"""The BTYD and recency references compete: on a BG/NBD world the chosen churn model is never
worse than BG/NBD on the holdout, and the selection rule keeps LTV no worse than BG/NBD x Gamma-Gamma."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from predictions.btyd import BetaGeoModel
from predictions.definitions import parse_predictions
from predictions.pipeline import run_prediction, select_model
from predictions.report import write_report
from predictions.tasks import TASKS
from tests.predictions.helpers import AS_OF
from tests.predictions.simulate import simulate_bgnbd
from tests.predictions.test_churn_synthetic import frames

EVENT = "Flex - Engagement Initiated"  # the counting event of `frames`
TRUTH = {"r": 0.5, "alpha": 10.0, "a": 0.8, "b": 4.0}


def bgnbd_events(n: int, *, days: int = 365, seed: int = 0) -> pl.DataFrame:
    """BG/NBD customers born uniformly over ``days`` before AS_OF: first purchase at birth, Poisson
    repeat purchases at rate lambda ~ Gamma(r, alpha), dropout with p ~ Beta(a, b) after each repeat."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(TRUTH["r"], 1.0 / TRUTH["alpha"], n)
    p = rng.beta(TRUTH["a"], TRUTH["b"], n)
    birth = rng.uniform(0, days - 1, n)
    pids, times = [np.arange(n)], [birth]
    t, alive = birth.copy(), np.ones(n, dtype=bool)
    while alive.any():
        t = t + rng.exponential(1.0 / lam)
        alive &= t < days
        pids.append(np.flatnonzero(alive))
        times.append(t[alive])
        alive &= rng.random(n) >= p
    pid, at = np.concatenate(pids), np.concatenate(times)
    ts = np.datetime64((AS_OF - timedelta(days=days)).replace(tzinfo=None), "us") + (at * 86_400e6).astype(
        "timedelta64[us]")
    return pl.DataFrame({"pid": pid, "ts": ts, "event": [EVENT] * len(pid)}).with_columns(
        pl.col("ts").dt.replace_time_zone("UTC")).sort("pid", "ts")


def test_probability_of_no_purchase_matches_a_simulation():
    """The exact P(0 in (T, T + t]) of the true parameters agrees with simulated futures by decile."""
    sim = simulate_bgnbd(20_000, **TRUTH, T_min=60, T_max=365, future=30, seed=5)
    model = BetaGeoModel()
    model.r_, model.alpha_, model.a_, model.b_ = TRUTH["r"], TRUTH["alpha"], TRUTH["a"], TRUTH["b"]
    p0 = model.probability_no_purchases(np.column_stack([sim["x"], sim["tx"], sim["T"]]), 30.0)
    quiet = sim["future"] == 0
    assert p0.mean() == pytest.approx(quiet.mean(), abs=0.01)
    edges = np.quantile(p0, np.linspace(0, 1, 6))
    for lo, hi in zip(edges[:-1], edges[1:]):
        band = (p0 >= lo) & (p0 <= hi)
        assert p0[band].mean() == pytest.approx(quiet[band].mean(), abs=0.03)
    # t = 0: nothing can happen
    np.testing.assert_allclose(model.probability_no_purchases(np.column_stack([sim["x"], sim["tx"], sim["T"]]), 0.0), 1.0)


@pytest.fixture(scope="module")
def btyd_churn():
    pred = parse_predictions([{"name": "churn_30d", "type": "churn", "event": EVENT, "horizon_days": 30}],
                             path=None)[0]
    _, cutoffs, train, score = frames(bgnbd_events(4000, seed=1), pred)
    return run_prediction(pred, TASKS["churn"], train=train, score=score, as_of=AS_OF, cutoffs=cutoffs)


def test_chosen_churn_model_is_not_worse_than_bgnbd_or_recency_on_a_bgnbd_world(btyd_churn):
    out = btyd_churn
    auc = {k: v["auc"] for k, v in out.holdout.items()}
    assert {"btyd", "recency", "gbt", "baseline"} <= auc.keys(), out.failures
    assert auc["btyd"] > 0.7  # the true model ranks well
    assert auc[out.model] >= auc["btyd"] - 0.005
    assert auc[out.model] >= auc["recency"] - 0.005
    assert out.model in out.why and "naive baseline" in out.why


def test_report_lists_the_candidates_rule_and_baseline(btyd_churn, tmp_path):
    html_path, json_path = write_report(btyd_churn, tmp_path)
    data = json.loads(json_path.read_text())
    assert {"btyd", "recency"} <= set(data["candidates"])
    assert "baseline" in data["holdout"] and data["holdout"]["baseline"]["auc"] is not None
    assert "highest holdout auc" in data["selection_rule"]
    assert "btyd" in html_path.read_text()


def test_recency_candidate_ranks_exactly_as_recency(btyd_churn):
    from predictions.models import RecencyClassifier

    rng = np.random.default_rng(0)
    x = rng.exponential(20, 500)
    y = (rng.random(500) < 1 - np.exp(-x / 30)).astype(int)
    p = RecencyClassifier().fit(x[:, None], y).predict_proba(x[:, None])[:, 1]
    assert np.array_equal(np.argsort(p, kind="stable"), np.argsort(x, kind="stable"))


def m(metric: float, rmse: float = 0.0) -> dict[str, float]:
    return {"spearman": metric, "rmse": rmse, "auc": metric}


def test_selection_rule_ltv_challenger_must_not_err_more_than_the_reference():
    guards = (("rmse", "min"),)
    # gbt ranks better but errs more: btyd stays
    chosen, notes = select_model({"btyd": m(0.5, 10.0), "gbt": m(0.6, 12.0)}, ["btyd", "gbt"], "spearman",
                                 reference="btyd", guards=guards)
    assert chosen == "btyd" and "gbt" in notes[0] and "rmse" in notes[0]
    # no worse on both: gbt wins
    assert select_model({"btyd": m(0.5, 10.0), "gbt": m(0.6, 9.0)}, ["btyd", "gbt"], "spearman",
                        reference="btyd", guards=guards) == ("gbt", [])
    # ranks worse: btyd, whatever the RMSE
    assert select_model({"btyd": m(0.5, 10.0), "gbt": m(0.4, 1.0)}, ["btyd", "gbt"], "spearman",
                        reference="btyd", guards=guards)[0] == "btyd"
    # the reference failed to fit: plain ranking
    assert select_model({"gbt": m(0.4)}, ["gbt"], "spearman", reference="btyd", guards=guards) == ("gbt", [])
    # NaN metric loses; ties go alphabetically
    assert select_model({"a": m(float("nan")), "b": m(0.1)}, ["a", "b"], "auc")[0] == "b"
    assert select_model({"b": m(0.7), "a": m(0.7)}, ["a", "b"], "auc")[0] == "a"


def test_ltv_and_classification_tasks_include_the_references():
    assert TASKS["ltv"].reference == "btyd" and ("rmse", "min") in TASKS["ltv"].guards
    for kind in ("churn", "goal"):
        names = {c.name for c in TASKS[kind].candidates}
        assert {"btyd", "recency", "gbt", "survival"} <= names

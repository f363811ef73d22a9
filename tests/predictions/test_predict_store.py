"""``run_predictions`` end to end on a small store: scores, percentiles, reports, skips."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from rich.console import Console

from engine.predict import PredictReport, run_predictions
from predictions.definitions import parse_predictions
from tests.predictions.helpers import AS_OF, make_store, poisson_events

PURCHASE = "Order Completed"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    rng = np.random.default_rng(7)
    n = 1800
    rates = rng.gamma(1.2, 0.025, n)
    events = poisson_events(rates, start=AS_OF - timedelta(days=400), days=400 + 30, seed=8, event=PURCHASE)
    spend = rng.gamma(4.0, 12.0, n)  # each profile's typical order value
    amounts = rng.gamma(4.0, spend[events["pid"].to_numpy()] / 4.0)
    channel = np.where(rng.random(events.height) < 0.5, "Inbound", "Outbound")
    props = [{"revenue": round(float(a), 2), "direction": c} for a, c in zip(amounts, channel)]
    props[0]["revenue"] = "n/a"  # an unreadable amount is no value, not a crash
    store = make_store(events, properties=props)
    preds = parse_predictions([
        {"name": "ltv_60d", "type": "ltv", "event": PURCHASE, "property": "revenue", "horizon_days": 60},
        {"name": "inbound_30d", "type": "goal", "event": PURCHASE, "horizon_days": 30,
         "conditions": [{"property": "direction", "operator": "equals", "value": "Inbound"}]},
        {"name": "churn_365d", "type": "churn", "event": PURCHASE, "horizon_days": 365},
    ], path=None)
    reports = tmp_path_factory.mktemp("reports")
    config = SimpleNamespace(predictions=preds, traits=(), reports_dir=reports)
    report = run_predictions(store, config, as_of=AS_OF)
    yield store, report, reports, events
    store.close()


def test_every_profile_gets_a_row_and_ineligible_ones_are_null(run):
    store, report, _, events = run
    rows = store.con.sql(
        "SELECT prediction, count(*) n, count(score) scored, min(percentile) lo, max(percentile) hi "
        "FROM prediction_scores GROUP BY prediction ORDER BY prediction"
    ).fetchall()
    # the profiles as of as_of: one whose events all come later does not exist then
    n_profiles = events.filter(pl.col("ts") <= AS_OF)["pid"].n_unique()
    by_name = {r[0]: r[1:] for r in rows}
    assert set(by_name) == {"ltv_60d", "inbound_30d"}  # churn_365d was skipped: no stale scores
    for n, scored, lo, hi in by_name.values():
        assert n == n_profiles and 0 < scored <= n and lo == 0 and hi < 100
    # ltv eligibility: at least two purchases up to as_of
    counts = events.filter(pl.col("ts") <= AS_OF).group_by("pid").len()
    assert by_name["ltv_60d"][1] == counts.filter(pl.col("len") >= 2).height
    assert store.con.sql("SELECT count(*) FROM prediction_scores WHERE score IS NULL AND percentile IS NOT NULL"
                         ).fetchall()[0][0] == 0


def test_ltv_beats_the_naive_baseline_and_reports_why(run):
    _, report, _, _ = run
    ltv = next(p for p in report.predictions if p.name == "ltv_60d")
    assert ltv.status == "scored" and ltv.model in ("btyd", "gbt") and ltv.metric == "spearman"
    assert ltv.value > 0.3 and ltv.value >= ltv.baseline_value - 0.02
    assert "holdout spearman" in ltv.reason


def test_too_little_history_is_skipped_with_what_is_missing(run):
    store, report, reports, _ = run
    churn = next(p for p in report.predictions if p.name == "churn_365d")
    assert churn.status == "skipped" and "history too short" in churn.reason and "730 days" in churn.reason
    saved = json.loads((reports / "churn_365d.json").read_text())
    assert saved["status"] == "skipped" and saved["reason"] == churn.reason
    status, reason = store.con.sql(
        "SELECT status, reason FROM prediction_runs WHERE prediction = 'churn_365d'").fetchall()[0]
    assert status == "skipped" and reason == churn.reason


def test_reports_hold_the_figures_and_the_summary_renders(run):
    _, report, reports, _ = run
    data = json.loads((reports / "inbound_30d.json").read_text())
    assert data["model"] in data["holdout"] and "baseline" in data["holdout"]
    for key in ("auc", "log_loss", "brier", "lift_top_10", "lift_top_20", "calibration", "lift_chart"):
        assert key in data["holdout"][data["model"]]
    assert set(data["counts"]) >= {"eligible", "positives", "trained_on", "scored"}
    html = Path(data and reports / "inbound_30d.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "Grade" in html
    ltv = json.loads((reports / "ltv_60d.json").read_text())
    for key in ("mae", "rmse", "spearman", "top_decile_value_share", "deciles"):
        assert key in ltv["holdout"][ltv["model"]]
    assert isinstance(report, PredictReport) and report.scored == 2 and report.skipped == 1
    console = Console(record=True, width=140)
    console.print(report)
    text = console.export_text()
    assert "ltv_60d" in text and "skipped: history too short" in text


def test_the_training_sample_is_decided_by_each_profile_id():
    """Above the cap, membership hashes the profile id: more profiles (e.g. created after a cutoff)
    only lower the share sampled, they never swap which of the others are in."""
    from engine.predict import _sampled_profiles
    from engine.store import Store

    def sampled(n: int, cap: int) -> set[str]:
        with Store.open(None) as store:
            store.con.execute(
                "CREATE TEMP TABLE _pred_profiles AS SELECT 'prf_' || md5(i::VARCHAR) AS profile_id, "
                f"(row_number() OVER (ORDER BY profile_id) - 1)::BIGINT AS pid FROM range({n}) t(i)"
            )
            pids = _sampled_profiles(store, cap)
            if pids is None:
                return {"all"}
            return set(store.con.sql("SELECT profile_id FROM _pred_profiles WHERE list_contains(?, pid)",
                                     params=[pids.to_list()]).pl()["profile_id"])

    assert sampled(500, 1000) == {"all"}
    fewer, more = sampled(4000, 1000), sampled(5000, 1000)  # the 4000 ids are the first of the 5000
    assert 850 < len(fewer) < 1150 and 850 < len(more) < 1150
    first = {f"prf_{hashlib.md5(str(i).encode()).hexdigest()}" for i in range(4000)}
    assert fewer <= first and more & first <= fewer
    assert len(fewer - more) < 300  # only those above the lower threshold leave

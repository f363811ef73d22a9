"""Unreadable LTV amounts are counted and reported (principle 4), and skips say what is missing."""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from rich.console import Console

from engine.cli import main
from engine.predict import PredictReport, run_predictions
from predictions.definitions import parse_predictions
from predictions.features import FeatureSpec, build_features
from predictions.labels import attach_labels, build_labels
from predictions.ltv import TASK as LTV
from predictions.pipeline import run_prediction, training_cutoffs
from tests.predictions.helpers import AS_OF, make_store, poisson_events, to_event_frame

PURCHASE = "Order Completed"
LTV_DEF = {"name": "ltv_60d", "type": "ltv", "event": PURCHASE, "property": "revenue", "horizon_days": 60}


def _render(report: PredictReport) -> str:
    console = Console(record=True, width=200)
    console.print(report)
    return console.export_text()


def test_an_unreadable_amount_counts_as_a_purchase_and_makes_its_label_unknown():
    c = AS_OF
    rows = pl.DataFrame({
        "pid": [1, 1, 1, 1, 2, 2],
        "ts": [c - timedelta(hours=10), c - timedelta(hours=5), c + timedelta(hours=1), c + timedelta(hours=2),
               c - timedelta(hours=3), c + timedelta(hours=4)],
        "ev": [0] * 6,
        "counting": [True] * 6,
        "amount": [10.0, None, 5.0, None, 7.0, None],
        "unreadable": [False, True, False, True, False, False],  # pid 2's last amount is absent, not unreadable
    }, schema_overrides={"ts": pl.Datetime("us", "UTC"), "ev": pl.Int32})
    spec = FeatureSpec(vocabulary=((0, PURCHASE),), horizon_days=30, with_rfm=True)
    feats = build_features(rows, cutoffs=[c], spec=spec).filter(pl.col("pid") == 1).row(0, named=True)
    assert feats["target_count_all"] == 2 and feats["rfm_frequency"] == 1  # both purchases count
    assert feats["rfm_monetary_count"] == 1 and feats["rfm_monetary_sum"] == 10.0  # the unknown amount does not
    labels = attach_labels(build_features(rows, cutoffs=[c], spec=spec),
                           build_labels(rows, cutoffs=[c], horizon_days=30))
    assert labels.select("pid", "label_count", "label_value", "label_unreadable").rows() == [(1, 2, 5.0, 1), (2, 1, 0.0, 0)]
    assert labels.select(LTV.label(None))["label"].to_list() == [None, 0.0]  # unknown, not 5.0


def test_the_ltv_holdout_and_fits_skip_unknown_labels_and_count_them():
    rng = np.random.default_rng(11)
    events = poisson_events(rng.gamma(1.5, 0.05, 1500), start=AS_OF - timedelta(days=400), days=400, seed=12,
                            event=PURCHASE)
    bad = rng.random(events.height) < 0.03
    events = events.with_columns(pl.Series("revenue", np.where(bad, np.nan, rng.gamma(4.0, 10.0, events.height)))
                                 .fill_nan(None))
    frame = to_event_frame(events, counting_event=PURCHASE, amount="revenue").with_columns(
        pl.Series("unreadable", bad))
    cutoffs = training_cutoffs(AS_OF, 60, frame["ts"].min())
    spec = FeatureSpec(vocabulary=((0, PURCHASE),), horizon_days=60, with_rfm=True)
    train = attach_labels(build_features(frame, cutoffs=cutoffs, spec=spec),
                          build_labels(frame, cutoffs=cutoffs, horizon_days=60))
    pred = parse_predictions([LTV_DEF], path=None)[0]
    outcome = run_prediction(pred, LTV, train=train, score=build_features(frame, cutoffs=[AS_OF], spec=spec),
                             as_of=AS_OF, cutoffs=cutoffs)
    unknown = train.filter(LTV.eligible(pred) & (pl.col("label_unreadable") > 0)).height
    assert unknown > 0 and outcome.counts["label_unknown"] == unknown
    assert outcome.counts["trained_on"] == train.filter(LTV.eligible(pred)).height - unknown
    assert outcome.scores["score"].is_finite().all()


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    rng = np.random.default_rng(21)
    events = poisson_events(rng.gamma(1.2, 0.03, 1500), start=AS_OF - timedelta(days=300), days=300, seed=22,
                            event=PURCHASE)
    props = [{"revenue": round(float(a), 2)} for a in rng.gamma(4.0, 12.0, events.height)]
    for i in range(0, events.height, 50):
        props[i] = {"revenue": "n/a"}
    for i in range(25, events.height, 100):
        props[i] = {}  # no amount at all: missing, not unreadable
    store = make_store(events, properties=props)
    reports = tmp_path_factory.mktemp("reports")
    preds = parse_predictions([LTV_DEF, {**LTV_DEF, "name": "calls", "event": "Call Placed"}], path=None)
    report = run_predictions(store, SimpleNamespace(predictions=preds, traits=(), reports_dir=reports), as_of=AS_OF)
    yield store, report, reports, events, props
    store.close()


def test_unreadable_amounts_are_counted_in_the_summary_report_and_runs(shop):
    store, report, reports, events, props = shop
    kept = (events["ts"] <= AS_OF).to_list()
    unreadable = sum(k and p.get("revenue") == "n/a" for k, p in zip(kept, props))
    missing = sum(k and "revenue" not in p for k, p in zip(kept, props))
    ltv = next(p for p in report.predictions if p.name == "ltv_60d")
    assert ltv.status == "scored" and (ltv.amounts_unreadable, ltv.amounts_missing) == (unreadable, missing)
    data = json.loads((reports / "ltv_60d.json").read_text())
    assert data["counts"]["amounts_unreadable"] == unreadable and data["counts"]["amounts_missing"] == missing
    assert data["counts"]["label_unknown"] > 0
    assert "amounts_unreadable" in (reports / "ltv_60d.html").read_text()
    metrics = json.loads(store.con.sql("SELECT metrics FROM prediction_runs WHERE prediction = 'ltv_60d'"
                                       ).fetchall()[0][0])
    assert metrics["counts"]["amounts_unreadable"] == unreadable
    assert f"{unreadable:,} purchases up to as_of have an unreadable amount" in _render(report)


def test_no_counting_event_at_all_is_skipped_naming_the_event(shop):
    _, report, reports, _, _ = shop
    calls = next(p for p in report.predictions if p.name == "calls")
    assert calls.status == "skipped"
    assert calls.reason.startswith("no 'Call Placed' events up to as_of 2025-01-01 00:00:00 UTC")
    assert "history too short" not in calls.reason
    assert json.loads((reports / "calls.json").read_text())["reason"] == calls.reason


def test_no_predictions_defined_prints_one_line_and_exits_0(tmp_path, capsys):
    config = tmp_path / "profiles.toml"
    config.write_text('[project]\nname = "p"\nstore = "s.duckdb"\n')
    report = run_predictions(make_store(pl.DataFrame({"pid": [0], "ts": [AS_OF], "event": [PURCHASE]})),
                             SimpleNamespace(predictions=(), traits=(), reports_dir=tmp_path, path=config), as_of=AS_OF)
    assert _render(report).strip() == f"no predictions are defined in {config} (add a [[predictions]] table: docs/predictions.md)"
    assert main(["--config", str(config), "predict", "--as-of", "2025-01-01"]) == 0
    out = capsys.readouterr().out
    assert "no predictions are defined in" in out and "┏" not in out

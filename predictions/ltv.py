"""Predicted lifetime value: the expected total of ``property`` over ``(as_of, as_of + H]``.

Eligible: profiles with at least two purchases up to ``as_of`` (Unify's rule). Candidates: the
BG/NBD + Gamma-Gamma model (fitted on every profile with a purchase, since the dropout process is
learned from one-time buyers too) and boosted regression trees on every feature.

A purchase whose amount is present but unreadable (``"n/a"``) counts as a purchase (frequency,
recency, eligibility); its amount is unknown, so it is left out of the monetary features, and a
training row with one in its label window has an unknown label (``null``): the supervised fits and
the holdout skip that row and the report counts it (``label_unknown``).
"""

from __future__ import annotations

import polars as pl

from predictions.btyd import BTYDRegressor
from predictions.classify import all_features
from predictions.models import SpendRateBaseline, gbt_regressor
from predictions.pipeline import Candidate, Task

TASK = Task(
    type="ltv",
    kind="regression",
    positive="profiles with purchase value in the window",
    negative="profiles without",
    eligible=lambda pred: pl.col("target_count_all") >= 2,
    # A purchase in the window whose amount cannot be read makes the total unknown, not smaller.
    label=lambda pred: pl.when(pl.col("label_unreadable") == 0).then(pl.col("label_value").cast(pl.Float64))
    .alias("label"),
    candidates=(
        Candidate(
            name="btyd",
            title="BG/NBD purchases x Gamma-Gamma spend (Fader, Hardie & Lee), maximum likelihood",
            inputs=lambda columns, pred: list(BTYDRegressor.INPUTS),
            build=lambda pred, y: BTYDRegressor(horizon_days=pred.horizon_days),
            target="none",
            score=lambda m, X: m.predict(X),
            fit_rows=lambda pred: pl.col("target_count_all") >= 1,
            unsupervised=True,
        ),
        Candidate(
            name="gbt",
            title="gradient-boosted regression trees (HistGradientBoostingRegressor) on every feature",
            inputs=all_features,
            build=lambda pred, y: gbt_regressor(y),
            score=lambda m, X: m.predict(X),
        ),
    ),
    baseline=Candidate(
        name="baseline",
        title="naive: historical spend per day (over at least one horizon) x H",
        inputs=lambda columns, pred: list(SpendRateBaseline.INPUTS),
        build=lambda pred, y: SpendRateBaseline(horizon_days=pred.horizon_days),
        target="none",
        score=lambda m, X: m.predict(X),
    ),
    ineligible="fewer than two counting events up to as_of",
    with_rfm=True,
    reference="btyd",
    guards=(("rmse", "min"),),
)

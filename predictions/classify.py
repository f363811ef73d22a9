"""The candidates shared by the two classification predictions (churn and goals)."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from predictions.definitions import Prediction
from predictions.btyd import BetaGeoClassifier
from predictions.models import RecencyBaseline, RecencyClassifier, gbt_classifier
from predictions.pipeline import Candidate
from predictions.survival import SURVIVAL_BASE_INPUTS, SurvivalClassifier


def all_features(columns: Sequence[str], pred: Prediction) -> list[str]:
    return list(columns)


def survival_features(columns: Sequence[str], pred: Prediction) -> list[str]:
    wanted = (*SURVIVAL_BASE_INPUTS, f"target_count_{pred.horizon_days}d")
    return [c for c in dict.fromkeys(wanted) if c in columns]


def gbt(*, positive: str) -> Candidate:
    return Candidate(
        name="gbt",
        title=f"gradient-boosted trees (HistGradientBoostingClassifier) on every feature; P({positive})",
        inputs=all_features,
        build=lambda pred, y: gbt_classifier(),
        score=lambda m, X: m.predict_proba(X)[:, 1],
    )


def survival(*, event_is_positive: bool) -> Candidate:
    """Cox model of the time to the next counting event; churn is the survival probability."""
    column = 1 if event_is_positive else 0
    return Candidate(
        name="survival",
        title="Cox proportional hazards (lifelines): time to the next counting event, censored at H",
        inputs=survival_features,
        build=lambda pred, y: SurvivalClassifier(horizon_days=pred.horizon_days),
        target="survival",
        score=lambda m, X: m.predict_proba(X)[:, column],
    )


def recency_baseline() -> Candidate:
    return Candidate(
        name="baseline",
        title="naive: the training rate per bucket of days since the last counting event",
        inputs=lambda columns, pred: ["target_recency_days"],
        build=lambda pred, y: RecencyBaseline(),
        score=lambda m, X: m.predict_proba(X)[:, 1],
    )


def btyd(*, event_is_positive: bool) -> Candidate:
    """BG/NBD's exact P(no counting event in the window), fitted on the counting events' history."""
    column = 1 if event_is_positive else 0
    return Candidate(
        name="btyd",
        title="BG/NBD (Fader, Hardie & Lee 2005) fitted on the counting events' frequency, recency and age; "
              "exact P(no counting event in H)",
        inputs=lambda columns, pred: list(BetaGeoClassifier.INPUTS),
        build=lambda pred, y: BetaGeoClassifier(horizon_days=pred.horizon_days),
        target="none",
        score=lambda m, X: m.predict_proba(X)[:, column],
        fit_rows=lambda pred: pl.col("target_count_all") >= 1,
        unsupervised=True,
    )


def recency() -> Candidate:
    """The recency reference itself, ranked exactly as days since the last counting event."""
    return Candidate(
        name="recency",
        title="logistic regression on log days since the last counting event (ranks exactly as recency)",
        inputs=lambda columns, pred: ["target_recency_days"],
        build=lambda pred, y: RecencyClassifier(),
        score=lambda m, X: m.predict_proba(X)[:, 1],
    )

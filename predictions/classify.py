"""The candidates shared by the two classification predictions (churn and goals)."""

from __future__ import annotations

from collections.abc import Sequence

from predictions.definitions import Prediction
from predictions.models import RecencyBaseline, gbt_classifier
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

"""Train, compare and score one prediction from point-in-time frames (pure: frames in, outcome out).

The time-based holdout of ``predictions.md``: candidates are trained at the cutoffs
``as_of - 2H, as_of - 3H, ...`` and evaluated at ``as_of - H`` (labels in ``(as_of - H, as_of]``);
the candidate with the better holdout metric (AUC for churn/goal, Spearman rank correlation for
LTV) is refitted at ``as_of - H, as_of - 2H, ...`` and scores the eligible profiles at ``as_of``.
The naive baseline is evaluated the same way and reported beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from engine.errors import DataError
from predictions.definitions import Prediction
from predictions.evaluate import (
    AUC_GRADES,
    SPEARMAN_GRADES,
    classification_metrics,
    grade,
    percentiles,
    permutation_importance,
    regression_metrics,
)
from predictions.features import feature_columns

MIN_CLASS_ROWS = 100
#: A model fits on at most this many (profile, cutoff) rows, a seeded sample.
MAX_FIT_ROWS = 100_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A model the engine may score with.

    Parameters
    ----------
    name
        Short id shown in reports (``gbt``, ``survival``, ``btyd``, ``baseline``).
    title
        What it is, for the report.
    inputs
        Which feature columns it reads, given all of them.
    build
        A fresh estimator for a prediction and its training target.
    target
        What ``fit`` receives as ``y``: ``label``, ``survival`` (days to next event, observed) or ``none``.
    score
        The prediction's score from a fitted estimator and ``X``.
    fit_rows
        Which training rows it fits on (default: the eligible ones).
    """

    name: str
    title: str
    inputs: Callable[[Sequence[str], Prediction], list[str]]
    build: Callable[[Prediction, np.ndarray], Any]
    target: str = "label"
    score: Callable[[Any, np.ndarray], np.ndarray] = lambda m, X: m.predict_proba(X)[:, 1]
    fit_rows: Callable[[Prediction], pl.Expr] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """How one prediction type is trained: eligibility, label, candidates, baseline, metric."""

    type: str
    kind: str  # classification | regression
    positive: str  # what a positive row is, for messages
    negative: str
    eligible: Callable[[Prediction], pl.Expr]
    label: Callable[[Prediction], pl.Expr]
    candidates: tuple[Candidate, ...]
    baseline: Candidate
    with_rfm: bool = False

    @property
    def metric_name(self) -> str:
        return "auc" if self.kind == "classification" else "spearman"

    def metrics(self, y: np.ndarray, score: np.ndarray) -> dict[str, Any]:
        return classification_metrics(y, score) if self.kind == "classification" else regression_metrics(y, score)

    def primary(self, y: np.ndarray, score: np.ndarray) -> float:
        m = self.metrics(y, score)[self.metric_name]
        return float(m) if np.isfinite(m) else -1.0

    def grade(self, value: float) -> str:
        return grade(value, AUC_GRADES if self.kind == "classification" else SPEARMAN_GRADES)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What training one prediction produced: holdout figures and the scores at ``as_of``."""

    prediction: Prediction
    model: str
    model_title: str
    why: str
    metric_name: str
    grade: str
    counts: dict[str, int]
    holdout: dict[str, dict[str, Any]]  # candidate name (and "baseline") -> metrics
    failures: dict[str, str]
    top_features: list[dict[str, Any]]
    cutoffs: dict[str, Any]
    scores: pl.DataFrame = field(repr=False)  # pid, score, percentile (eligible profiles at as_of)


def training_cutoffs(as_of: datetime, horizon_days: int, first_event: datetime | None, *,
                     max_cutoffs: int = 3) -> list[datetime]:
    """``as_of - kH`` for k = 1 .. max_cutoffs + 1 while the cutoff is after the first event.

    Raises
    ------
    DataError
        When the history is shorter than 2H (the holdout needs a training cutoff at ``as_of - 2H``).
    """
    h = timedelta(days=horizon_days)
    if first_event is None:
        raise DataError("no events up to as_of: nothing to learn from")
    span = as_of - first_event
    if span < 2 * h:
        raise DataError(
            f"history too short: events start {first_event:%Y-%m-%d}, {span.days} days before as_of; "
            f"need at least {2 * horizon_days} days (2 x horizon {horizon_days}) for a training "
            f"window and a holdout window"
        )
    cutoffs = [as_of - k * h for k in range(1, max_cutoffs + 2)]
    return [c for i, c in enumerate(cutoffs) if i < 2 or c > first_event]


def informative_columns(frame: pl.DataFrame, columns: Sequence[str]) -> list[str]:
    """Columns with at least two distinct non-null values: a constant says nothing (and trips
    scikit-learn's binning)."""
    if frame.is_empty():
        return list(columns)
    counts = frame.select(pl.col(list(columns)).drop_nulls().n_unique()).row(0)
    return [c for c, n in zip(columns, counts) if n > 1]


def _matrix(frame: pl.DataFrame, columns: Sequence[str]) -> np.ndarray:
    if not columns:
        return np.zeros((frame.height, 0))
    return frame.select(pl.col(list(columns)).cast(pl.Float64)).to_numpy()


def _target(candidate: Candidate, task: Task, frame: pl.DataFrame, pred: Prediction) -> np.ndarray:
    y = frame.select(task.label(pred)).to_series().to_numpy()
    if candidate.target == "survival":
        return np.column_stack([
            frame["label_next_days"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
            (frame["label_count"] > 0).cast(pl.Float64).to_numpy(),
        ])
    return y


def _fit(candidate: Candidate, task: Task, pred: Prediction, train: pl.DataFrame,
         columns: list[str]) -> Any:
    rows = train if candidate.fit_rows is None else train.filter(candidate.fit_rows(pred))
    if candidate.fit_rows is None:
        rows = rows.filter(task.eligible(pred))
    if rows.height > MAX_FIT_ROWS:
        rows = rows.sample(MAX_FIT_ROWS, seed=0).sort("cutoff", "pid")
    y = _target(candidate, task, rows, pred)
    return candidate.build(pred, y).fit(_matrix(rows, columns), y)


def _check_classes(task: Task, pred: Prediction, frame: pl.DataFrame, where: str) -> dict[str, int]:
    y = frame.select(task.label(pred)).to_series().to_numpy()
    pos = int((y > 0).sum())
    neg = int(len(y) - pos)
    missing = []
    if pos < MIN_CLASS_ROWS:
        missing.append(f"{pos} {task.positive}")
    if neg < MIN_CLASS_ROWS:
        missing.append(f"{neg} {task.negative}")
    if missing:
        raise DataError(
            f"too little data {where}: {' and '.join(missing)} among {len(y)} eligible profiles; "
            f"need at least {MIN_CLASS_ROWS} of each"
        )
    return {"rows": len(y), "positives": pos, "negatives": neg}


def run_prediction(pred: Prediction, task: Task, *, train: pl.DataFrame, score: pl.DataFrame,
                   as_of: datetime, cutoffs: Sequence[datetime], random_state: int = 0) -> Outcome:
    """Holdout-compare the task's candidates, refit the best, score the eligible rows of ``score``.

    Parameters
    ----------
    train
        Features with labels attached (:func:`predictions.labels.attach_labels`) at ``cutoffs``.
    score
        Features at ``as_of`` (no labels).
    cutoffs
        From :func:`training_cutoffs`: ``as_of - H`` first, then earlier ones.
    """
    evaluation_cutoff, fit_cutoffs = cutoffs[0], list(cutoffs[1:])
    holdout_train = train.filter(pl.col("cutoff").is_in(fit_cutoffs))
    columns = informative_columns(holdout_train.filter(task.eligible(pred)), feature_columns(train))
    holdout_eval = train.filter((pl.col("cutoff") == evaluation_cutoff) & task.eligible(pred))
    final_train = train  # every cutoff: the labels of as_of - H end at as_of, still no leak

    def span(c: datetime) -> str:
        return f"({c:%Y-%m-%d}, {c + timedelta(days=pred.horizon_days):%Y-%m-%d}]"

    train_counts = _check_classes(task, pred, holdout_train.filter(task.eligible(pred)),
                                  f"in the training windows ending {', '.join(span(c) for c in fit_cutoffs)}")
    eval_counts = _check_classes(task, pred, holdout_eval, f"in the holdout window {span(evaluation_cutoff)}")

    y_eval = holdout_eval.select(task.label(pred)).to_series().to_numpy()
    holdout: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    fitted: dict[str, tuple[Any, list[str]]] = {}
    for cand in (*task.candidates, task.baseline):
        cols = cand.inputs(columns, pred)
        try:
            model = _fit(cand, task, pred, holdout_train, cols)
            s = cand.score(model, _matrix(holdout_eval, cols))
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            failures[cand.name] = f"{type(exc).__name__}: {exc}"
            continue
        holdout[cand.name] = task.metrics(y_eval, s)
        fitted[cand.name] = (model, cols)
    ranked = sorted(
        (c for c in task.candidates if c.name in holdout),
        key=lambda c: (-_finite(holdout[c.name][task.metric_name]), c.name),
    )
    if not ranked:
        raise DataError("every candidate model failed to fit: " + "; ".join(f"{k}: {v}" for k, v in failures.items()))
    best = ranked[0]
    metric = task.metric_name
    value = holdout[best.name][metric]
    parts = [f"{c.name} {holdout[c.name][metric]:.3f}" for c in ranked[1:]]
    if task.baseline.name in holdout:
        parts.append(f"naive baseline {holdout[task.baseline.name][metric]:.3f}")
    why = (f"{best.name} had the best holdout {metric.upper() if metric == 'auc' else metric} "
           f"at {evaluation_cutoff:%Y-%m-%d}: {value:.3f}" + (f" (vs {', '.join(parts)})" if parts else ""))

    model, cols = fitted[best.name]
    top = permutation_importance(
        lambda X: best.score(model, X), _matrix(holdout_eval, cols), y_eval,
        lambda y, s: task.primary(y, s), cols, random_state=random_state,
    )
    final_model = _fit(best, task, pred, final_train, cols)
    eligible = score.filter(task.eligible(pred))
    values = best.score(final_model, _matrix(eligible, cols)) if eligible.height else np.array([])
    scores = pl.DataFrame({
        "pid": eligible["pid"],
        "score": pl.Series(values, dtype=pl.Float64),
        "percentile": pl.Series(percentiles(values), dtype=pl.Float64),
    })
    counts = {
        "eligible": int(eligible.height),
        "scored": int(np.isfinite(values).sum()),
        "trained_on": int(final_train.filter(task.eligible(pred)).height),
        "positives": int(train_counts["positives"]),
        "negatives": int(train_counts["negatives"]),
        "holdout_rows": int(eval_counts["rows"]),
        "holdout_positives": int(eval_counts["positives"]),
    }
    return Outcome(
        prediction=pred, model=best.name, model_title=best.title, why=why, metric_name=metric,
        grade=task.grade(value), counts=counts, holdout=holdout, failures=failures, top_features=top,
        cutoffs={"as_of": as_of.isoformat(), "holdout_evaluation": evaluation_cutoff.isoformat(),
                 "holdout_training": [c.isoformat() for c in fit_cutoffs],
                 "final_training": [c.isoformat() for c in cutoffs]},
        scores=scores,
    )


def _finite(v: float) -> float:
    return float(v) if v is not None and np.isfinite(v) else -np.inf

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
    unsupervised
        It learns from the history alone (no labels, e.g. BG/NBD), so it fits on the features of
        the very cutoff it scores: the holdout cutoff when evaluated, ``as_of`` when scoring, as
        the textbook calibration-period fit does. No label is read, so nothing leaks.
    """

    name: str
    title: str
    inputs: Callable[[Sequence[str], Prediction], list[str]]
    build: Callable[[Prediction, np.ndarray], Any]
    target: str = "label"
    score: Callable[[Any, np.ndarray], np.ndarray] = lambda m, X: m.predict_proba(X)[:, 1]
    fit_rows: Callable[[Prediction], pl.Expr] | None = None
    unsupervised: bool = False


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
    #: Why a profile gets no score (``profiles show``); ``{h}`` is the horizon in days.
    ineligible: str
    with_rfm: bool = False
    #: The reference candidate a challenger must not lose to on any ``guards`` metric.
    reference: str | None = None
    #: ``(metric, "min" | "max")``: secondary metrics a challenger must be no worse on than the reference.
    guards: tuple[tuple[str, str], ...] = ()

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
    candidates: list[str]  # every candidate that competed (failed ones included)
    selection_rule: str
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


def _target(candidate: Candidate, task: Task, frame: pl.DataFrame, pred: Prediction) -> np.ndarray | None:
    if candidate.target == "none":
        return None
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
        Rows whose task label is ``null`` (unknown, e.g. an LTV window holding an unreadable
        amount) are left out of the supervised fits and the holdout and counted (``label_unknown``).
    score
        Features at ``as_of`` (no labels).
    cutoffs
        From :func:`training_cutoffs`: ``as_of - H`` first, then earlier ones.
    """
    evaluation_cutoff, fit_cutoffs = cutoffs[0], list(cutoffs[1:])
    history = train  # the unsupervised candidates read features only: every row
    train = train.filter(task.label(pred).is_not_null())  # an unknown label trains and scores nothing
    label_unknown = history.filter(task.eligible(pred)).height - train.filter(task.eligible(pred)).height
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
            fit_on = history.filter(pl.col("cutoff") == evaluation_cutoff) if cand.unsupervised else holdout_train
            model = _fit(cand, task, pred, fit_on, cols)
            s = cand.score(model, _matrix(holdout_eval, cols))
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            failures[cand.name] = f"{type(exc).__name__}: {exc}"
            continue
        holdout[cand.name] = task.metrics(y_eval, s)
        fitted[cand.name] = (model, cols)
    names = [c.name for c in task.candidates if c.name in holdout]
    if not names:
        raise DataError("every candidate model failed to fit: " + "; ".join(f"{k}: {v}" for k, v in failures.items()))
    metric = task.metric_name
    chosen, notes = select_model(holdout, names, metric, reference=task.reference, guards=task.guards)
    best = next(c for c in task.candidates if c.name == chosen)
    value = holdout[best.name][metric]
    parts = [f"{n} {holdout[n][metric]:.3f}" for n in _ranked(holdout, names, metric) if n != chosen]
    if task.baseline.name in holdout:
        parts.append(f"naive baseline {holdout[task.baseline.name][metric]:.3f}")
    label = metric.upper() if metric == "auc" else metric
    lead = "had the best" if not notes else "was chosen with the best admissible"
    why = (f"{best.name} {lead} holdout {label} at {evaluation_cutoff:%Y-%m-%d}: {value:.3f}"
           + (f" (vs {', '.join(parts)})" if parts else "") + "".join(f"; {n}" for n in notes))

    model, cols = fitted[best.name]
    top = permutation_importance(
        lambda X: best.score(model, X), _matrix(holdout_eval, cols), y_eval,
        lambda y, s: task.primary(y, s), cols, random_state=random_state,
    )
    final_model = _fit(best, task, pred, score if best.unsupervised else final_train, cols)
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
        "label_unknown": int(label_unknown),
    }
    return Outcome(
        prediction=pred, model=best.name, model_title=best.title, why=why, metric_name=metric,
        grade=task.grade(value), counts=counts, holdout=holdout, failures=failures, top_features=top,
        candidates=[c.name for c in task.candidates],
        selection_rule=selection_rule(task),
        cutoffs={"as_of": as_of.isoformat(), "holdout_evaluation": evaluation_cutoff.isoformat(),
                 "holdout_training": [c.isoformat() for c in fit_cutoffs],
                 "final_training": [c.isoformat() for c in cutoffs]},
        scores=scores,
    )


def _finite(v: float) -> float:
    return float(v) if v is not None and np.isfinite(v) else -np.inf


def _ranked(holdout: dict[str, dict[str, Any]], names: Sequence[str], metric: str) -> list[str]:
    """Best primary metric first; ties go to the alphabetically first name."""
    return sorted(names, key=lambda n: (-_finite(holdout[n][metric]), n))


def _no_worse(a: float, b: float, direction: str) -> bool:
    a, b = _finite(a if direction == "max" else -a), _finite(b if direction == "max" else -b)
    return a >= b


def select_model(holdout: dict[str, dict[str, Any]], names: Sequence[str], metric: str, *,
                 reference: str | None = None, guards: Sequence[tuple[str, str]] = ()) -> tuple[str, list[str]]:
    """The chosen candidate among ``names`` and notes on challengers the rule set aside.

    The highest holdout ``metric`` wins (ties: alphabetical). With a ``reference`` that fitted, a
    challenger must also be no worse than it on every ``guards`` metric (e.g. LTV: a model that
    ranks better but errs more than BG/NBD x Gamma-Gamma does not replace it), so the choice is
    never worse than the reference on any of these metrics.
    """
    ranked = _ranked(holdout, names, metric)
    if reference is None or reference not in holdout or reference not in names:
        return ranked[0], []
    ref = holdout[reference]
    notes = []
    for name in ranked:
        if name == reference:
            return name, notes
        worse = [(g, d) for g, d in guards if not _no_worse(holdout[name][g], ref[g], d)]
        if not worse and _no_worse(holdout[name][metric], ref[metric], "max"):
            return name, notes
        notes.append(f"{name} ({metric} {holdout[name][metric]:.3f}) set aside: " + ", ".join(
            f"{g} {holdout[name][g]:.3f} worse than {reference}'s {ref[g]:.3f}" for g, _ in worse))
    return reference, notes


def selection_rule(task: Task) -> str:
    """The selection rule in words, for the report."""
    rule = f"highest holdout {task.metric_name} among the candidates (ties: alphabetical)"
    if task.reference and task.guards:
        rule += (f"; a challenger of {task.reference} must also be no worse on "
                 + ", ".join(f"{g} ({'lower' if d == 'min' else 'higher'} is better)" for g, d in task.guards))
    return rule

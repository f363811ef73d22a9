"""Holdout metrics, grades, percentiles and feature importance (pure numpy; no I/O).

Grades (documented in ``docs/predictions.md``) come from the holdout AUC for churn and goals and
from the Spearman rank correlation for LTV:

============  ===========  ==================
grade         AUC          Spearman
============  ===========  ==================
Poor          < 0.60       < 0.20
Fair          0.60-0.70    0.20-0.40
Good          0.70-0.80    0.40-0.60
Excellent     >= 0.80      >= 0.60
============  ===========  ==================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

AUC_GRADES: tuple[tuple[float, str], ...] = ((0.8, "Excellent"), (0.7, "Good"), (0.6, "Fair"), (-np.inf, "Poor"))
SPEARMAN_GRADES: tuple[tuple[float, str], ...] = ((0.6, "Excellent"), (0.4, "Good"), (0.2, "Fair"), (-np.inf, "Poor"))


def grade(value: float, thresholds: Sequence[tuple[float, str]]) -> str:
    """The first grade whose lower bound ``value`` reaches (NaN is Poor)."""
    if value is None or not np.isfinite(value):
        return "Poor"
    return next(name for bound, name in thresholds if value >= bound)


def percentiles(scores: np.ndarray) -> np.ndarray:
    """Percent of the scored profiles with a strictly lower score, in [0, 100).

    Unify's convention: a profile at percentile 80 is more likely than 80% of the scored
    profiles, so ``percentile >= 80`` selects the top 20%. Tied scores share the lower value
    (the same percentile for the same score); NaN scores (unscored) stay NaN and do not count.

    Examples
    --------
    >>> percentiles(np.array([0.1, 0.5, 0.5, 0.9])).tolist()
    [0.0, 25.0, 25.0, 75.0]
    """
    s = np.asarray(scores, dtype=float)
    out = np.full(s.shape, np.nan)
    ok = ~np.isnan(s)
    if not ok.any():
        return out
    ranked = np.sort(s[ok])
    out[ok] = 100.0 * np.searchsorted(ranked, s[ok], side="left") / ok.sum()
    return out


def _order(score: np.ndarray) -> np.ndarray:
    """Descending by score; ties keep the input order (rows are sorted by profile)."""
    return np.argsort(-score, kind="stable")


def lift_at(y: np.ndarray, score: np.ndarray, fraction: float) -> float:
    """Positive rate among the top ``fraction`` by score, divided by the overall rate."""
    base = y.mean()
    if base == 0 or len(y) == 0:
        return float("nan")
    k = max(1, int(round(fraction * len(y))))
    return float(y[_order(score)[:k]].mean() / base)


def _deciles(score: np.ndarray) -> np.ndarray:
    """Decile of each row by descending score: 0 is the top 10%."""
    rank = np.empty(len(score), dtype=np.int64)
    rank[_order(score)] = np.arange(len(score))
    return (rank * 10) // max(len(score), 1)


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """AUC, log loss, Brier, lifts, calibration curve (10 score deciles) and lift chart."""
    y = np.asarray(y).astype(int)
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    two = len(np.unique(y)) == 2
    dec = _deciles(p)
    base = y.mean() if len(y) else float("nan")
    calibration = [
        {"decile": int(d), "mean_predicted": float(p[dec == d].mean()), "observed_rate": float(y[dec == d].mean()),
         "n": int((dec == d).sum())}
        for d in range(10) if (dec == d).any()
    ]
    lift_chart = [
        {"decile": int(d), "rate": float(y[dec == d].mean()),
         "lift": float(y[dec == d].mean() / base) if base else float("nan"),
         "cumulative_share_of_positives": float(y[dec <= d].sum() / max(y.sum(), 1))}
        for d in range(10) if (dec == d).any()
    ]
    return {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "positive_rate": float(base),
        "auc": float(roc_auc_score(y, p)) if two else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])) if len(y) else float("nan"),
        "brier": float(brier_score_loss(y, p)) if len(y) else float("nan"),
        "lift_top_10": lift_at(y, p, 0.1),
        "lift_top_20": lift_at(y, p, 0.2),
        "calibration": calibration,
        "lift_chart": lift_chart,
    }


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """MAE, RMSE, Spearman, top-decile value share and predicted-vs-actual by predicted decile."""
    y = np.asarray(y, dtype=float)
    pred = np.asarray(pred, dtype=float)
    dec = _deciles(pred)
    total = y.sum()
    rho = spearmanr(pred, y).statistic if len(y) > 2 and np.ptp(y) > 0 and np.ptp(pred) > 0 else float("nan")
    return {
        "n": int(len(y)),
        "positives": int((y > 0).sum()),
        "mean_actual": float(y.mean()) if len(y) else float("nan"),
        "mae": float(np.mean(np.abs(pred - y))) if len(y) else float("nan"),
        "rmse": float(np.sqrt(np.mean((pred - y) ** 2))) if len(y) else float("nan"),
        "spearman": float(rho),
        "top_decile_value_share": float(y[dec == 0].sum() / total) if total else float("nan"),
        "deciles": [
            {"decile": int(d), "mean_predicted": float(pred[dec == d].mean()),
             "mean_actual": float(y[dec == d].mean()), "n": int((dec == d).sum())}
            for d in range(10) if (dec == d).any()
        ],
    }


def permutation_importance(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray, y: np.ndarray,
                           metric: Callable[[np.ndarray, np.ndarray], float], names: Sequence[str], *,
                           n_repeats: int = 1, max_rows: int = 2_000, random_state: int = 0,
                           top: int = 10) -> list[dict[str, float | str]]:
    """Drop in ``metric`` when one feature's column is shuffled (mean over repeats), top first.

    Model-agnostic, so every candidate (trees, Cox, BG/NBD) reports its features the same way.
    """
    rng = np.random.default_rng(random_state)
    X = np.asarray(X, dtype=float)
    y = np.asarray(y)
    if len(X) > max_rows:
        idx = np.sort(rng.choice(len(X), max_rows, replace=False))
        X, y = X[idx], y[idx]
    base = metric(y, predict(X))
    out = []
    for j, name in enumerate(names):
        drops = []
        for _ in range(n_repeats):
            Xp = X.copy()
            Xp[:, j] = X[rng.permutation(len(X)), j]
            drops.append(base - metric(y, predict(Xp)))
        out.append({"feature": name, "importance": float(np.mean(drops))})
    out.sort(key=lambda d: (-d["importance"], d["feature"]))
    return out[:top]

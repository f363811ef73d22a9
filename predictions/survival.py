"""Survival candidate for churn and goals: time to the next counting event, censored at the horizon.

A Cox proportional-hazards model (lifelines) on a compact set of activity features; the
probability of an event within H is ``1 - S(H | x)`` from the fitted survival function. Unlike a
classifier it uses *when* the next event happened, not just whether it did.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter
from sklearn.base import BaseEstimator, ClassifierMixin

from predictions.models import check_fitted, sample_rows

#: Features the survival model reads (a subset: Cox fits cost O(rows x features^2) per step).
SURVIVAL_BASE_INPUTS: tuple[str, ...] = (
    "target_count_7d", "target_count_30d", "target_count_90d", "target_count_all",
    "target_recency_days", "target_tenure_days", "target_gap_mean_days",
    "events_count_30d", "events_count_all", "recency_days", "tenure_days",
)


class SurvivalClassifier(ClassifierMixin, BaseEstimator):
    """P(a counting event within ``horizon_days``) from a Cox model of the time to it.

    ``fit(X, y)``: ``y`` has two columns, the days from the cutoff to the next counting event and
    whether it was observed within the horizon (1) or censored at the horizon (0); a 1-D binary
    ``y`` is read as "observed at the horizon" (no timing information).
    Inputs are ``log1p``-transformed (they are counts and durations) and standardised; a missing
    value (e.g. no counting event yet for a recency) takes the largest training value.

    Parameters
    ----------
    horizon_days
        The window H.
    penalizer
        Ridge penalty of the Cox fit (keeps it stable with collinear counts).
    max_rows
        Fit on at most this many rows (a seeded sample).
    random_state
        The sample's seed.
    """

    _EVENT: ClassVar[str] = "_observed"
    _DURATION: ClassVar[str] = "_duration"

    def __init__(self, *, horizon_days: int = 30, penalizer: float = 0.05, max_rows: int = 20_000,
                 random_state: int = 0) -> None:
        self.horizon_days = horizon_days
        self.penalizer = penalizer
        self.max_rows = max_rows
        self.random_state = random_state

    def _design(self, X: np.ndarray) -> pd.DataFrame:
        Z = np.log1p(np.clip(np.asarray(X, dtype=float), 0.0, None))
        Z = np.where(np.isnan(Z), self.fill_, Z)
        Z = (Z - self.mean_) / self.scale_
        return pd.DataFrame(np.clip(Z, -6.0, 6.0), columns=[f"x{i}" for i in range(Z.shape[1])])

    def fit(self, X: np.ndarray, y: np.ndarray) -> SurvivalClassifier:
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        if y.ndim == 1:
            y = np.column_stack([np.full(len(y), float(self.horizon_days)), y])
        duration = np.clip(np.nan_to_num(y[:, 0], nan=self.horizon_days), 1e-6, self.horizon_days)
        observed = (y[:, 1] > 0) & (y[:, 0] <= self.horizon_days)
        data = sample_rows(np.column_stack([X, duration, observed]), self.max_rows, self.random_state)
        X, duration, observed = data[:, :-2], data[:, -2], data[:, -1]
        Z = np.log1p(np.clip(X, 0.0, None))
        with np.errstate(all="ignore"):
            col_max = np.nanmax(np.where(np.isnan(Z), -np.inf, Z), axis=0)
        self.fill_ = np.where(np.isfinite(col_max), col_max, 0.0)
        Z = np.where(np.isnan(Z), self.fill_, Z)
        self.mean_ = Z.mean(axis=0)
        scale = Z.std(axis=0)
        self.scale_ = np.where(scale > 1e-9, scale, 1.0)
        df = self._design(X)
        keep = [c for c, s in zip(df.columns, scale) if s > 1e-9]
        df = df[keep]
        df[self._DURATION] = duration
        df[self._EVENT] = observed.astype(int)
        self.columns_ = keep
        self.cox_ = CoxPHFitter(penalizer=self.penalizer).fit(
            df, duration_col=self._DURATION, event_col=self._EVENT
        )
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Columns: P(no event within H) = S(H | x), P(event within H) = 1 - S(H | x)."""
        check_fitted(self, "cox_")
        df = self._design(X)[self.columns_]
        surv = self.cox_.predict_survival_function(df, times=[float(self.horizon_days)]).to_numpy()[0]
        surv = np.clip(surv, 0.0, 1.0)
        return np.column_stack([surv, 1.0 - surv])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

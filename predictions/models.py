"""Shared model helpers, the gradient-boosted candidates and the naive baselines.

All models follow scikit-learn's estimator API: ``__init__`` stores keyword-only settings,
``fit`` sets attributes ending in ``_`` and returns ``self``, every other method checks it was
fitted and raises :class:`engine.errors.NotFittedError` (an ``AttributeError``, as sklearn expects).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils.validation import check_is_fitted

from engine.errors import NotFittedError


def check_fitted(estimator: BaseEstimator, attribute: str | None = None) -> None:
    """sklearn's ``check_is_fitted`` raising the project's :class:`NotFittedError`."""
    try:
        check_is_fitted(estimator, attribute)
    except SklearnNotFittedError:
        raise NotFittedError(
            f"this {type(estimator).__name__} is not fitted yet; call fit() before using it"
        ) from None


def sample_rows(X: np.ndarray, max_rows: int, random_state: int) -> np.ndarray:
    """At most ``max_rows`` rows of ``X``, a seeded sample without replacement (order kept)."""
    if len(X) <= max_rows:
        return X
    idx = np.sort(np.random.default_rng(random_state).choice(len(X), size=max_rows, replace=False))
    return X[idx]


def gbt_classifier(*, random_state: int = 0) -> HistGradientBoostingClassifier:
    """The gradient-boosted trees of Unify's predictive traits; missing values are native."""
    return HistGradientBoostingClassifier(
        max_iter=120, learning_rate=0.1, max_leaf_nodes=31, min_samples_leaf=40,
        l2_regularization=1.0, early_stopping=True, validation_fraction=0.15, n_iter_no_change=10,
        random_state=random_state,
    )


def gbt_regressor(y: np.ndarray, *, random_state: int = 0) -> HistGradientBoostingRegressor:
    """Boosted regression trees; Poisson loss for non-negative money (skewed, many zeros)."""
    loss = "poisson" if np.all(np.asarray(y) >= 0) and np.any(np.asarray(y) > 0) else "squared_error"
    return HistGradientBoostingRegressor(
        loss=loss, max_iter=120, learning_rate=0.1, max_leaf_nodes=31, min_samples_leaf=40,
        l2_regularization=1.0, early_stopping=True, validation_fraction=0.15, n_iter_no_change=10,
        random_state=random_state,
    )


class RecencyBaseline(ClassifierMixin, BaseEstimator):
    """Naive baseline: the training rate of positives per recency bucket.

    ``X`` has one column, days since the last counting event (NaN: never); the buckets are
    training quantiles plus one for "never". It ranks exactly as recency does, and gives
    calibrated probabilities so log loss and Brier score compare fairly.

    Parameters
    ----------
    bins
        Number of quantile buckets.
    """

    def __init__(self, *, bins: int = 20) -> None:
        self.bins = bins

    def _bucket(self, x: np.ndarray) -> np.ndarray:
        b = np.searchsorted(self.edges_, x, side="right")
        return np.where(np.isnan(x), len(self.edges_) + 1, b)

    def fit(self, X: np.ndarray, y: np.ndarray) -> RecencyBaseline:
        x = np.asarray(X, dtype=float)[:, 0]
        y = np.asarray(y).astype(int)
        self.classes_ = np.array([0, 1])
        seen = x[~np.isnan(x)]
        qs = np.quantile(seen, np.linspace(0, 1, self.bins + 1)[1:-1]) if len(seen) else np.array([])
        self.edges_ = np.unique(qs)
        buckets = self._bucket(x)
        n = len(self.edges_) + 2
        pos = np.bincount(buckets, weights=y, minlength=n)
        tot = np.bincount(buckets, minlength=n)
        prior = y.mean() if len(y) else 0.5
        self.rates_ = (pos + prior) / (tot + 1.0)  # one pseudo-observation at the base rate
        self.n_features_in_ = 1
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_fitted(self, "rates_")
        p = self.rates_[self._bucket(np.asarray(X, dtype=float)[:, 0])]
        return np.column_stack([1.0 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


class RecencyClassifier(ClassifierMixin, BaseEstimator):
    """The recency reference as a candidate: a logistic regression on ``log1p`` of the days since
    the last counting event (plus a "never" flag).

    Strictly monotone in recency, so it ranks exactly as raw recency does (no bucket ties, unlike
    :class:`RecencyBaseline`), and the model chosen on the holdout is never worse than recency alone.
    ``X`` has one column, days since the last counting event (NaN: never).
    """

    def _design(self, X: np.ndarray) -> np.ndarray:
        x = np.asarray(X, dtype=float)[:, 0]
        never = np.isnan(x)
        return np.column_stack([np.log1p(np.where(never, self.fill_, np.maximum(x, 0.0))), never.astype(float)])

    def fit(self, X: np.ndarray, y: np.ndarray) -> RecencyClassifier:
        x = np.asarray(X, dtype=float)[:, 0]
        seen = x[~np.isnan(x)]
        self.fill_ = float(seen.max()) + 1.0 if len(seen) else 0.0
        self.model_ = LogisticRegression(C=1e6, max_iter=1000).fit(self._design(X), np.asarray(y).astype(int))
        self.classes_ = self.model_.classes_
        self.n_features_in_ = 1
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_fitted(self, "model_")
        return self.model_.predict_proba(self._design(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


class SpendRateBaseline(RegressorMixin, BaseEstimator):
    """Naive LTV baseline: historical spend per day, times the horizon.

    ``X`` columns: total spend so far, days since the first purchase. The rate divides by at
    least one horizon so a customer who bought yesterday is not extrapolated wildly.

    Parameters
    ----------
    horizon_days
        The prediction window.
    """

    INPUTS = ("rfm_monetary_sum", "rfm_age_days")

    def __init__(self, *, horizon_days: int = 30) -> None:
        self.horizon_days = horizon_days

    def fit(self, X: np.ndarray, y: object = None) -> SpendRateBaseline:
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        check_fitted(self, "n_features_in_")
        X = np.asarray(X, dtype=float)
        spend = np.nan_to_num(X[:, 0], nan=0.0)
        age = np.maximum(np.nan_to_num(X[:, 1], nan=0.0), self.horizon_days)
        return spend / age * self.horizon_days

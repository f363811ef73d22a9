"""Buy-till-you-die models: BG/NBD (purchase counts) and Gamma-Gamma (spend per purchase).

Written here because the ``lifetimes`` package no longer runs on current numpy/pandas. Both are
fitted by maximum likelihood with scipy (L-BFGS-B on log parameters), following

- Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An Alternative to the
  Pareto/NBD Model", Marketing Science 24(2): likelihood (eq. 6) and conditional expectation (eq. 10);
- Fader, Hardie & Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer Base Analysis";
  Fader & Hardie, "The Gamma-Gamma Model of Monetary Value" (2013 note).

Time is in days. ``frequency`` x is the number of repeat purchases (purchases - 1), ``recency``
t_x the time from the first to the last purchase, ``age`` T the time from the first purchase to
the cutoff.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from predictions.models import check_fitted, sample_rows


def _bgnbd_neg_ll(log_params: np.ndarray, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> float:
    r, alpha, a, b = np.exp(log_params)
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(
            x > 0,
            np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + tx),
            -np.inf,
        )
    ll = a1 + a2 + np.logaddexp(a3, a4)
    return -float(np.sum(ll))


class BetaGeoModel(BaseEstimator):
    """BG/NBD: Poisson purchases at a gamma-distributed rate, dropout after each repeat purchase
    with a beta-distributed probability.

    Parameters
    ----------
    max_rows
        Fit on at most this many customers (a seeded sample): the four parameters are population
        quantities, and the likelihood costs O(rows) per evaluation.
    random_state
        Seed of that sample.
    """

    def __init__(self, *, max_rows: int = 200_000, random_state: int = 0) -> None:
        self.max_rows = max_rows
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: object = None) -> BetaGeoModel:
        """X columns: frequency x, recency t_x, age T (days); customers with T > 0."""
        X = np.asarray(X, dtype=float)
        X = X[np.isfinite(X).all(axis=1) & (X[:, 2] > 0)]
        if len(X) < 10:
            raise ValueError("BG/NBD needs at least 10 customers with a first purchase before the cutoff")
        X = sample_rows(X, self.max_rows, self.random_state)
        x, tx, T = X[:, 0], X[:, 1], X[:, 2]
        start = np.log([1.0, max(float(np.mean(T)), 1.0), 1.0, 1.0])
        res = minimize(_bgnbd_neg_ll, start, args=(x, tx, T), method="L-BFGS-B",
                       bounds=[(-12.0, 12.0)] * 4)
        self.r_, self.alpha_, self.a_, self.b_ = (float(v) for v in np.exp(res.x))
        self.log_likelihood_ = -float(res.fun)
        self.converged_ = bool(res.success)
        self.n_fit_ = len(X)
        self.n_features_in_ = 3
        return self

    @property
    def params_(self) -> dict[str, float]:
        check_fitted(self, "r_")
        return {"r": self.r_, "alpha": self.alpha_, "a": self.a_, "b": self.b_}

    def expected_purchases(self, X: np.ndarray, t: float) -> np.ndarray:
        """E[purchases in (T, T + t] | x, t_x, T] (FHL 2005, eq. 10)."""
        check_fitted(self, "r_")
        X = np.asarray(X, dtype=float)
        x, tx, T = X[:, 0], X[:, 1], X[:, 2]
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_
        z = t / (alpha + T + t)
        hyp = hyp2f1(r + x, b + x, a + b + x - 1, z)
        num = 1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
        first = (a + b + x - 1) / (a - 1)
        den = 1.0 + (x > 0) * (a / np.maximum(b + x - 1, 1e-12)) * ((alpha + T) / (alpha + tx)) ** (r + x)
        out = first * num / den
        return np.where(np.isfinite(out), np.maximum(out, 0.0), np.nan)

    def probability_no_purchases(self, X: np.ndarray, t: float) -> np.ndarray:
        """P(no purchase in (T, T + t] | x, t_x, T), exactly.

        A dropout happens only at a purchase, so zero purchases in the window means: dead at T, or
        alive with no Poisson arrival in t. Integrating the alive term of the FHL (2005) likelihood
        over lambda with ``T + t`` in place of ``T`` gives
        ``(((alpha + T) / (alpha + T + t)) ** (r + x) + odds) / (1 + odds)``, ``odds`` being the
        odds of having dropped out (as in :meth:`probability_alive`).
        """
        check_fitted(self, "r_")
        X = np.asarray(X, dtype=float)
        x, tx, T = X[:, 0], X[:, 1], X[:, 2]
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_
        with np.errstate(invalid="ignore", over="ignore"):  # NaN rows (no history) stay NaN
            odds = (x > 0) * (a / np.maximum(b + x - 1, 1e-12)) * ((alpha + T) / (alpha + tx)) ** (r + x)
            quiet = ((alpha + T) / (alpha + T + t)) ** (r + x)
            out = (quiet + odds) / (1.0 + odds)
        return np.where(np.isfinite(out), np.clip(out, 0.0, 1.0), np.nan)

    def probability_alive(self, X: np.ndarray) -> np.ndarray:
        """P(still active at T | x, t_x, T)."""
        check_fitted(self, "r_")
        X = np.asarray(X, dtype=float)
        x, tx, T = X[:, 0], X[:, 1], X[:, 2]
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_
        odds = (x > 0) * (a / np.maximum(b + x - 1, 1e-12)) * ((alpha + T) / (alpha + tx)) ** (r + x)
        return 1.0 / (1.0 + odds)


def _gg_neg_ll(log_params: np.ndarray, n: np.ndarray, m: np.ndarray) -> float:
    p, q, g = np.exp(log_params)
    ll = (
        gammaln(p * n + q) - gammaln(p * n) - gammaln(q) + q * np.log(g)
        + (p * n - 1) * np.log(m) + p * n * np.log(n) - (p * n + q) * np.log(g + m * n)
    )
    return -float(np.sum(ll))


class GammaGammaModel(BaseEstimator):
    """Gamma-Gamma: each purchase's value is gamma(p, nu), nu gamma(q, gamma) across customers.

    Parameters
    ----------
    max_rows, random_state
        As :class:`BetaGeoModel`.
    """

    def __init__(self, *, max_rows: int = 200_000, random_state: int = 0) -> None:
        self.max_rows = max_rows
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: object = None) -> GammaGammaModel:
        """X columns: number of valued purchases n, their mean m; rows with n >= 1 and m > 0 count."""
        X = np.asarray(X, dtype=float)
        X = X[np.isfinite(X).all(axis=1) & (X[:, 0] >= 1) & (X[:, 1] > 0)]
        if len(X) < 10:
            raise ValueError("Gamma-Gamma needs at least 10 customers with a positive purchase value")
        X = sample_rows(X, self.max_rows, self.random_state)
        n, m = X[:, 0], X[:, 1]
        start = np.log([1.0, 2.0, max(float(np.mean(m)), 1e-3)])
        res = minimize(_gg_neg_ll, start, args=(n, m), method="L-BFGS-B", bounds=[(-12.0, 12.0)] * 3)
        self.p_, self.q_, self.gamma_ = (float(v) for v in np.exp(res.x))
        self.log_likelihood_ = -float(res.fun)
        self.converged_ = bool(res.success)
        self.n_fit_ = len(X)
        self.n_features_in_ = 2
        return self

    @property
    def params_(self) -> dict[str, float]:
        check_fitted(self, "p_")
        return {"p": self.p_, "q": self.q_, "gamma": self.gamma_}

    def predict(self, X: np.ndarray) -> np.ndarray:
        """E[value of a purchase | n, m]; customers without a valued purchase get the population mean."""
        check_fitted(self, "p_")
        X = np.asarray(X, dtype=float)
        n = np.nan_to_num(X[:, 0], nan=0.0)
        m = np.where((n >= 1) & np.isfinite(X[:, 1]) & (X[:, 1] > 0), X[:, 1], 0.0)
        n = np.where(m > 0, n, 0.0)
        p, q, g = self.p_, self.q_, self.gamma_
        if q <= 1:
            # The population mean is infinite; shrink towards the customer's own mean instead.
            return np.where(n > 0, m, np.nan)
        return p * (g + n * m) / (p * n + q - 1)


class BTYDRegressor(RegressorMixin, BaseEstimator):
    """Expected value over the next ``horizon_days``: BG/NBD purchases x Gamma-Gamma value.

    The standard buy-till-you-die baseline for lifetime value; it learns from the purchase history
    of the cutoff alone (no labels), so ``fit`` ignores ``y``.

    Parameters
    ----------
    horizon_days
        The prediction window.
    max_rows, random_state
        Passed to both sub-models.
    """

    #: The feature columns, in order, that ``X`` holds.
    INPUTS: ClassVar[tuple[str, ...]] = (
        "rfm_frequency", "rfm_recency_days", "rfm_age_days", "rfm_monetary_count", "rfm_monetary_mean",
    )

    def __init__(self, *, horizon_days: int = 30, max_rows: int = 200_000, random_state: int = 0) -> None:
        self.horizon_days = horizon_days
        self.max_rows = max_rows
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: object = None) -> BTYDRegressor:
        X = np.asarray(X, dtype=float)
        self.bgnbd_ = BetaGeoModel(max_rows=self.max_rows, random_state=self.random_state).fit(X[:, :3])
        self.gamma_gamma_ = GammaGammaModel(max_rows=self.max_rows, random_state=self.random_state).fit(X[:, 3:5])
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        check_fitted(self, "bgnbd_")
        X = np.asarray(X, dtype=float)
        purchases = self.bgnbd_.expected_purchases(X[:, :3], float(self.horizon_days))
        value = self.gamma_gamma_.predict(X[:, 3:5])
        return np.nan_to_num(purchases * value, nan=0.0)


class BetaGeoClassifier(ClassifierMixin, BaseEstimator):
    """P(a counting event in the next ``horizon_days``) from BG/NBD: the buy-till-you-die reference
    for churn and goals, so the engine never picks a model that ranks worse than it on the holdout.

    ``X`` columns (:attr:`INPUTS`): counting events so far, days from the first one to the cutoff,
    days from the last one to the cutoff. A profile without a counting event has no BG/NBD history
    and gets P(event) = 0. ``predict_proba`` columns: P(no event), P(event). ``fit`` ignores ``y``
    (the model learns from the history alone).

    Parameters
    ----------
    horizon_days
        The window H.
    max_rows, random_state
        As :class:`BetaGeoModel`.
    """

    INPUTS: ClassVar[tuple[str, ...]] = ("target_count_all", "target_tenure_days", "target_recency_days")

    def __init__(self, *, horizon_days: int = 30, max_rows: int = 200_000, random_state: int = 0) -> None:
        self.horizon_days = horizon_days
        self.max_rows = max_rows
        self.random_state = random_state

    @staticmethod
    def _rfm(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        n, tenure, recency = X[:, 0], X[:, 1], X[:, 2]
        return np.column_stack([n - 1.0, tenure - recency, tenure])

    def fit(self, X: np.ndarray, y: object = None) -> BetaGeoClassifier:
        X = np.asarray(X, dtype=float)
        self.bgnbd_ = BetaGeoModel(max_rows=self.max_rows, random_state=self.random_state).fit(
            self._rfm(X[np.nan_to_num(X[:, 0]) >= 1]))
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_fitted(self, "bgnbd_")
        X = np.asarray(X, dtype=float)
        quiet = self.bgnbd_.probability_no_purchases(self._rfm(X), float(self.horizon_days))
        quiet = np.where(np.nan_to_num(X[:, 0]) >= 1, np.nan_to_num(quiet, nan=1.0), 1.0)
        return np.column_stack([quiet, 1.0 - quiet])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

"""Every model follows scikit-learn's estimator conventions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from engine.errors import NotFittedError, ProfilesError
from predictions.btyd import BetaGeoModel, BTYDRegressor, GammaGammaModel
from predictions.models import RecencyBaseline, SpendRateBaseline
from predictions.survival import SurvivalClassifier

rng = np.random.default_rng(0)
N = 600
X5 = np.column_stack([
    rng.poisson(2, N), rng.uniform(0, 100, N), rng.uniform(100, 200, N), rng.poisson(2, N) + 1, rng.gamma(2, 10, N),
]).astype(float)
X5[:, 1] = np.minimum(X5[:, 1], X5[:, 2])
XS = rng.uniform(0, 50, size=(N, 4))
XS[rng.random(N) < 0.1, 0] = np.nan
DUR = np.column_stack([rng.uniform(0, 30, N), rng.random(N) < 0.5])
Y01 = (rng.random(N) < 0.3).astype(int)

CASES = [
    (BetaGeoModel(), X5[:, :3], None, "r_"),
    (GammaGammaModel(), X5[:, 3:], None, "p_"),
    (BTYDRegressor(horizon_days=30), X5, None, "bgnbd_"),
    (SurvivalClassifier(horizon_days=30), XS, DUR, "cox_"),
    (RecencyBaseline(bins=5), XS[:, :1], Y01, "rates_"),
    (SpendRateBaseline(horizon_days=30), X5[:, [4, 2]], None, "n_features_in_"),
]
IDS = [type(c[0]).__name__ for c in CASES]


@pytest.mark.parametrize(("model", "X", "y", "attr"), CASES, ids=IDS)
def test_init_stores_settings_and_fit_returns_self(model, X, y, attr):
    params = model.get_params()
    assert params and all(not k.endswith("_") for k in params)
    fresh = clone(model)
    assert fresh.get_params() == params
    assert not [k for k in vars(fresh) if k.endswith("_")]  # nothing learned before fit
    assert fresh.fit(X, y) is fresh
    assert hasattr(fresh, attr)
    fresh.set_params(**params)


@pytest.mark.parametrize(("model", "X", "y", "attr"), CASES, ids=IDS)
def test_use_before_fit_raises_not_fitted(model, X, y, attr):
    method = next(getattr(model, m) for m in ("predict_proba", "predict", "expected_purchases") if hasattr(model, m))
    args = (X, 30.0) if method.__name__ == "expected_purchases" else (X,)
    with pytest.raises(NotFittedError) as info:
        method(*args)
    assert isinstance(info.value, (AttributeError, ProfilesError)) and "fit" in str(info.value)


def test_classifiers_give_probabilities():
    for model, X, y in ((SurvivalClassifier(horizon_days=30), XS, DUR), (RecencyBaseline(bins=5), XS[:, :1], Y01)):
        proba = clone(model).fit(X, y).predict_proba(X)
        assert proba.shape == (N, 2)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        assert np.all((proba >= 0) & (proba <= 1))


def test_survival_probability_rises_with_activity():
    """Profiles with more recent events are more likely to have the next one within H."""
    rate = rng.gamma(1.0, 0.1, 3000)
    recency = rng.exponential(1 / rate)
    nxt = rng.exponential(1 / rate)
    X = np.column_stack([recency, rng.normal(size=3000)])
    model = SurvivalClassifier(horizon_days=30).fit(X, np.column_stack([nxt, nxt <= 30]))
    p = model.predict_proba(np.array([[1.0, 0.0], [100.0, 0.0]]))[:, 1]
    assert p[0] > p[1]

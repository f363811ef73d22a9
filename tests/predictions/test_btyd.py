"""BG/NBD and Gamma-Gamma recover the parameters they were simulated with."""

from __future__ import annotations

import numpy as np
import pytest

from predictions.btyd import BetaGeoModel, BTYDRegressor, GammaGammaModel
from tests.predictions.simulate import simulate_bgnbd, simulate_gamma_gamma

BGNBD_TRUTH = {"r": 0.6, "alpha": 20.0, "a": 0.8, "b": 2.5}
GG_TRUTH = {"p": 6.0, "q": 4.0, "gamma": 15.0}


@pytest.fixture(scope="module")
def bgnbd_world():
    sim = simulate_bgnbd(10_000, **BGNBD_TRUTH, T_min=180, T_max=365, future=60, seed=1)
    X = np.column_stack([sim["x"], sim["tx"], sim["T"]])
    return sim, X, BetaGeoModel().fit(X)


def test_bgnbd_recovers_parameters_within_20_percent(bgnbd_world):
    _, _, model = bgnbd_world
    for name, true in BGNBD_TRUTH.items():
        assert model.params_[name] == pytest.approx(true, rel=0.20), name
    assert model.converged_


def test_bgnbd_conditional_expectation_matches_simulated_future(bgnbd_world):
    """E[purchases in (T, T + 60]] summed over customers is within 8% of what the simulation did,
    and customers with more expected purchases did buy more (rank agreement)."""
    sim, X, model = bgnbd_world
    expected = model.expected_purchases(X, 60.0)
    assert expected.sum() == pytest.approx(sim["future"].sum(), rel=0.08)
    top = expected >= np.quantile(expected, 0.9)
    assert sim["future"][top].mean() > 3 * sim["future"].mean()
    alive = model.probability_alive(X)
    assert np.all((alive > 0) & (alive <= 1)) and np.all(alive[sim["x"] == 0] == 1)


def test_gamma_gamma_recovers_parameters_and_mean_spend():
    sim = simulate_gamma_gamma(20_000, **GG_TRUTH, seed=2)
    model = GammaGammaModel().fit(np.column_stack([sim["n"], sim["m"]]))
    for name, true in GG_TRUTH.items():
        assert model.params_[name] == pytest.approx(true, rel=0.20), name
    predicted = model.predict(np.column_stack([sim["n"], sim["m"]]))
    true_mean = GG_TRUTH["p"] / sim["nu"]
    assert predicted.mean() == pytest.approx(true_mean.mean(), rel=0.05)
    # shrinkage: the conditional mean is closer to the truth than the raw mean
    assert np.mean((predicted - true_mean) ** 2) < np.mean((sim["m"] - true_mean) ** 2)


def test_btyd_regressor_combines_both():
    sim = simulate_bgnbd(3_000, **BGNBD_TRUTH, T_min=180, T_max=365, future=30, seed=3)
    rng = np.random.default_rng(4)
    count = sim["x"] + 1
    mean = rng.gamma(6.0, 5.0, len(count))
    X = np.column_stack([sim["x"], sim["tx"], sim["T"], count, mean])
    model = BTYDRegressor(horizon_days=30).fit(X)
    value = model.predict(X)
    expected = model.bgnbd_.expected_purchases(X[:, :3], 30.0) * model.gamma_gamma_.predict(X[:, 3:])
    np.testing.assert_allclose(value, expected)
    assert np.all(value >= 0)

"""Simulators with known parameters: the oracles the model tests compare against."""

from __future__ import annotations

import numpy as np


def simulate_bgnbd(n: int, *, r: float, alpha: float, a: float, b: float, T_min: float, T_max: float,
                   future: float = 0.0, seed: int = 0) -> dict[str, np.ndarray]:
    """BG/NBD customers: Poisson(lambda) purchases, lambda ~ Gamma(r, rate alpha); after each repeat
    purchase the customer drops out with probability p ~ Beta(a, b). Returns x, t_x, T and the number
    of purchases in (T, T + future]."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    T = rng.uniform(T_min, T_max, n)
    t = np.zeros(n)
    x = np.zeros(n)
    tx = np.zeros(n)
    fut = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    while alive.any():
        t = t + np.where(alive, rng.exponential(1.0 / np.maximum(lam, 1e-12)), 0.0)
        in_obs = alive & (t <= T)
        in_future = alive & (t > T) & (t <= T + future)
        x += in_obs
        tx = np.where(in_obs, t, tx)
        fut += in_future
        bought = in_obs | in_future
        dies = bought & (rng.random(n) < p)
        alive = bought & ~dies
    return {"x": x, "tx": tx, "T": T, "future": fut}


def simulate_gamma_gamma(n: int, *, p: float, q: float, gamma: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Per customer nu ~ Gamma(q, rate gamma); 1 + Poisson(3) purchases of value Gamma(p, rate nu)."""
    rng = np.random.default_rng(seed)
    nu = rng.gamma(q, 1.0 / gamma, n)
    count = 1 + rng.poisson(3, n)
    total = rng.gamma(p * count, 1.0 / nu)  # sum of `count` Gamma(p, nu) values
    return {"n": count.astype(float), "m": total / count, "nu": nu}

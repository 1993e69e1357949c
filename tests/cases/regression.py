"""Cases for the regression losses added beside mse/mae/huber: smooth_l1, log_cosh, quantile,
multi_quantile, poisson_nll and gaussian_nll (numpy oracles written from the formulas)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, reduce


def _gaps(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Signed gaps with |gap| in [0.1, 0.4] or [1.2, 2.0]: away from 0, 0.5 and 1 (every kink used below)."""
    small = rng.uniform(0.1, 0.4, size=shape)
    large = rng.uniform(1.2, 2.0, size=shape)
    return rng.choice([-1, 1], size=shape) * np.where(rng.random(shape) < 0.5, small, large)


def _pair(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    x = floats(rng, dtype, 5, 4)
    return {"input": x, "target": (x + _gaps(rng, x.shape)).astype(dtype)}


def _smooth_l1(a: Arrays, p: Any, r: str) -> Any:
    beta = p["beta"]
    e = np.abs(a["input"] - a["target"])
    loss = e if beta == 0 else np.where(e < beta, 0.5 * e**2 / beta, e - 0.5 * beta)
    return reduce(loss, r)


def _log_cosh(a: Arrays, p: Any, r: str) -> Any:
    return reduce(np.log(np.cosh(a["input"] - a["target"])), r)


def _pinball(e: np.ndarray, q: Any) -> np.ndarray:
    return np.maximum(q * e, (q - 1) * e)


def _quantile(a: Arrays, p: Any, r: str) -> Any:
    return reduce(_pinball(a["target"] - a["input"], p["quantile"]), r)


def _multi_quantile_make(columns: int, column_target: bool) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
        t = floats(rng, dtype, 6)
        x = (t[:, None] + _gaps(rng, (6, columns))).astype(dtype)
        return {"input": x, "target": t[:, None] if column_target else t}

    return make


def _multi_quantile(a: Arrays, p: Any, r: str) -> Any:
    t = a["target"].reshape(-1)
    q = np.asarray(p["quantiles"])
    losses = _pinball(t[:, None] - a["input"], q[None, :])
    if r == "mean":  # the mean over quantiles of each quantile's mean pinball loss
        return np.mean([losses[:, k].mean() for k in range(len(q))])
    return reduce(losses, r)


def _poisson_log(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": floats(rng, dtype, 5, 3), "target": rng.integers(0, 6, (5, 3)).astype(dtype)}


def _poisson_full(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    # Targets stay away from 1, where the Stirling term switches on.
    t = np.where(rng.random((5, 3)) < 0.4, rng.uniform(0.0, 0.8, (5, 3)), rng.uniform(1.3, 6.0, (5, 3)))
    return {"input": floats(rng, dtype, 5, 3), "target": t.astype(dtype)}


def _poisson_rate(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": floats(rng, dtype, 5, 3, low=0.2, high=4.0), "target": rng.integers(0, 6, (5, 3)).astype(dtype)}


def _poisson(a: Arrays, p: Any, r: str) -> Any:
    x, t = a["input"], a["target"]
    loss = np.exp(x) - t * x if p["log_input"] else x - t * np.log(x + p["eps"])
    if p["full"]:
        safe = np.where(t > 1, t, 1.0)
        loss = loss + np.where(t > 1, safe * np.log(safe) - safe + 0.5 * np.log(2 * np.pi * safe), 0.0)
    return reduce(loss, r)


def _gaussian_make(var_shape: tuple[int, ...]) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
        return {"input": floats(rng, dtype, 5, 3), "target": floats(rng, dtype, 5, 3),
                "var": floats(rng, dtype, *var_shape, low=0.3, high=2.0)}

    return make


def _gaussian(a: Arrays, p: Any, r: str) -> Any:
    x, t, v = a["input"], a["target"], a["var"]
    if v.ndim == x.ndim - 1:
        v = v[..., None]
    v = np.maximum(v, p["eps"])
    loss = 0.5 * (np.log(v) + (x - t) ** 2 / v)
    if p["full"]:
        loss = loss + 0.5 * np.log(2 * np.pi)
    return reduce(np.broadcast_to(loss, x.shape), r)


CASES = [
    Case("smooth_l1", _pair, _smooth_l1, bad_shape=("target", (5, 3))),
    Case("SmoothL1Loss", _pair, _smooth_l1, params={"beta": 0.5}, variant="beta=0.5"),
    Case("smooth_l1", _pair, _smooth_l1, params={"beta": 0.0}, variant="beta=0 (L1)"),
    Case("log_cosh", _pair, _log_cosh, bad_shape=("target", (4, 5))),
    Case("quantile", _pair, _quantile, bad_shape=("target", (20,))),
    Case("pinball", _pair, _quantile, params={"quantile": 0.9}, variant="q=0.9"),
    Case("multi_quantile", _multi_quantile_make(3, False), _multi_quantile, bad_shape=("input", (6, 4))),
    Case("multi_quantile", _multi_quantile_make(2, True), _multi_quantile, params={"quantiles": [0.05, 0.95]},
         variant="target (N,1), 2 quantiles", bad_shape=("target", (6, 2))),
    Case("poisson_nll", _poisson_log, _poisson, bad_shape=("target", (3, 5))),
    Case("PoissonNLLLoss", _poisson_full, _poisson, params={"full": True}, variant="full"),
    Case("poisson", _poisson_rate, _poisson, variant="keras preset: rate input, eps 1e-7"),
    Case("gaussian_nll", _gaussian_make((5, 3)), _gaussian, bad_shape=("var", (4, 3))),
    Case("gaussian_nll", _gaussian_make((5,)), _gaussian, params={"full": True}, variant="var (N,), full",
         bad_shape=("target", (5, 2))),
    Case("GaussianNLLLoss", _gaussian_make((5, 1)), _gaussian, params={"eps": 0.5}, variant="var (N,1), eps=0.5",
         gradcheck=False),  # eps=0.5 clamps some variances: the clamp passes the gradient through unchanged
]

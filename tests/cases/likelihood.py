"""Cases for the negative log-likelihood regression losses: poisson_nll and gaussian_nll (numpy oracles
written from the formulas)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, reduce


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
    Case("poisson_nll", _poisson_log, _poisson, bad_shape=("target", (3, 5))),
    Case("PoissonNLLLoss", _poisson_full, _poisson, params={"full": True}, variant="full"),
    Case("poisson", _poisson_rate, _poisson, variant="keras preset: rate input, eps 1e-7"),
    Case("gaussian_nll", _gaussian_make((5, 3)), _gaussian, bad_shape=("var", (4, 3))),
    Case("gaussian_nll", _gaussian_make((5,)), _gaussian, params={"full": True}, variant="var (N,), full",
         bad_shape=("target", (5, 2))),
    Case("GaussianNLLLoss", _gaussian_make((5, 1)), _gaussian, params={"eps": 0.5}, variant="var (N,1), eps=0.5",
         gradcheck=False),  # eps=0.5 clamps some variances: the clamp passes the gradient through unchanged
]

"""Cases for the composite losses: uncertainty_weighting and weighted_sum (numpy oracles)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, reduce


def _tasks(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"losses": rng.uniform(0.1, 3.0, 4).astype(dtype), "log_vars": floats(rng, dtype, 4, low=-1, high=1)}


def _uncertainty(a: Arrays, p: Any, r: str) -> Any:
    big_l, s = a["losses"], a["log_vars"]
    if p["variant"] == "simplified":
        terms = np.exp(-s) * big_l + s
    else:
        scale = np.array([1.0 if t == "classification" else 0.5 for t in (p["task_types"] or ["regression"] * 4)])
        terms = scale * np.exp(-s) * big_l + 0.5 * s
    return reduce(terms, r)


def _shared(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": floats(rng, dtype, 5, 3), "target": rng.uniform(0, 1, (5, 3)).astype(dtype)}


def _mse_plus_bce(a: Arrays, p: Any, r: str) -> Any:
    x, t = a["input"], a["target"]
    mse = (x - t) ** 2
    bce = np.logaddexp(0, x) - t * x
    w = p["weights"] or [1.0, 1.0]
    return w[0] * reduce(mse, r) + w[1] * reduce(bce, r)


def _mse_plus_huber(a: Arrays, p: Any, r: str) -> Any:
    e = np.abs(a["input"] - a["target"])
    d = p["huber.delta"]
    huber = np.where(e <= d, 0.5 * e**2, d * (e - 0.5 * d))
    return 0.25 * reduce(e**2, r) + 0.75 * reduce(huber, r)


CASES = [
    Case("uncertainty_weighting", _tasks, _uncertainty, bad_shape=("log_vars", (3,))),
    Case("uncertainty_weighting", _tasks, _uncertainty, params={"variant": "simplified"}, variant="simplified"),
    Case("uncertainty_weighting", _tasks, _uncertainty,
         params={"task_types": ["regression", "classification", "classification", "regression"]},
         variant="task_types"),
    Case("weighted_sum", _shared, _mse_plus_bce, params={"losses": ["mse", "bce_with_logits"]},
         variant="mse+bce_with_logits", bad_shape=("target", (5, 4))),
    Case("weighted_sum", _shared, _mse_plus_bce, params={"losses": ["mse", "BCEWithLogitsLoss"], "weights": [0.3, 2.0]},
         variant="weights"),
    Case("combined", _shared, _mse_plus_huber,
         params={"losses": ["mse", "huber"], "weights": [0.25, 0.75], "huber.delta": 0.2}, variant="huber.delta",
         gradcheck=False),  # huber's kink at |e| = delta lies among these random errors
]

"""Cases for the quantile regression losses: quantile and multi_quantile (numpy oracles written from the
formulas)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, reduce
from cases.regression import _gaps, _pair


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


CASES = [
    Case("quantile", _pair, _quantile, bad_shape=("target", (20,))),
    Case("pinball", _pair, _quantile, params={"quantile": 0.9}, variant="q=0.9"),
    Case("multi_quantile", _multi_quantile_make(3, False), _multi_quantile, bad_shape=("input", (6, 4))),
    Case("multi_quantile", _multi_quantile_make(2, True), _multi_quantile, params={"quantiles": [0.05, 0.95]},
         variant="target (N,1), 2 quantiles", bad_shape=("target", (6, 2))),
]

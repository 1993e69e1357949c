"""Cases for the label-smoothing cross-entropies: label_smoothing_cross_entropy, adaptive_label_smoothing
(numpy oracles)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, log_softmax, reduce, softmax


def _ls_inputs(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": floats(rng, dtype, 6, 5), "target": rng.integers(0, 5, 6)}


def _soft_ce(logits: np.ndarray, q: np.ndarray, r: str) -> Any:
    return reduce(-(q * log_softmax(logits, axis=1)).sum(axis=1), r)


def _label_smoothing(a: Arrays, p: Any, r: str) -> Any:
    x, y = a["input"], a["target"]
    n, c = x.shape
    eps = p["smoothing"]
    if p["distribution"] == "others":
        q = np.full((n, c), eps / (c - 1))
        q[np.arange(n), y] = 1 - eps
    else:
        q = np.full((n, c), eps / c)
        q[np.arange(n), y] = 1 - eps + eps / c
    return _soft_ce(x, q, r)


def _adaptive(a: Arrays, p: Any, r: str) -> Any:
    x, y = a["input"], a["target"]
    n, c = x.shape
    conf = softmax(x, axis=1)[np.arange(n), y]
    eps = np.maximum(p["base_smoothing"] * (1 - conf), p["min_smoothing"])
    q = np.repeat((eps / (c - 1))[:, None], c, axis=1)
    q[np.arange(n), y] = 1 - eps
    return _soft_ce(x, q, r)


CASES = [
    Case("label_smoothing_cross_entropy", _ls_inputs, _label_smoothing, bad_shape=("target", (5,))),
    Case("label_smoothing_cross_entropy", _ls_inputs, _label_smoothing, params={"distribution": "uniform"},
         variant="uniform", bad_shape=("input", (6, 5, 1))),
    Case("LabelSmoothingCrossEntropy", _ls_inputs, _label_smoothing, params={"smoothing": 0.3}, variant="eps=0.3"),
    # The detached confidence is by design not part of the derivative, so finite differences disagree with it.
    Case("adaptive_label_smoothing", _ls_inputs, _adaptive, bad_shape=("target", (6, 1)), gradcheck=False),
    # Here the floor always wins (eps_i = 0.06 for every row), so the gradient is the full derivative.
    Case("adaptive_label_smoothing", _ls_inputs, _adaptive, params={"base_smoothing": 0.05, "min_smoothing": 0.06},
         variant="floor"),
]

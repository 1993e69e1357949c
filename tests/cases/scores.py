"""Cases for the extended losses on scores and logits: perceptron, multiclass_perceptron, crammer_singer_hinge,
sparsemax and poly1_cross_entropy against optax (in float64); categorical_focal and generalized_cross_entropy
against numpy references from their formulas (Keras does not install here). optax is imported where it is used:
the GPU checks load these cases without it."""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, log_softmax, reduce


def _optax(name: str, *args: Any, **kwargs: Any) -> np.ndarray:
    import jax
    import optax

    with jax.enable_x64(True):
        return np.asarray(getattr(optax.losses, name)(*args, **kwargs), np.float64)


def _signed(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    """Scores away from 0 (the perceptron's kink) and -1/+1 labels."""
    x = rng.choice([-1, 1], (5, 4)) * rng.uniform(0.2, 2.0, (5, 4))
    return {"input": x.astype(dtype), "target": rng.choice([-1.0, 1.0], (5, 4)).astype(dtype)}


def _scores(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    """Scores whose gaps are at least 0.1 (no ties at a max, no margin exactly met), and class indices."""
    x = rng.permuted(np.tile(np.arange(5) * 0.35, (6, 1)), axis=1) + rng.uniform(0, 0.05, (6, 5))
    return {"input": x.astype(dtype), "target": rng.integers(0, 5, 6)}


def _logits(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": floats(rng, dtype, 6, 4), "target": rng.integers(0, 4, 6)}


def _p_true(a: Arrays) -> np.ndarray:
    return np.exp(log_softmax(a["input"], axis=1)[np.arange(len(a["target"])), a["target"]])


def _focal(a: Arrays, p: Any, r: str) -> Any:
    alpha = np.asarray(p["alpha"] if p["alpha"] is not None else [0.25])
    a_y = alpha[a["target"]] if alpha.size > 1 else alpha[0]
    pt = _p_true(a)
    return reduce(-a_y * (1 - pt) ** p["gamma"] * np.log(pt), r)


def _onehot(a: Arrays) -> np.ndarray:
    return np.eye(a["input"].shape[1])[a["target"]]


CASES = [
    Case("perceptron", _signed, lambda a, p, r: reduce(_optax("perceptron_loss", a["input"], a["target"]), r),
         bad_shape=("target", (5, 3))),
    Case("multiclass_perceptron", _scores,
         lambda a, p, r: reduce(_optax("multiclass_perceptron_loss", a["input"], a["target"]), r),
         bad_shape=("target", (5,))),
    Case("crammer_singer_hinge", _scores,
         lambda a, p, r: reduce(_optax("multiclass_hinge_loss", a["input"], a["target"]), r),
         bad_shape=("target", (4,))),
    Case("sparsemax", _logits,
         lambda a, p, r: reduce(_optax("multiclass_sparsemax_loss", a["input"], a["target"]), r),
         bad_shape=("target", (5,)), gradcheck=False),  # its support changes: finite differences may cross it
    Case("poly1_cross_entropy", _logits,
         lambda a, p, r: reduce(_optax("poly_loss_cross_entropy", a["input"], _onehot(a), epsilon=p["epsilon"]), r),
         bad_shape=("target", (5,))),
    Case("poly1", _logits,
         lambda a, p, r: reduce(_optax("poly_loss_cross_entropy", a["input"], _onehot(a), epsilon=p["epsilon"]), r),
         params={"epsilon": -0.5}, variant="epsilon=-0.5"),
    Case("categorical_focal", _logits, _focal, bad_shape=("target", (5,))),
    Case("CategoricalFocalCrossentropy", _logits, _focal, params={"alpha": [0.1, 0.2, 0.3, 0.4], "gamma": 1.0},
         variant="per-class alpha, gamma=1"),
    Case("generalized_cross_entropy", _logits, lambda a, p, r: reduce((1 - _p_true(a) ** p["q"]) / p["q"], r),
         bad_shape=("target", (5,))),
    Case("gce", _logits, lambda a, p, r: reduce((1 - _p_true(a) ** p["q"]) / p["q"], r), params={"q": 1.0},
         variant="q=1"),
]

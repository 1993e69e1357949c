"""Cases for the first five losses: mse, mae, huber, cross_entropy, bce_with_logits (numpy oracles)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, log_softmax, reduce


def _pair(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    # |input - target| stays away from 0 and from 1 (huber's default delta) so gradcheck sees no kink.
    x = floats(rng, dtype, 6, 4)
    gap = rng.choice([-1, 1], size=x.shape) * rng.uniform(0.1, 0.9, size=x.shape)
    gap[::2] *= 2.5  # half the gaps lie beyond delta=1 (but not near it)
    return {"input": x, "target": (x + gap).astype(dtype)}


def _mse(a: Arrays, p: Any, r: str) -> Any:
    return reduce((a["input"] - a["target"]) ** 2, r)


def _mae(a: Arrays, p: Any, r: str) -> Any:
    return reduce(np.abs(a["input"] - a["target"]), r)


def _huber(a: Arrays, p: Any, r: str) -> Any:
    d = p.get("delta", 1.0)
    e = np.abs(a["input"] - a["target"])
    return reduce(np.where(e <= d, 0.5 * e**2, d * (e - 0.5 * d)), r)


def _ce_inputs(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": floats(rng, dtype, 7, 5), "target": rng.integers(0, 5, 7),
            "weight": rng.uniform(0.5, 2.0, 5).astype(dtype)}


def _ce(a: Arrays, p: Any, r: str) -> Any:
    logp = log_softmax(a["input"], axis=1)
    y, w = a["target"], a["weight"]
    eps, c = p.get("label_smoothing", 0.0), logp.shape[1]
    nll = -logp[np.arange(len(y)), y] * w[y]
    smooth = -(logp * w).sum(axis=1)  # torch weights the uniform part per class as well
    losses = (1 - eps) * nll + eps / c * smooth
    return losses.sum() / w[y].sum() if r == "mean" else reduce(losses, r)


def _bce_inputs(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": floats(rng, dtype, 6, 3, low=-3, high=3), "target": rng.uniform(0, 1, (6, 3)).astype(dtype),
            "pos_weight": rng.uniform(0.5, 2.0, 3).astype(dtype)}


def _bce(a: Arrays, p: Any, r: str) -> Any:
    x, t, pw = a["input"], a["target"], a["pos_weight"]
    log_sig, log_one_minus = -np.logaddexp(0, -x), -np.logaddexp(0, x)
    return reduce(-(pw * t * log_sig + (1 - t) * log_one_minus), r)


def _probs(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    raw = rng.uniform(0.05, 1.0, (6, 4))
    return {"input": (raw / raw.sum(axis=1, keepdims=True)).astype(dtype), "target": rng.integers(0, 4, 6)}


def _keras_sparse_ce(a: Arrays, p: Any, r: str) -> Any:
    # keras.losses.sparse_categorical_crossentropy(y, p): normalize, clip to [1e-7, 1 - 1e-7], -log p_y
    probs = a["input"] / a["input"].sum(axis=1, keepdims=True)
    logp = np.log(np.clip(probs, 1e-7, 1 - 1e-7))
    return reduce(-logp[np.arange(len(a["target"])), a["target"]], r)


CASES = [
    Case("mse", _pair, _mse, bad_shape=("target", (6, 5))),
    Case("mae", _pair, _mae, bad_shape=("target", (6,))),
    Case("huber", _pair, _huber, bad_shape=("target", (4, 6))),
    Case("huber", _pair, _huber, params={"delta": 0.5}, variant="delta=0.5", gradcheck=False),
    Case("cross_entropy", _ce_inputs, _ce, bad_shape=("target", (8,))),
    Case("cross_entropy", _ce_inputs, _ce, params={"label_smoothing": 0.2}, variant="label_smoothing=0.2",
         bad_shape=("weight", (4,))),
    Case("bce_with_logits", _bce_inputs, _bce, bad_shape=("pos_weight", (2,))),
    Case("sparse_categorical_crossentropy", _probs, _keras_sparse_ce, variant="keras preset: probabilities",
         bad_shape=("target", (5,))),
]

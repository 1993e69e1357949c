"""Cases for the multiclass family: nll, multi_margin, linear_cross_entropy (numpy oracles)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, log_softmax, reduce, softmax


def _weighted_mean(losses: np.ndarray, weights: np.ndarray, r: str) -> Any:
    return losses.sum() / weights.sum() if r == "mean" else reduce(losses, r)


# --------------------------------------------------------------------------------------------- nll

def _nll_inputs(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    target = rng.integers(0, 5, 7)
    target[3] = -100  # one ignored element
    return {"input": log_softmax(floats(rng, np.float64, 7, 5), axis=1).astype(dtype), "target": target,
            "weight": rng.uniform(0.5, 2.0, 5).astype(dtype)}


def _nll_spatial_inputs(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": log_softmax(floats(rng, np.float64, 2, 4, 3, 2), axis=1).astype(dtype),
            "target": rng.integers(0, 4, (2, 3, 2)), "weight": rng.uniform(0.5, 2.0, 4).astype(dtype)}


def _nll_unbatched_inputs(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": log_softmax(floats(rng, np.float64, 6), axis=0).astype(dtype), "target": np.array(4)}


def _nll(a: Arrays, p: Any, r: str) -> Any:
    x, y = a["input"], a["target"]
    if x.ndim == 1:
        x, y = x[None], y[None]
    c = x.shape[1]
    w = a.get("weight", np.ones(c))
    moved = np.moveaxis(x, 1, -1)  # (N, d..., C)
    keep = y != p["ignore_index"]
    safe = np.where(keep, y, 0)
    picked = np.take_along_axis(moved, safe[..., None], axis=-1)[..., 0]
    wy = np.where(keep, w[safe], 0.0)
    losses = -picked * wy
    if a["input"].ndim == 1:
        losses, wy = losses[0], wy[0]
    return _weighted_mean(losses, wy, r)


# --------------------------------------------------------------------------------------- multi margin

def _away_from_kinks(rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...], margin: float) -> Arrays:
    """Scores whose margin violations margin - x_y + x_c all stay at least 0.05 away from 0."""
    while True:
        x = floats(rng, dtype, *shape)
        y = rng.integers(0, shape[-1], shape[:-1])
        x2 = x.reshape(-1, shape[-1]).astype(np.float64)
        y2 = np.asarray(y).reshape(-1)
        gaps = margin - x2[np.arange(len(y2)), y2][:, None] + x2
        gaps[np.arange(len(y2)), y2] = 1.0
        if np.abs(gaps).min() > 0.05:
            return {"input": x, "target": y}


def _mm_inputs(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return _away_from_kinks(rng, dtype, (6, 4), 1.0)


def _mm_weighted_inputs(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    out = _away_from_kinks(rng, dtype, (6, 4), 1.0)
    out["weight"] = rng.uniform(0.5, 2.0, 4).astype(dtype)
    return out


def _mm_margin_inputs(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return _away_from_kinks(rng, dtype, (6, 4), 0.5)


def _multi_margin(a: Arrays, p: Any, r: str) -> Any:
    x, y = a["input"], a["target"]
    single = x.ndim == 1
    if single:
        x, y = x[None], np.asarray(y)[None]
    n, c = x.shape
    w = a.get("weight", np.ones(c))
    viol = np.maximum(0.0, p["margin"] - x[np.arange(n), y][:, None] + x) ** p["p"]
    viol[np.arange(n), y] = 0.0
    losses = w[y] * viol.sum(axis=1) / c
    return reduce(losses[0] if single else losses, r)


# ------------------------------------------------------------------------------- linear cross-entropy

def _lce_inputs(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": floats(rng, dtype, 5, 4), "linear_weight": floats(rng, dtype, 3, 4, low=-1, high=1),
            "target": rng.integers(0, 3, 5), "linear_bias": floats(rng, dtype, 3, low=-1, high=1),
            "weight": rng.uniform(0.5, 2.0, 3).astype(dtype)}


def _lce_prob_inputs(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": floats(rng, dtype, 5, 4), "linear_weight": floats(rng, dtype, 3, 4, low=-1, high=1),
            "target": softmax(floats(rng, np.float64, 5, 3), axis=1).astype(dtype)}


def _lce_kdim_inputs(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": floats(rng, dtype, 4, 3), "linear_weight": floats(rng, dtype, 5, 2, 3, low=-1, high=1),
            "target": rng.integers(0, 5, (4, 2)), "linear_bias": floats(rng, dtype, 5, 2, low=-1, high=1)}


def _linear_ce(a: Arrays, p: Any, r: str) -> Any:
    x, wl, t = a["input"], a["linear_weight"], a["target"]
    logits = np.einsum("ni,c...i->nc...", x, wl)
    if "linear_bias" in a:
        logits = logits + a["linear_bias"][None]
    c = wl.shape[0]
    w = a.get("weight", np.ones(c))
    wshape = (1, c) + (1,) * (logits.ndim - 2)
    logp = log_softmax(logits, axis=1)
    eps = p["label_smoothing"]
    smooth = -(logp * w.reshape(wshape)).sum(axis=1)
    if t.dtype.kind == "f":
        return reduce((1 - eps) * -(t * logp * w.reshape(wshape)).sum(axis=1) + eps / c * smooth, r)
    picked = np.take_along_axis(logp, t[:, None], axis=1)[:, 0]
    losses = (1 - eps) * -picked * w[t] + eps / c * smooth
    return _weighted_mean(losses, w[t], r)


CASES = [
    Case("nll", _nll_inputs, _nll, bad_shape=("target", (8,))),
    Case("nll", _nll_spatial_inputs, _nll, variant="spatial", bad_shape=("weight", (3,))),
    Case("nll", _nll_unbatched_inputs, _nll, variant="unbatched", bad_shape=("target", (1,))),
    Case("multi_margin", _mm_inputs, _multi_margin, bad_shape=("target", (6, 4))),
    Case("multi_margin", _mm_weighted_inputs, _multi_margin, params={"p": 2}, variant="p=2,weight",
         bad_shape=("weight", (5,))),
    Case("categorical_hinge", _mm_margin_inputs, _multi_margin, params={"margin": 0.5}, variant="margin=0.5"),
    Case("linear_cross_entropy", _lce_inputs, _linear_ce, bad_shape=("linear_weight", (3, 5))),
    Case("linear_cross_entropy", _lce_inputs, _linear_ce, params={"label_smoothing": 0.2},
         variant="label_smoothing=0.2", bad_shape=("linear_bias", (4,))),
    Case("linear_cross_entropy", _lce_prob_inputs, _linear_ce, variant="probabilities", bad_shape=("target", (5, 4))),
    Case("LinearCrossEntropyLoss", _lce_kdim_inputs, _linear_ce, variant="k-dim", bad_shape=("target", (4, 3))),
]

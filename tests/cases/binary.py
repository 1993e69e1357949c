"""Cases for the binary and multi-label losses: bce, focal, multilabel_soft_margin and multilabel_margin
(numpy oracles written from the formulas)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, reduce


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


# ------------------------------------------------------------------------------------------------- bce


def _bce_make(weight: bool = False, logits: bool = False) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
        x = floats(rng, dtype, 5, 3, low=-3, high=3) if logits else floats(rng, dtype, 5, 3, low=0.05, high=0.95)
        out = {"input": x, "target": rng.uniform(0, 1, (5, 3)).astype(dtype)}
        if weight:
            out["weight"] = rng.uniform(0.2, 2.0, (5, 1)).astype(dtype)
        return out

    return make


def _bce(a: Arrays, p: Any, r: str) -> Any:
    x, t = a["input"], a["target"]
    if p["from_logits"]:
        log_p, log_q = _log_sigmoid(x), _log_sigmoid(-x)
    else:
        eps = p["epsilon"]
        x = np.clip(x, eps, 1 - eps)
        log_p, log_q = np.maximum(np.log(x), -100), np.maximum(np.log1p(-x), -100)
    loss = -(t * log_p + (1 - t) * log_q) * a.get("weight", 1.0)
    return reduce(loss, r)


# -------------------------------------------------------------------------------------------- focal


def _focal_make(soft: bool = False) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
        t = rng.uniform(0, 1, (6, 3)) if soft else rng.integers(0, 2, (6, 3))
        return {"input": floats(rng, dtype, 6, 3, low=-3, high=3), "target": t.astype(dtype)}

    return make


def _focal(a: Arrays, p: Any, r: str) -> Any:
    x, t = a["input"], a["target"]
    prob = 1 / (1 + np.exp(-x))
    ce = -(t * _log_sigmoid(x) + (1 - t) * _log_sigmoid(-x))
    p_t = prob * t + (1 - prob) * (1 - t)
    loss = (1 - p_t) ** p["gamma"] * ce
    if p["alpha"] is not None:
        loss = (p["alpha"] * t + (1 - p["alpha"]) * (1 - t)) * loss
    return reduce(loss, r)


# ------------------------------------------------------------------------------------- multi-label


def _mlsm_make(unbatched: bool = False) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
        shape = (4,) if unbatched else (5, 4)
        return {"input": floats(rng, dtype, *shape, low=-3, high=3),
                "target": rng.integers(0, 2, shape).astype(dtype),
                "weight": rng.uniform(0.5, 2.0, 4).astype(dtype)}

    return make


def _mlsm(a: Arrays, p: Any, r: str) -> Any:
    x, t, w = a["input"], a["target"], a["weight"]
    per_class = -(t * _log_sigmoid(x) + (1 - t) * _log_sigmoid(-x)) * w
    return reduce(per_class.mean(axis=-1), r)


def _mlm_make(unbatched: bool = False) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
        rows, c = 4, 5
        target = np.empty((rows, c), dtype=np.int64)
        for n in range(rows):
            k = int(rng.integers(0, c + 1))  # 0 .. C target classes (0: the loss is 0; C: also 0)
            chosen = rng.permutation(c)[:k]
            padding = rng.integers(-1, c, c - k)  # after the first -1, anything in [-1, C) is ignored
            if k < c:
                padding[0] = -1
            target[n] = np.concatenate([chosen, padding])
        target[0, :3] = [3, 0, -1]  # at least one row with targets and padding
        x = floats(rng, dtype, rows, c, low=-1.5, high=1.5)
        return {"input": x[0], "target": target[0]} if unbatched else {"input": x, "target": target}

    return make


def _mlm(a: Arrays, p: Any, r: str) -> Any:
    x, y = np.atleast_2d(a["input"]), np.atleast_2d(a["target"])
    c = x.shape[1]
    out = []
    for row, labels in zip(x, y, strict=True):
        targets: list[int] = []
        for label in labels:
            if label < 0:
                break
            targets.append(int(label))
        others = [i for i in range(c) if i not in targets]
        out.append(sum(max(0.0, 1 - (row[j] - row[i])) for j in targets for i in others) / c)
    losses = np.asarray(out)
    return reduce(losses if a["input"].ndim == 2 else losses[0], r)


CASES = [
    Case("bce", _bce_make(), _bce, bad_shape=("target", (5, 4))),
    Case("BCELoss", _bce_make(weight=True), _bce, variant="weight (N,1)", bad_shape=("weight", (3, 3))),
    Case("binary_crossentropy", _bce_make(), _bce, params={"epsilon": 1e-7}, variant="keras epsilon=1e-7"),
    Case("BinaryCrossentropy", _bce_make(logits=True), _bce, params={"from_logits": True}, variant="from_logits"),
    Case("focal", _focal_make(), _focal, bad_shape=("target", (6, 2))),
    Case("sigmoid_focal_loss", _focal_make(soft=True), _focal, params={"alpha": None, "gamma": 0.0},
         variant="alpha=none, gamma=0 (BCE), soft targets"),
    Case("focal", _focal_make(soft=True), _focal, params={"alpha": 0.75, "gamma": 0.5},
         variant="alpha=0.75, gamma=0.5, soft targets"),
    Case("multilabel_soft_margin", _mlsm_make(), _mlsm, bad_shape=("weight", (3,))),
    Case("MultiLabelSoftMarginLoss", _mlsm_make(unbatched=True), _mlsm, variant="unbatched (C,)",
         bad_shape=("target", (5,))),
    Case("multilabel_margin", _mlm_make(), _mlm, bad_shape=("target", (4, 4))),
    Case("MultiLabelMarginLoss", _mlm_make(unbatched=True), _mlm, variant="unbatched (C,)",
         bad_shape=("input", (1, 1, 5))),
]

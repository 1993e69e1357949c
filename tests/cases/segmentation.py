"""Cases for the segmentation family: dice (each activation) and combo (numpy oracles)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, reduce, softmax


def _maps(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": floats(rng, dtype, 2, 3, 4, 3, low=-3, high=3),
            "target": (rng.uniform(size=(2, 3, 4, 3)) > 0.5).astype(dtype)}


def _prob_maps(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": rng.uniform(0.05, 0.95, (2, 2, 5)).astype(dtype),
            "target": rng.uniform(0, 1, (2, 2, 5)).astype(dtype)}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _dice_nc(probs: np.ndarray, t: np.ndarray, smooth: float) -> np.ndarray:
    axes = tuple(range(2, probs.ndim))
    inter = (probs * t).sum(axis=axes)
    return 1 - (2 * inter + smooth) / (probs.sum(axis=axes) + t.sum(axis=axes) + smooth)


def _dice(a: Arrays, p: Any, r: str) -> Any:
    x = a["input"]
    probs = {"sigmoid": _sigmoid, "softmax": lambda v: softmax(v, axis=1), "none": lambda v: v}[p["activation"]](x)
    return reduce(_dice_nc(probs, a["target"], p["smooth"]), r)


def _combo(a: Arrays, p: Any, r: str) -> Any:
    x, t = a["input"], a["target"]
    bce = np.logaddexp(0, x) - t * x
    bce_nc = bce.mean(axis=tuple(range(2, x.ndim)))
    return reduce(p["dice_weight"] * _dice_nc(_sigmoid(x), t, p["smooth"]) + p["bce_weight"] * bce_nc, r)


CASES = [
    Case("dice", _maps, _dice, bad_shape=("target", (2, 3, 4, 4))),
    Case("dice", _maps, _dice, params={"activation": "softmax", "smooth": 1.0}, variant="softmax,smooth=1",
         bad_shape=("input", (2, 3))),
    Case("DiceLoss", _prob_maps, _dice, params={"activation": "none"}, variant="none,1-d spatial"),
    Case("combo", _maps, _combo, bad_shape=("target", (2, 3, 12))),
    Case("ComboLoss", _maps, _combo, params={"dice_weight": 0.3, "bce_weight": 1.2, "smooth": 0.5},
         variant="weights"),
]

"""Cases for the pairwise embedding losses: hinge_embedding, margin_ranking, cosine_embedding (numpy oracles
written from torch's documented formulas).

Inputs are drawn away from every kink (the hinge corners) so gradcheck sees smooth functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, reduce


def _signs(rng: np.random.Generator, n: int | tuple[int, ...]) -> np.ndarray:
    return rng.choice([-1, 1], size=n)


# ---------------------------------------------------------------------------------------------------- hinge_embedding


def _distances(rng: np.random.Generator, dtype: np.dtype, target_dtype: Any = None) -> Arrays:
    # Distances in three bands that avoid both margins used below (0.5 and 1.0).
    bands = np.array([[0.05, 0.4], [0.6, 0.9], [1.1, 2.0]])
    pick = bands[rng.integers(0, 3, (6, 4))]
    x = rng.uniform(pick[..., 0], pick[..., 1])
    y = _signs(rng, (6, 4))
    return {"input": x.astype(dtype), "target": y.astype(target_dtype or dtype)}


def _distances_int(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return _distances(rng, dtype, np.int64)


def _hinge_embedding(a: Arrays, p: Any, r: str) -> Any:
    x, y = a["input"], a["target"]
    return reduce(np.where(y == 1, x, np.maximum(0.0, p["margin"] - x)), r)


# ---------------------------------------------------------------------------------------------------- margin_ranking


def _ranking_pairs(margin: float, target_dtype: Any = None) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
        x1, x2, y = [], [], []
        while len(x1) < 8:
            a, b, s = rng.uniform(-2, 2), rng.uniform(-2, 2), rng.choice([-1, 1])
            if abs(-s * (a - b) + margin) > 0.1:  # away from the hinge's corner
                x1.append(a), x2.append(b), y.append(s)
        return {"input1": np.array(x1, dtype=dtype), "input2": np.array(x2, dtype=dtype),
                "target": np.array(y).astype(target_dtype or dtype)}

    return make


def _margin_ranking(a: Arrays, p: Any, r: str) -> Any:
    return reduce(np.maximum(0.0, -a["target"] * (a["input1"] - a["input2"]) + p["margin"]), r)


# ---------------------------------------------------------------------------------------------------- cosine_embedding


def _torch_cos(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cosine as CosineEmbeddingLoss computes it: 1e-12 added to each squared norm."""
    dot = (x * y).sum(-1)
    return dot / np.sqrt(((x * x).sum(-1) + 1e-12) * ((y * y).sum(-1) + 1e-12))


def _cosine_pairs(margin: float, target_dtype: Any = None) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
        x1, x2, y = [], [], []
        while len(x1) < 6:
            a, b, s = rng.uniform(-2, 2, 5), rng.uniform(-2, 2, 5), rng.choice([-1, 1])
            if abs(_torch_cos(a, b) - margin) > 0.05:
                x1.append(a), x2.append(b), y.append(s)
        return {"input1": np.array(x1, dtype=dtype), "input2": np.array(x2, dtype=dtype),
                "target": np.array(y).astype(target_dtype or dtype)}

    return make


def _cosine_embedding(a: Arrays, p: Any, r: str) -> Any:
    c = _torch_cos(a["input1"], a["input2"])
    return reduce(np.where(a["target"] == 1, 1 - c, np.maximum(0.0, c - p["margin"])), r)


CASES = [
    Case("hinge_embedding", _distances, _hinge_embedding, bad_shape=("target", (6, 5))),
    Case("HingeEmbeddingLoss", _distances_int, _hinge_embedding, params={"margin": 0.5},
         variant="margin=0.5,int-target", bad_shape=("target", (4, 6))),
    Case("margin_ranking", _ranking_pairs(0.0), _margin_ranking, bad_shape=("input2", (7,))),
    Case("MarginRankingLoss", _ranking_pairs(0.5, np.int64), _margin_ranking, params={"margin": 0.5},
         variant="margin=0.5,int-target", bad_shape=("target", (8, 1))),
    Case("cosine_embedding", _cosine_pairs(0.0), _cosine_embedding, bad_shape=("target", (5,))),
    Case("cosine_embedding", _cosine_pairs(0.3, np.int64), _cosine_embedding, params={"margin": 0.3},
         variant="margin=0.3,int-target", bad_shape=("input2", (6, 4))),
]

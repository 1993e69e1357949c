"""Cases for the margin/embedding family: hinge_embedding, margin_ranking, cosine_embedding, triplet_margin,
triplet_margin_with_distance (numpy oracles written from torch's documented formulas).

Inputs are drawn away from every kink (hinge corners, the swap's min) so gradcheck sees smooth functions.
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


# ---------------------------------------------------------------------------------------------------- triplets


def _lp(x: np.ndarray, y: np.ndarray, p: float, eps: float) -> np.ndarray:
    return (np.abs(x - y + eps) ** p).sum(-1) ** (1 / p)


def _cos_dist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 1 - (x * y).sum(-1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))


def _distance(params: Any) -> Any:
    if params.get("distance") == "cosine":
        return _cos_dist
    if "distance" in params:  # pairwise_l2 = nn.PairwiseDistance(): p=2, eps=1e-6
        return lambda x, y: _lp(x, y, 2.0, 1e-6)
    return lambda x, y: _lp(x, y, params["p"], params["eps"])


def _triplet_terms(a: Arrays, params: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = _distance(params)
    return d(a["anchor"], a["positive"]), d(a["anchor"], a["negative"]), d(a["positive"], a["negative"])


def _triplets(params: dict[str, Any], n: int = 5, dim: int = 4) -> Any:
    full = {"margin": 1.0, "p": 2.0, "eps": 1e-6, "swap": False, **params}

    def make(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
        rows: list[np.ndarray] = []
        while len(rows) < n:
            trio = rng.uniform(-1.5, 1.5, (3, dim))
            d_ap, d_an, d_pn = _triplet_terms({"anchor": trio[0], "positive": trio[1], "negative": trio[2]}, full)
            d_neg = min(d_an, d_pn) if full["swap"] else d_an
            if abs(d_ap - d_neg + full["margin"]) > 0.1 and (not full["swap"] or abs(d_an - d_pn) > 0.1):
                rows.append(trio)
        trios = np.stack(rows).astype(dtype)
        return {"anchor": trios[:, 0], "positive": trios[:, 1], "negative": trios[:, 2]}

    return make


def _triplet(a: Arrays, p: Any, r: str) -> Any:
    d_ap, d_an, d_pn = _triplet_terms(a, p)
    d_neg = np.minimum(d_an, d_pn) if p["swap"] else d_an
    return reduce(np.maximum(0.0, d_ap - d_neg + p["margin"]), r)


_WD = {"distance": "pairwise_l2"}

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
    Case("triplet_margin", _triplets({}), _triplet, bad_shape=("negative", (5, 3))),
    Case("triplet", _triplets({"p": 1.0, "margin": 0.5, "swap": True}), _triplet,
         params={"p": 1.0, "margin": 0.5, "swap": True}, variant="p=1,margin=0.5,swap",
         bad_shape=("anchor", (5, 4, 1))),
    Case("TripletMarginLoss", _triplets({"eps": 0.0, "p": 3.0}), _triplet, params={"eps": 0.0, "p": 3.0},
         variant="p=3,eps=0"),
    Case("triplet_margin_with_distance", _triplets(_WD), _triplet, bad_shape=("positive", (4, 4))),
    Case("triplet_margin_with_distance", _triplets({"distance": "cosine", "margin": 0.3}), _triplet,
         params={"distance": "cosine", "margin": 0.3}, variant="cosine,margin=0.3"),
    Case("TripletMarginWithDistanceLoss", _triplets({"distance": "cosine", "margin": 0.5, "swap": True}), _triplet,
         params={"distance": "cosine", "margin": 0.5, "swap": True}, variant="cosine,swap",
         bad_shape=("negative", (5, 4, 1))),
]


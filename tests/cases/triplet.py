"""Cases for the triplet losses: triplet_margin, triplet_margin_with_distance (numpy oracles written from
torch's documented formulas).

Inputs are drawn away from every kink (hinge corners, the swap's min) so gradcheck sees smooth functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, reduce


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

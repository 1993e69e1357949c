"""Cases for the ranking family: pairwise_hinge and lambda_rank.

The lambda_rank oracle takes |delta NDCG| literally: the NDCG@k of the score ranking minus the NDCG@k of
the same ranking with items i and j swapped, each NDCG computed from its definition (not lossd's
closed form). Masked items are simply dropped from their list.

Scores are a shuffled grid of step 0.37 plus a small jitter: no ties (ranks are stable under
finite differences) and no pair difference near the margins used (0.5, 1.0).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, reduce


def _lists(q: int, length: int, *, float_rel: bool = False, masked: bool = False, unbatched: bool = False) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
        scores = np.stack([rng.permutation(length) * 0.37 - 1.0 for _ in range(q)])
        scores += rng.uniform(-0.02, 0.02, scores.shape)
        rel = rng.integers(0, 4, (q, length))
        out: Arrays = {"scores": scores.astype(dtype), "relevance": rel.astype(dtype) if float_rel else rel}
        if masked:
            mask = np.ones((q, length), dtype=bool)
            mask[0, -2:] = False
            mask[-1, 0] = False
            out["mask"] = mask
        if unbatched:
            out = {k: v[0] for k, v in out.items()}
        return out

    return make


def _per_query(a: Arrays) -> tuple[list[tuple[np.ndarray, np.ndarray]], bool]:
    """The real items of each query as (scores, relevance), and whether the input was unbatched."""
    s, rel = a["scores"], a["relevance"]
    unbatched = s.ndim == 1
    if unbatched:
        s, rel = s[None], rel[None]
    mask = a.get("mask")
    mask = np.ones(s.shape, dtype=bool) if mask is None else (mask[None] if unbatched else mask)
    return [(s[i][mask[i]], rel[i][mask[i]].astype(np.float64)) for i in range(len(s))], unbatched


def _finish(values: list[float], unbatched: bool, r: str) -> Any:
    v = np.array(values)
    return reduce(v[0] if unbatched else v, r)


def _pairwise_hinge(a: Arrays, p: Any, r: str) -> Any:
    lists, unbatched = _per_query(a)
    out = []
    for s, rel in lists:
        terms = [np.maximum(0.0, p["margin"] - (s[i] - s[j]))  # (np.maximum propagates NaN, max() drops it)
                 for i in range(len(s)) for j in range(len(s)) if rel[i] > rel[j]]
        out.append(float(np.mean(terms)) if terms else 0.0)
    return _finish(out, unbatched, r)


def _ndcg(order: list[int], gains: np.ndarray, k: int | None) -> float:
    """NDCG@k of the items listed best first, by definition."""
    cut = len(order) if k is None else k
    dcg = sum(gains[item] / np.log2(2 + pos) for pos, item in enumerate(order) if pos < cut)
    ideal = sorted(gains, reverse=True)
    idcg = sum(g / np.log2(2 + pos) for pos, g in enumerate(ideal) if pos < cut)
    return dcg / idcg


def _lambda_rank(a: Arrays, p: Any, r: str) -> Any:
    lists, unbatched = _per_query(a)
    out = []
    for s, rel in lists:
        gains = 2.0**rel - 1 if p["gain"] == "exp2" else rel
        order = [int(i) for i in np.argsort(-s, kind="stable")]
        base = _ndcg(order, gains, p["k"])
        total = 0.0
        for i in range(len(s)):
            for j in range(len(s)):
                if rel[i] > rel[j]:
                    swapped = [j if x == i else i if x == j else x for x in order]
                    delta = abs(base - _ndcg(swapped, gains, p["k"]))
                    total += delta * np.logaddexp(0.0, -p["sigma"] * (s[i] - s[j]))
        out.append(total)
    return _finish(out, unbatched, r)


CASES = [
    Case("pairwise_hinge", _lists(3, 6), _pairwise_hinge, bad_shape=("relevance", (3, 5))),
    Case("rank_svm", _lists(2, 5, float_rel=True), _pairwise_hinge, params={"margin": 0.5},
         variant="margin=0.5,float-relevance", bad_shape=("scores", (2, 5, 1))),
    # bool masks cannot go through the half-precision test's int64 re-encoding of non-float roles
    Case("pairwise_hinge", _lists(3, 6, masked=True), _pairwise_hinge, variant="mask",
         bad_shape=("mask", (3, 5))),
    Case("pairwise_hinge", _lists(1, 7, unbatched=True), _pairwise_hinge, variant="unbatched"),
    Case("lambda_rank", _lists(3, 6), _lambda_rank, bad_shape=("relevance", (3, 5))),
    Case("LambdaRank", _lists(3, 6), _lambda_rank, params={"k": 3, "gain": "linear"}, variant="k=3,linear"),
    Case("lambda_rank", _lists(3, 6, masked=True), _lambda_rank, params={"k": 2, "sigma": 2.0},
         variant="mask,k=2,sigma=2", bad_shape=("mask", (6, 3))),
    Case("lambda_loss", _lists(1, 7, float_rel=True, unbatched=True), _lambda_rank, params={"sigma": 0.5},
         variant="unbatched,float-relevance,sigma=0.5"),
]

"""Cases for the metric-learning losses against pytorch-metric-learning (no miner; its default reducers unless a
loss's spec says otherwise), in float64. pml is imported where it is used: the GPU checks load these cases
without it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats


def _labelled(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"embeddings": floats(rng, dtype, 8, 4), "labels": np.array([0, 1, 0, 2, 1, 2, 0, 3])}


def _paired(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"embeddings": floats(rng, dtype, 8, 4), "labels": np.array([0, 1, 2, 0, 1, 3, 2, 3])}


def _classes(role: str) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
        return {"embeddings": floats(rng, dtype, 6, 4), role: floats(rng, dtype, 5, 4),
                "labels": rng.integers(0, 5, 6)}
    return make


def _pml(name: str, a: Arrays, *args: Any, weights: str | None = None, reducer: str | None = None,
         **kwargs: Any) -> float:
    import torch
    from pytorch_metric_learning import losses, reducers

    if reducer is not None:
        kwargs["reducer"] = getattr(reducers, reducer)()
    loss = getattr(losses, name)(*args, **kwargs)
    if weights == "W":
        loss.W.data = torch.from_numpy(a["class_weights"]).T.contiguous()
    elif weights == "proxies":
        loss.proxies.data = torch.from_numpy(a["proxies"]).clone()
    return float(loss(torch.from_numpy(a["embeddings"]), torch.from_numpy(a["labels"])).detach())


CASES = [
    Case("contrastive", _labelled, lambda a, p, r: _pml("ContrastiveLoss", a, pos_margin=p["pos_margin"],
                                                         neg_margin=p["neg_margin"], reducer="MeanReducer"),
         bad_shape=("labels", (7,))),
    Case("ContrastiveLoss", _labelled, lambda a, p, r: _pml("ContrastiveLoss", a, pos_margin=p["pos_margin"],
                                                             neg_margin=p["neg_margin"], reducer="MeanReducer"),
         params={"pos_margin": 0.2, "neg_margin": 1.5}, variant="margins 0.2, 1.5"),
    Case("batch_triplet", _labelled, lambda a, p, r: _pml("TripletMarginLoss", a, margin=p["margin"]),
         bad_shape=("labels", (9,)), gradcheck=False),  # AvgNonZero: the count of non-zero triplets jumps
    Case("multi_similarity", _labelled, lambda a, p, r: _pml("MultiSimilarityLoss", a, alpha=p["alpha"],
                                                              beta=p["beta"], base=p["base"]),
         bad_shape=("labels", (7,))),
    Case("supcon", _labelled, lambda a, p, r: _pml("SupConLoss", a, temperature=p["temperature"]),
         bad_shape=("labels", (7,))),
    Case("npairs", _paired, lambda a, p, r: _pml("NPairsLoss", a), bad_shape=("labels", (7,))),
    Case("arcface", _classes("class_weights"),
         lambda a, p, r: _pml("ArcFaceLoss", a, 5, 4, margin=math.degrees(p["margin"]), scale=p["scale"],
                              weights="W"), reductions=("mean",), bad_shape=("class_weights", (5, 3))),
    Case("cosface", _classes("class_weights"),
         lambda a, p, r: _pml("CosFaceLoss", a, 5, 4, margin=p["margin"], scale=p["scale"], weights="W"),
         reductions=("mean",), bad_shape=("class_weights", (5, 3))),
    Case("proxy_anchor", _classes("proxies"),
         lambda a, p, r: _pml("ProxyAnchorLoss", a, 5, 4, margin=p["margin"], alpha=p["alpha"], weights="proxies"),
         bad_shape=("proxies", (5, 3))),
]

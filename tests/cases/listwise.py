"""Cases for ranknet (against torch's binary_cross_entropy_with_logits over the expanded pairs), listnet (against
optax's ranking_softmax_loss given softmax(relevance), in float64) and listmle (a numpy Plackett-Luce reference).
optax is imported where it is used: the GPU checks load these cases without it."""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, reduce, softmax


def _lists(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"scores": floats(rng, dtype, 3, 5), "relevance": rng.integers(0, 4, (3, 5))}


def _masked(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    mask = np.ones((3, 5), bool)
    mask[0, 3:] = mask[2, 4] = False
    return {**_lists(rng, dtype), "mask": mask}


def _rows(a: Arrays) -> list[tuple[np.ndarray, np.ndarray]]:
    mask = a.get("mask", np.ones(a["scores"].shape, bool))
    return [(s[m], r[m]) for s, r, m in zip(a["scores"], a["relevance"], mask, strict=True)]


def _ranknet(a: Arrays, p: Any, r: str) -> Any:
    import torch
    import torch.nn.functional as F

    out = []
    for s, rel in _rows(a):
        i, j = np.nonzero(rel[:, None] > rel[None, :])
        if not len(i):
            out.append(0.0)
            continue
        logits = torch.from_numpy(p["sigma"] * (s[i] - s[j]))
        out.append(float(F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))))
    return reduce(np.array(out), r)


def _listnet(a: Arrays, p: Any, r: str) -> Any:
    import jax
    import optax

    out = []
    with jax.enable_x64(True):
        for s, rel in _rows(a):
            out.append(float(optax.losses.ranking_softmax_loss(s, softmax(rel.astype(np.float64)))))
    return reduce(np.array(out), r)


def _listmle(a: Arrays, p: Any, r: str) -> Any:
    out = []
    for s, rel in _rows(a):
        ordered = s[np.argsort(-rel, kind="stable")]
        suffix = np.array([np.log(np.exp(ordered[k:]).sum()) for k in range(len(ordered))])
        out.append(float((suffix - ordered).sum()))
    return reduce(np.array(out), r)


CASES = [
    Case("ranknet", _lists, _ranknet, bad_shape=("relevance", (3, 4))),
    Case("RankNet", _masked, _ranknet, params={"sigma": 2.0}, variant="masked, sigma=2"),
    Case("listnet", _lists, _listnet, bad_shape=("relevance", (3, 4))),
    Case("ListNet", _masked, _listnet, variant="masked"),
    Case("listmle", _lists, _listmle, bad_shape=("relevance", (2, 5))),
    Case("ListMLE", _masked, _listmle, variant="masked"),
]

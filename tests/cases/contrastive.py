"""Cases for the contrastive losses over labelled embeddings: nt_xent, circle.

The oracles are numpy, written from the definitions (loops over rows and pairs, log-sum-exp with
np.logaddexp.reduce), not from the vectorised masks lossd uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, reduce


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _lse(values: list[float]) -> float:
    return float(np.logaddexp.reduce(np.asarray(values, dtype=np.float64))) if values else -np.inf


# ---------------------------------------------------------------------------------------------------- nt_xent


def _labelled(labels: list[int], dim: int = 4) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
        return {"embeddings": floats(rng, dtype, len(labels), dim), "labels": np.asarray(labels, dtype=np.int64)}

    return make


def _nt_xent(a: Arrays, p: Any, r: str) -> Any:
    z, y = _unit(a["embeddings"]), a["labels"]
    s = z @ z.T / p["temperature"]
    out = []
    for i in range(len(y)):
        negatives = [s[i, k] for k in range(len(y)) if y[k] != y[i]]
        for j in range(len(y)):
            if j != i and y[j] == y[i]:
                out.append(_lse([s[i, j], *negatives]) - s[i, j])
    return reduce(np.array(out), r)


# ---------------------------------------------------------------------------------------------------- circle


def _circle(a: Arrays, p: Any, r: str) -> Any:
    z, y = _unit(a["embeddings"]), a["labels"]
    s = z @ z.T
    m, gamma = p["m"], p["gamma"]
    out = []
    for i in range(len(y)):
        sp = [s[i, j] for j in range(len(y)) if j != i and y[j] == y[i]]
        sn = [s[i, j] for j in range(len(y)) if y[j] != y[i]]
        if not sp or not sn:
            out.append(0.0)
            continue
        lp = _lse([-gamma * max(0.0, 1 + m - v) * (v - (1 - m)) for v in sp])
        ln = _lse([gamma * max(0.0, v + m) * (v - m) for v in sn])
        out.append(np.logaddexp(0.0, lp + ln))
    return reduce(np.array(out), r)


_LABELS = [0, 1, 0, 2, 1, 3, 0, 2]
_SIMCLR = [0, 1, 2, 3, 0, 1, 2, 3]  # two views of 4 samples: concat(z1, z2)

CASES = [
    Case("nt_xent", _labelled(_LABELS), _nt_xent, bad_shape=("labels", (7,))),
    Case("simclr", _labelled(_SIMCLR), _nt_xent, params={"temperature": 0.5}, variant="simclr-views,t=0.5",
         bad_shape=("embeddings", (8,))),
    # Circle's alpha weights are detached (as in the paper and pml), so its gradient is deliberately not the
    # derivative of its value: gradcheck cannot apply.
    Case("circle", _labelled(_LABELS), _circle, bad_shape=("labels", (8, 1)), gradcheck=False),
    Case("CircleLoss", _labelled(_LABELS, 6), _circle, params={"m": 0.25, "gamma": 256.0},
         variant="paper:m=0.25,gamma=256", gradcheck=False, rtol32=5e-6),
]

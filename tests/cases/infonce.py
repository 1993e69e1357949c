"""Cases for the InfoNCE losses: info_nce, moco_info_nce.

The oracles are numpy, written from the definitions (loops over rows, log-sum-exp with np.logaddexp.reduce),
not from the vectorised masks lossd uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, reduce
from cases.contrastive import _lse, _unit

# ---------------------------------------------------------------------------------------------------- info_nce


def _features(scale: float = 2.0, n: int = 6) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
        return {"features": floats(rng, dtype, n, 4, low=-scale, high=scale)}

    return make


def _info_nce(a: Arrays, p: Any, r: str) -> Any:
    f = a["features"]
    z = _unit(f) if p["normalize"] else f
    s = z @ z.T / p["temperature"]
    n = len(f)
    out = []
    for i in range(n):
        positives = sorted({(i - 1) % n, (i + 1) % n})
        pos = _lse([s[i, j] for j in positives])
        rest = _lse([s[i, k] for k in range(n) if k != i])
        denom = np.logaddexp(pos, rest) if p["denominator"] == "seed" else rest
        out.append(denom - pos)
    return reduce(np.array(out), r)


# ---------------------------------------------------------------------------------------------------- moco_info_nce


def _moco_inputs(scale: float = 2.0) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
        return {"query": floats(rng, dtype, 5, 4, low=-scale, high=scale),
                "key": floats(rng, dtype, 5, 4, low=-scale, high=scale),
                "queue": floats(rng, dtype, 7, 4, low=-scale, high=scale)}

    return make


def _moco(a: Arrays, p: Any, r: str) -> Any:
    q, k, u = (a[n] for n in ("query", "key", "queue"))
    if p["normalize"]:
        q, k, u = _unit(q), _unit(k), _unit(u)
    out = []
    for i in range(len(q)):
        logits = np.concatenate([[q[i] @ k[i]], u @ q[i]]) / p["temperature"]
        out.append(_lse(list(logits)) - logits[0])
    return reduce(np.array(out), r)


CASES = [
    Case("info_nce", _features(), _info_nce, bad_shape=("features", (6,))),
    Case("InfoNCELoss", _features(), _info_nce, params={"denominator": "seed"}, variant="seed-denominator",
         bad_shape=("features", (6, 4, 1))),
    Case("info_nce", _features(0.5, 5), _info_nce, params={"normalize": False, "temperature": 0.5},
         variant="raw-dot,temperature=0.5"),
    Case("info_nce", _features(n=3), _info_nce, params={"denominator": "seed", "temperature": 0.2},
         variant="seed,N=3"),
    Case("moco_info_nce", _moco_inputs(), _moco, bad_shape=("queue", (7, 3))),
    Case("MoCo", _moco_inputs(0.4), _moco, params={"normalize": False, "temperature": 0.2},
         variant="raw-dot,temperature=0.2", bad_shape=("key", (4, 4))),
]

"""Cases for js_div (against scipy's jensenshannon, squared) and the cosine losses (against optax). The oracles'
libraries are imported where they are used: the GPU checks load these cases without them."""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, reduce


def _distributions(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    p, q = rng.dirichlet(np.ones(5), 6), rng.dirichlet(np.ones(5), 6)
    return {"input": p.astype(dtype), "target": q.astype(dtype)}


def _js(a: Arrays, p: Any, r: str) -> Any:
    from scipy.spatial.distance import jensenshannon

    return reduce(np.array([jensenshannon(x, y) ** 2 for x, y in zip(a["input"], a["target"], strict=True)]), r)


def _vectors(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"x1": floats(rng, dtype, 6, 4), "x2": floats(rng, dtype, 6, 4)}


def _optax(name: str, a: Arrays) -> np.ndarray:
    """optax's loss in float64 (JAX computes in float32 unless asked)."""
    import jax
    import optax

    with jax.enable_x64(True):
        return np.asarray(getattr(optax.losses, name)(a["x1"], a["x2"]), np.float64)


def _cosine_similarity(a: Arrays, p: Any, r: str) -> Any:
    return reduce(-_optax("cosine_similarity", a), r)


def _cosine_distance(a: Arrays, p: Any, r: str) -> Any:
    return reduce(_optax("cosine_distance", a), r)


CASES = [
    Case("js_div", _distributions, _js, bad_shape=("target", (6, 4))),
    Case("cosine_similarity", _vectors, _cosine_similarity, bad_shape=("x2", (6, 3))),
    Case("cosine_distance", _vectors, _cosine_distance, bad_shape=("x2", (5, 4))),
]

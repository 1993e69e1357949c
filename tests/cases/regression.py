"""Cases for the regression losses added beside mse/mae/huber: smooth_l1 and log_cosh (numpy oracles written
from the formulas)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, reduce


def _gaps(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Signed gaps with |gap| in [0.1, 0.4] or [1.2, 2.0]: away from 0, 0.5 and 1 (every kink used below)."""
    small = rng.uniform(0.1, 0.4, size=shape)
    large = rng.uniform(1.2, 2.0, size=shape)
    return rng.choice([-1, 1], size=shape) * np.where(rng.random(shape) < 0.5, small, large)


def _pair(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    x = floats(rng, dtype, 5, 4)
    return {"input": x, "target": (x + _gaps(rng, x.shape)).astype(dtype)}


def _smooth_l1(a: Arrays, p: Any, r: str) -> Any:
    beta = p["beta"]
    e = np.abs(a["input"] - a["target"])
    loss = e if beta == 0 else np.where(e < beta, 0.5 * e**2 / beta, e - 0.5 * beta)
    return reduce(loss, r)


def _log_cosh(a: Arrays, p: Any, r: str) -> Any:
    return reduce(np.log(np.cosh(a["input"] - a["target"])), r)


CASES = [
    Case("smooth_l1", _pair, _smooth_l1, bad_shape=("target", (5, 3))),
    Case("SmoothL1Loss", _pair, _smooth_l1, params={"beta": 0.5}, variant="beta=0.5"),
    Case("smooth_l1", _pair, _smooth_l1, params={"beta": 0.0}, variant="beta=0 (L1)"),
    Case("log_cosh", _pair, _log_cosh, bad_shape=("target", (4, 5))),
]

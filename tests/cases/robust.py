"""Cases for the extended regression losses: msle and mape against scikit-learn (Keras' forms: mape in percent),
the four robust losses against kornia's (with reduction "none", then reduced like numpy)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, reduce


def _pair(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    x = floats(rng, dtype, 5, 4, low=-3, high=3)
    return {"input": x, "target": floats(rng, dtype, 5, 4, low=-3, high=3)}


def _non_negative(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    """Predictions and targets in [0.1, 5): away from the clipping at 1e-7."""
    return {"input": floats(rng, dtype, 6, 3, low=0.1, high=5.0), "target": floats(rng, dtype, 6, 3, low=0.1, high=5.0)}


def _percentages(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    """Targets away from 0 (|t| >= 0.5) and predictions away from them (no kink of |t - x|)."""
    target = rng.choice([-1, 1], (6, 3)) * rng.uniform(0.5, 3.0, (6, 3))
    gap = rng.choice([-1, 1], (6, 3)) * rng.uniform(0.1, 1.0, (6, 3))
    return {"input": (target + gap).astype(dtype), "target": target.astype(dtype)}


# scikit-learn is imported where it is used: the GPU checks load these cases without it.
def _msle(a: Arrays, p: Any, r: str) -> Any:
    from sklearn.metrics import mean_squared_log_error

    if r == "mean":
        return mean_squared_log_error(a["target"].ravel(), a["input"].ravel())
    return reduce((np.log1p(a["input"]) - np.log1p(a["target"])) ** 2, r)


def _mape(a: Arrays, p: Any, r: str) -> Any:
    from sklearn.metrics import mean_absolute_percentage_error

    if r == "mean":
        return 100 * mean_absolute_percentage_error(a["target"].ravel(), a["input"].ravel())
    return reduce(100 * np.abs(a["target"] - a["input"]) / np.abs(a["target"]), r)


def _kornia(name: str) -> Any:
    def oracle(a: Arrays, p: Any, r: str) -> Any:
        import kornia
        import torch

        loss = getattr(kornia.losses, name)(torch.from_numpy(a["input"]), torch.from_numpy(a["target"]),
                                            reduction="none")
        return reduce(loss.numpy(), r)
    return oracle


CASES = [
    Case("msle", _non_negative, _msle, bad_shape=("target", (6, 4))),
    Case("MeanSquaredLogarithmicError", _non_negative, _msle, variant="keras name"),
    Case("mape", _percentages, _mape, bad_shape=("target", (6, 2))),
    Case("charbonnier", _pair, _kornia("charbonnier_loss"), bad_shape=("target", (5, 3))),
    Case("cauchy", _pair, _kornia("cauchy_loss"), bad_shape=("target", (5, 3))),
    Case("geman_mcclure", _pair, _kornia("geman_mcclure_loss"), bad_shape=("target", (5, 3))),
    Case("welsch_loss", _pair, _kornia("welsch_loss"), variant="kornia name", bad_shape=("target", (5, 3))),
]

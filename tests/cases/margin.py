"""Cases for the binary margin losses: hinge, squared_hinge, exponential and soft_margin (numpy oracles
written from the formulas)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, reduce


def _margin_make(zero_one: bool = False, margin: float = 1.0) -> Any:
    """Scores x with y*x away from 0 and from the margin (the hinge kink)."""

    def make(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
        y = rng.choice([-1.0, 1.0], size=(6, 3))
        m = np.where(rng.random((6, 3)) < 0.5, rng.uniform(-1.5, margin - 0.1, (6, 3)),
                     rng.uniform(margin + 0.1, margin + 1.5, (6, 3)))
        target = (y + 1) / 2 if zero_one else y
        return {"input": (m * y).astype(dtype), "target": target.astype(dtype)}

    return make


def _signs(t: np.ndarray) -> np.ndarray:
    return 2 * t - 1 if np.isin(t, (0.0, 1.0)).all() else t  # Keras' rule for 0/1 labels


def _hinge(a: Arrays, p: Any, r: str) -> Any:
    return reduce(np.maximum(0.0, p["margin"] - _signs(a["target"]) * a["input"]), r)


def _squared_hinge(a: Arrays, p: Any, r: str) -> Any:
    return reduce(np.maximum(0.0, p["margin"] - _signs(a["target"]) * a["input"]) ** 2, r)


def _exponential(a: Arrays, p: Any, r: str) -> Any:
    return reduce(np.exp(-a["target"] * a["input"]), r)


def _soft_margin(a: Arrays, p: Any, r: str) -> Any:
    return reduce(np.logaddexp(0.0, -a["target"] * a["input"]), r)


CASES = [
    Case("hinge", _margin_make(), _hinge, bad_shape=("target", (6,))),
    Case("Hinge", _margin_make(zero_one=True), _hinge, variant="0/1 labels"),
    Case("hinge_loss", _margin_make(margin=0.5), _hinge, params={"margin": 0.5}, variant="margin=0.5"),
    Case("squared_hinge", _margin_make(), _squared_hinge, bad_shape=("target", (3, 6))),
    Case("SquaredHinge", _margin_make(zero_one=True, margin=2.0), _squared_hinge, params={"margin": 2.0},
         variant="0/1 labels, margin=2"),
    Case("exponential", _margin_make(), _exponential, bad_shape=("target", (6, 2))),
    Case("soft_margin", _margin_make(), _soft_margin, bad_shape=("target", (4, 6))),
]

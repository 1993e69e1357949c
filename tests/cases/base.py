"""The catalog-wide test table: one :class:`Case` per loss (or per notable parameter variant).

A case says how to make valid inputs and how an independent oracle computes the answer; the
generic tests in ``test_catalog.py`` derive everything else (gradients, refusals, half precision,
CUDA) from it and from the loss's spec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray]
# make(rng, float_dtype) -> valid inputs: float roles in float_dtype, integer roles as int64
MakeFn = Callable[[np.random.Generator, np.dtype], Arrays]
# oracle(arrays with floats upcast to float64, params, reduction) -> the expected loss (float or array)
OracleFn = Callable[[Arrays, Mapping[str, Any], str], Any]


@dataclass(frozen=True)
class Case:
    """One loss, one parameter setting: inputs, an oracle, and what must be refused."""

    loss: str  # canonical name or an alias (an alias with a preset is tested with that preset)
    make: MakeFn
    oracle: OracleFn
    params: Mapping[str, Any] = field(default_factory=dict)
    variant: str = ""
    # (role, shape) that the loss must refuse with INVALID_ARGUMENT on inputs[role]
    bad_shape: tuple[str, tuple[int, ...]] | None = None
    reductions: tuple[str, ...] | None = None  # default: every reduction the spec offers
    rtol32: float = 1.3e-6
    atol32: float = 1e-5
    gradcheck: bool = True  # False only where the loss is piecewise and finite differences cross a kink
    half: bool = True  # False where float16 inputs overflow (say why in `variant` or a comment)

    @property
    def id(self) -> str:
        """Test id: loss name, plus the variant when there is one."""
        return f"{self.loss}[{self.variant}]" if self.variant else self.loss


def reduce(values: np.ndarray, reduction: str) -> Any:
    """numpy mean / sum / none, the way torch reduces elementwise losses."""
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def floats(rng: np.random.Generator, dtype: np.dtype, *shape: int, low: float = -2.0, high: float = 2.0) -> np.ndarray:
    """Uniform floats in [low, high) of the given dtype."""
    return rng.uniform(low, high, size=shape).astype(dtype)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable log-softmax."""
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))

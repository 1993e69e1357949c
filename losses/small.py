"""Small value-only requests on the CPU, in numpy: the same formulas without torch's per-operator dispatch.

For 1K elements torch spends more on dispatching each operator (about 3 us) than on the arithmetic; numpy's
ufuncs cost a fraction of that. A spec's ``small_value`` computes its loss from numpy arrays of one float dtype
(float32 or float64) holding at most :data:`SMALL_ELEMENTS` elements in all, as a numpy scalar (a reduction) or
array ("none") of that dtype; :func:`small_arrays` says whether a
request's tensors qualify. The engine uses it for every such request, so a small request gets the same answer
whichever front sent it (lossd.server.plans serves the same kernel without building torch tensors at all).
tests/test_small.py holds each kernel to its torch function.

A loss may have a small kernel only if its ``check`` reads shapes and dtypes alone, never values: a request
whose structure has passed validation once is not validated again (see lossd.server.plans).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

# Elements in all of a request's tensors. Numpy's kernels are single-threaded: past a few thousand elements torch's
# vectorized, multi-threaded ones catch up (MSE: numpy 2.6 us against torch's 14 at 1K, 18 against 30 at 64K).
SMALL_ELEMENTS = 16384
_FLOATS = (torch.float32, torch.float64)
NUMPY_FLOATS = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}


def small_arrays(tensors: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray] | None:
    """Numpy views of ``tensors`` when they qualify for a small kernel (CPU, one float dtype of float32 or
    float64, contiguous, 1 to :data:`SMALL_ELEMENTS` elements in all), else None."""
    total = 0
    dtype = None
    for t in tensors.values():
        if t.dtype not in _FLOATS or (dtype is not None and t.dtype != dtype) or not t.is_cpu \
                or not t.is_contiguous() or t.requires_grad:
            return None
        dtype = t.dtype
        total += t.numel()
    if not 0 < total <= SMALL_ELEMENTS:
        return None
    return {name: t.numpy() for name, t in tensors.items()}


def _reduce(values: np.ndarray, reduction: str) -> np.ndarray:
    """``values`` summed, averaged (pairwise summation, as numpy's sum) or kept, in their dtype."""
    if reduction == "none":
        return values
    total = values.sum(dtype=values.dtype)
    return total / values.dtype.type(values.size) if reduction == "mean" else total


def mse(arrays: Mapping[str, np.ndarray], params: Mapping[str, Any], reduction: str) -> np.ndarray:
    """``(input - target)^2``, reduced; input and target of one shape (*). A dot product for the reductions:
    no temporary for the squares."""
    x = arrays["input"]
    diff = x - arrays["target"]
    if reduction == "none":
        return diff * diff
    flat = diff if diff.ndim == 1 else diff.reshape(-1)
    total = np.dot(flat, flat)
    return total / x.dtype.type(x.size) if reduction == "mean" else total


def mae(arrays: Mapping[str, np.ndarray], params: Mapping[str, Any], reduction: str) -> np.ndarray:
    """``|input - target|``, reduced; input and target of one shape (*)."""
    x = arrays["input"]
    diff = x - arrays["target"]
    return _reduce(np.abs(diff), reduction)


def huber(arrays: Mapping[str, np.ndarray], params: Mapping[str, Any], reduction: str) -> np.ndarray:
    """Huber with threshold ``delta``, written as ``c * (a - c / 2)`` with ``a = |e|`` and ``c = min(a, delta)``:
    ``e^2 / 2`` up to delta, ``delta * (a - delta / 2)`` beyond; input and target of one shape (*)."""
    return _reduce(_huber_terms(arrays, params["delta"]), reduction)


def smooth_l1(arrays: Mapping[str, np.ndarray], params: Mapping[str, Any], reduction: str) -> np.ndarray:
    """Smooth L1 with threshold ``beta``: huber(delta=beta) / beta, and the plain L1 for beta = 0."""
    beta = params["beta"]
    if beta == 0:
        return mae(arrays, params, reduction)
    terms = _huber_terms(arrays, beta)
    terms /= terms.dtype.type(beta)
    return _reduce(terms, reduction)


def _huber_terms(arrays: Mapping[str, np.ndarray], delta: float) -> np.ndarray:
    x = arrays["input"]
    a = np.abs(x - arrays["target"])
    c = np.minimum(a, x.dtype.type(delta))
    # NaN must stay NaN: minimum propagates it, and a - c / 2 of a NaN is NaN.
    return c * (a - c * x.dtype.type(0.5))

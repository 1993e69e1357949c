"""Gradient-boosting objectives and metrics from lossd losses: the part XGBoost and LightGBM share.

A boosting library asks, once per round, for each row's gradient and Hessian diagonal of the training loss
with respect to its raw predictions (margins). Here one ``LossClient.hessian`` call carries every row: the
predictions as the loss's prediction role (``input``), the labels as its label role (``target``), any other
role from ``inputs=`` (arrays aligned with the rows, e.g. gaussian_nll's ``var``), the loss's parameters,
and the sample weights as ``grad_output``, so that the answer is that of sum_i w_i l_i (the libraries leave
a custom objective's weighting to it). Per-row losses are summed, not averaged, so that the libraries'
regularisation (lambda, min_child_weight) keeps its meaning.

The Hessian: ``hessian="auto"`` (the default) takes the exact diagonal, floored at ``min_hessian`` (the exact
one can be negative where a loss is not convex, binary focal for confidently wrong rows), except for losses
whose second derivative vanishes on whole regions (mae, quantile, huber beyond delta:
``LossInfo.hessian_vanishes``), where it takes a constant Hessian (the row's weight), as XGBoost and
LightGBM do for their own L1, Huber and quantile objectives: a zero Hessian there makes leaf values blow
up and training swing. ``"exact"`` and ``"constant"`` choose either always.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lossd.client import LossClient
from lossd.v1 import loss_service_pb2 as pb

HESSIANS = ("auto", "exact", "constant")
MIN_HESSIAN = 1e-6
_FLOATS = {pb.DTYPE_FLOAT32, pb.DTYPE_FLOAT64, pb.DTYPE_FLOAT16, pb.DTYPE_BFLOAT16}


class Objective:
    """The gradients and Hessian diagonals of a lossd loss for a boosting library's raw predictions."""

    def __init__(self, loss: str, client: LossClient, *, hessian: str = "auto", min_hessian: float = MIN_HESSIAN,
                 inputs: Mapping[str, Any] | None = None, **params: Any) -> None:
        if hessian not in HESSIANS:
            raise ValueError(f"hessian: {hessian!r}; expected one of {', '.join(HESSIANS)}")
        info = client.describe(loss)
        self.loss = info.name
        self._client = client
        self._params = params
        self._inputs = dict(inputs or {})
        self._min_hessian = float(min_hessian)
        if hessian == "auto":
            hessian = "constant" if info.hessian_vanishes or not info.hessian else "exact"
        if hessian == "exact" and not info.hessian:
            raise ValueError(f"{info.name} offers no Hessian diagonal (its rows are coupled); "
                             f"use hessian='constant'")
        self.hessian = hessian
        self.prediction_role = info.default_wrt[0]
        self.label_role = _label_role(info, self.prediction_role)
        label = next(r for r in info.inputs if r.name == self.label_role)
        self._float_labels = bool(_FLOATS & set(label.dtypes))
        self._index_labels = pb.DTYPE_INT64 in label.dtypes
        self._loss_ndim: int | None = None  # of the unreduced loss, learnt on the first weighted call

    def __call__(self, predictions: np.ndarray, labels: np.ndarray,
                 weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(gradient, Hessian diagonal) of sum_i w_i l_i with respect to ``predictions``, shaped like them."""
        preds = _floats(predictions)
        inputs = self._arrays(preds, labels)
        upstream = self._upstream(preds, inputs, weights)
        # Unweighted, "sum" has the same gradient and spares the reply the per-row losses (8 MB at 1M rows).
        common = {"inputs": inputs, "params": self._params, "wrt": [self.prediction_role],
                  "reduction": "none" if upstream is not None else "sum", "grad_output": upstream}
        if self.hessian == "constant":
            _, grads = self._client.gradient(self.loss, **common)
            hess = np.broadcast_to(_per_row(weights, preds), preds.shape).astype(preds.dtype)
        else:
            _, grads, diagonals = self._client.hessian(self.loss, **common)
            floor = (self._min_hessian * _per_row(weights, preds)).astype(preds.dtype)
            hess = np.maximum(diagonals[self.prediction_role], floor)
        # In the predictions' dtype (float32 for XGBoost, which would convert float64 itself).
        return np.asarray(grads[self.prediction_role], dtype=preds.dtype), hess

    def evaluate(self, predictions: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
        """The weighted mean of the per-row losses, sum_i w_i l_i / sum_i w_i (the metric's value)."""
        preds = _floats(predictions)
        values = np.asarray(self._client.compute(self.loss, inputs=self._arrays(preds, labels),
                                                 params=self._params, reduction="none"), dtype=np.float64)
        if weights is None or not len(weights):
            return float(values.mean())
        w = np.asarray(weights, dtype=np.float64).reshape((-1,) + (1,) * (values.ndim - 1))
        return float((values * w).sum() / (w.sum() * (values.size / len(values))))

    def _arrays(self, preds: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        y = np.asarray(labels)
        # Class indices where the role takes them and the predictions have a column per class (the libraries
        # hand labels over as floats); otherwise floats, where the role takes them.
        indices = self._index_labels and (not self._float_labels or preds.ndim == y.ndim + 1)
        y = y.astype(np.int64) if indices else y.astype(preds.dtype)
        return {**self._inputs, self.prediction_role: preds, self.label_role: y}

    def _upstream(self, preds: np.ndarray, inputs: dict[str, np.ndarray],
                  weights: np.ndarray | None) -> np.ndarray | None:
        """The weights shaped like the unreduced loss: (N,) per row, or broadcast over a row's columns where the
        loss is elementwise in 2-D predictions (learnt once, from the loss's shape)."""
        if weights is None or not len(weights):
            return None
        w = np.asarray(weights, dtype=preds.dtype)
        if preds.ndim == 1:
            return w
        if self._loss_ndim is None:
            value = self._client.compute(self.loss, inputs=inputs, params=self._params, reduction="none")
            self._loss_ndim = np.ndim(value)
        return np.broadcast_to(w.reshape((-1,) + (1,) * (self._loss_ndim - 1)), preds.shape[:self._loss_ndim]).copy()


def _floats(predictions: np.ndarray) -> np.ndarray:
    """The predictions as sent: float32 as XGBoost passes them (half the bytes of float64), float64 otherwise."""
    preds = np.asarray(predictions)
    return preds if preds.dtype in (np.float32, np.float64) else preds.astype(np.float64)


def _label_role(info: pb.LossInfo, prediction: str) -> str:
    """The role the library's labels fill: ``target`` where the loss has one, else its next required role."""
    names = [r.name for r in info.inputs]
    if "target" in names:
        return "target"
    for role in info.inputs:
        if role.required and role.name != prediction:
            return role.name
    raise ValueError(f"{info.name} has no role for the labels besides {prediction!r}")


def _per_row(weights: np.ndarray | None, preds: np.ndarray) -> np.ndarray:
    """Each row's weight (1 without weights), shaped to broadcast over ``preds``."""
    if weights is None or not len(weights):
        return np.ones((1,) * preds.ndim)
    return np.asarray(weights, dtype=np.float64).reshape((-1,) + (1,) * (preds.ndim - 1))

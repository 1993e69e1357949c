"""Softmax cross-entropy's relatives from the extended catalog: focal (softmax), generalized and poly-1
cross-entropy. Each takes logits ``input`` (N, C) or unbatched (C,) and class indices ``target`` (N,) or (), with
p = softmax(input) and p_y the true class's probability; "none" gives one value per row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossd.losses.errors import invalid
from lossd.losses.reduction import reduce_loss
from lossd.losses.scores import _check_multiclass, _rows
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, Tensors


def _log_p_true(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(input, dim=-1).gather(-1, target.long().unsqueeze(-1)).squeeze(-1)


def categorical_focal(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean",
                      alpha: list[float] | None = None, gamma: float = 2.0) -> torch.Tensor:
    """Softmax focal loss (Keras' categorical_focal_crossentropy on logits)::

        l_i = -alpha_y_i * (1 - p_y_i)^gamma * log p_y_i

    ``alpha``: one value for every class ([0.25], Keras' default) or one per class.
    Shapes: input (N, C) or (C,); target (N,) or () class indices; output () or (N,) with reduction "none".
    """
    log_p = _log_p_true(input, target)
    weights = torch.tensor(alpha if alpha is not None else [0.25], dtype=input.dtype, device=input.device)
    a = weights[target.long()] if weights.numel() > 1 else weights[0]
    return reduce_loss(-a * (1 - log_p.exp()).pow(gamma) * log_p, reduction)


def generalized_cross_entropy(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean",
                              q: float = 0.7) -> torch.Tensor:
    """Generalized cross-entropy (Zhang & Sabuncu, 2018), robust to noisy labels: ``l_i = (1 - p_y_i^q) / q``;
    q -> 0 gives cross-entropy, q = 1 the mean absolute error of the probabilities.

    Shapes: input (N, C) or (C,) logits; target (N,) or () class indices; output () or (N,) with "none".
    """
    return reduce_loss((1 - torch.exp(q * _log_p_true(input, target))) / q, reduction)


def poly1_cross_entropy(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean",
                        epsilon: float = 2.0) -> torch.Tensor:
    """Poly-1 cross-entropy (Leng et al., 2022): ``l_i = -log p_y_i + epsilon * (1 - p_y_i)``.

    Shapes: input (N, C) or (C,) logits; target (N,) or () class indices; output () or (N,) with "none".
    """
    log_p = _log_p_true(input, target)
    return reduce_loss(-log_p + epsilon * (1 - log_p.exp()), reduction)


def _check_focal(tensors: Tensors, params: Params) -> None:
    _check_multiclass(tensors, params)
    alpha, classes = params["alpha"], tensors["input"].shape[-1]
    if alpha is not None and len(alpha) not in (1, classes):
        raise invalid("params[alpha]", f"{len(alpha)} values; expected one (for every class) or {classes}, one per "
                      "class")


_LOGITS = Role("input", (Kind.FLOAT,), "(N, C) or unbatched (C,)", "logits", differentiable=True)
_CLASSES = Role("target", (Kind.INDEX,), "(N,) or () class indices in [0, C)", "the true class")

SPECS = (
    LossSpec(
        name="categorical_focal",
        hessian="rows",
        summary="Softmax focal loss: cross-entropy down-weighting well-classified rows by (1 - p_y)^gamma.",
        formula="l_i = -alpha_y * (1 - p_y)^gamma * log p_y, p = softmax(input_i)",
        fn=categorical_focal,
        roles=(_LOGITS, _CLASSES),
        check=_check_focal,
        unreduced_shape=_rows,
        params=(
            Param("alpha", ParamType.FLOAT_LIST, [0.25], "class weight: one value for every class, or one per "
                  "class (a single number counts as one for every class)", minimum=0.0, nullable=True),
            Param("gamma", ParamType.FLOAT, 2.0, "focusing exponent; 0 gives alpha-weighted cross-entropy",
                  minimum=0.0),
        ),
        aliases=("categorical_focal_crossentropy", "CategoricalFocalCrossentropy"),
        notes="Keras' categorical_focal_crossentropy with from_logits=True (and class indices, where Keras takes "
        "one-hot rows). Not kornia's focal_loss nor smp's multiclass FocalLoss, which weigh and average otherwise; "
        "'focal_loss' names the binary focal loss here.",
        category="multiclass",
    ),
    LossSpec(
        name="generalized_cross_entropy",
        hessian="rows",
        summary="Generalized cross-entropy: (1 - p_y^q)/q, between cross-entropy (q -> 0) and MAE (q = 1).",
        formula="l_i = (1 - p_y^q) / q, p = softmax(input_i)",
        fn=generalized_cross_entropy,
        roles=(_LOGITS, _CLASSES),
        check=_check_multiclass,
        unreduced_shape=_rows,
        params=(Param("q", ParamType.FLOAT, 0.7, "the exponent: q -> 0 is cross-entropy, 1 the MAE of probabilities",
                      minimum=0.0, maximum=1.0, exclusive_minimum=True),),
        aliases=("categorical_generalized_cross_entropy", "CategoricalGeneralizedCrossEntropy", "gce"),
        notes="On logits; Keras' categorical_generalized_cross_entropy takes probabilities (send "
        "log-probabilities: softmax of log p is p).",
        category="multiclass",
    ),
    LossSpec(
        name="poly1_cross_entropy",
        hessian="rows",
        summary="Poly-1 cross-entropy: cross-entropy plus epsilon * (1 - p_y).",
        formula="l_i = -log p_y + epsilon * (1 - p_y), p = softmax(input_i)",
        fn=poly1_cross_entropy,
        roles=(_LOGITS, _CLASSES),
        check=_check_multiclass,
        unreduced_shape=_rows,
        params=(Param("epsilon", ParamType.FLOAT, 2.0, "weight of the first polynomial term (optax's default 2)",
                      minimum=-1.0),),
        aliases=("poly_loss_cross_entropy", "poly1"),
        notes="optax's poly_loss_cross_entropy (with class indices, where optax takes one-hot rows).",
        category="multiclass",
    ),
)

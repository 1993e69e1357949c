"""Segmentation losses on (N, C, *spatial) maps: soft Dice (the tutorial's, per sample and channel) and
Combo (Dice + binary cross-entropy, both on logits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossd.losses import checks
from lossd.losses.errors import invalid
from lossd.losses.reduction import reduce_loss
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, Tensors

_MAP_RULE = "(N, C, d1, ..., dk), k >= 1"




def _activate(input: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "sigmoid":
        return torch.sigmoid(input)
    if activation == "softmax":
        return torch.softmax(input, dim=1)
    return input


def _dice_per_map(probs: torch.Tensor, target: torch.Tensor, smooth: float) -> torch.Tensor:
    dims = tuple(range(2, probs.dim()))
    intersection = (probs * target).sum(dim=dims)
    total = probs.sum(dim=dims) + target.sum(dim=dims)
    return 1.0 - (2.0 * intersection + smooth) / (total + smooth)


def dice(
    input: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    smooth: float = 1e-6,
    activation: str = "sigmoid",
) -> torch.Tensor:
    """Soft Dice loss per sample n and channel c, over the spatial dimensions::

        P = activation(input);  I_nc = sum P*T;  S_nc = sum P + sum T
        l_nc = 1 - (2 * I_nc + smooth) / (S_nc + smooth)

    ``activation`` sigmoid (the tutorial: input holds logits), softmax over C, or none (input holds
    probabilities). "mean" averages l over (n, c) (the tutorial's), "sum" adds, "none" keeps (N, C).
    Shapes: input (N, C, d1..dk) with k >= 1; target same as input; output () or (N, C) with "none".
    """
    return reduce_loss(_dice_per_map(_activate(input, activation), target, smooth), reduction)


def combo(
    input: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    dice_weight: float = 0.5,
    bce_weight: float = 0.5,
    smooth: float = 1e-6,
) -> torch.Tensor:
    """Combo loss: a weighted sum of sigmoid Dice and binary cross-entropy, both on logits, per (n, c)::

        l_nc = dice_weight * dice_nc + bce_weight * mean_spatial(bce_with_logits(input, target))_nc

    "mean" over (n, c) equals dice_weight * dice(mean) + bce_weight * BCEWithLogits(mean), the tutorial's
    ComboLoss; "sum" adds l over (n, c); "none" keeps (N, C).
    Shapes: input (N, C, d1..dk) with k >= 1 (logits); target same as input; output () or (N, C).
    """
    dims = tuple(range(2, input.dim()))
    dice_nc = _dice_per_map(torch.sigmoid(input), target, smooth)
    bce_nc = F.binary_cross_entropy_with_logits(input, target, reduction="none").mean(dim=dims)
    return reduce_loss(dice_weight * dice_nc + bce_weight * bce_nc, reduction)


def _check_map(tensors: Tensors, params: Params) -> None:
    x = tensors["input"]
    if x.dim() < 3:
        raise invalid("inputs[input]", f"shape {checks.shape_text(x.shape)} has no spatial dimension; expected "
                      f"{_MAP_RULE}")
    checks.same_shape(tensors, "target", "input")
    checks.in_range(tensors["target"], "target", 0.0, 1.0)
    if params.get("activation") == "none":
        checks.in_range(x, "input", 0.0, 1.0)


def _nc_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return tuple(tensors["input"].shape[:2])


_SMOOTH = Param("smooth", ParamType.FLOAT, 1e-6, "added to the numerator and the denominator of the Dice ratio",
                minimum=0.0)

SPECS = (
    LossSpec(
        name="dice",
        hessian="rows",
        summary="Soft Dice loss per sample and channel over the spatial dimensions (sigmoid on logits by default).",
        formula="l_nc = 1 - (2 * sum(P*T) + smooth) / (sum(P) + sum(T) + smooth), P = activation(input), sums "
        "over spatial dims",
        fn=dice,
        roles=(
            Role("input", (Kind.FLOAT,), _MAP_RULE, "logits (or probabilities with activation none)",
                 differentiable=True),
            Role("target", (Kind.FLOAT,), "same shape as input, values in [0, 1]", "(soft) masks per channel",
                 differentiable=True),
        ),
        check=_check_map,
        unreduced_shape=_nc_shape,
        params=(
            _SMOOTH,
            Param("activation", ParamType.STRING, "sigmoid", "applied to input first: sigmoid (logits, the "
                  "tutorial's), softmax over C, or none (input already in [0, 1])",
                  choices=("sigmoid", "softmax", "none")),
        ),
        aliases=("DiceLoss", "dice_loss"),
        notes="Aggregates per (sample, channel) then averages, as the tutorial does (smp aggregates over the batch "
        "per class, Keras over the whole tensor). The tutorial's docstring says probabilities but its code "
        "applies sigmoid: input holds logits. Not optax's binary_dice_loss (per example over C and space together, "
        "smooth counted twice).",
        category="segmentation",
    ),
    LossSpec(
        name="combo",
        hessian="rows",
        summary="Combo loss: weighted sum of sigmoid Dice and binary cross-entropy, both on logits.",
        formula="l_nc = dice_weight * dice_nc + bce_weight * mean_spatial(bce_with_logits)_nc",
        fn=combo,
        roles=(
            Role("input", (Kind.FLOAT,), _MAP_RULE, "logits", differentiable=True),
            Role("target", (Kind.FLOAT,), "same shape as input, values in [0, 1]", "(soft) masks per channel",
                 differentiable=True),
        ),
        check=_check_map,
        unreduced_shape=_nc_shape,
        params=(
            Param("dice_weight", ParamType.FLOAT, 0.5, "weight of the Dice term", minimum=0.0),
            Param("bce_weight", ParamType.FLOAT, 0.5, "weight of the binary cross-entropy term", minimum=0.0),
            _SMOOTH,
        ),
        aliases=("ComboLoss", "dice_bce", "DiceBCELoss"),
        notes="Both terms take logits, as in the tutorial. Not monai's DiceCELoss, which uses softmax "
        "cross-entropy for C > 1 channels.",
        category="segmentation",
    ),
)

"""Overlap losses of the extended catalog on (N, C, *spatial) maps, per sample n and class c, as dice: Tversky,
focal Tversky and Jaccard (soft IoU).

With P = activation(input) and T the target (same shape, in [0, 1]; or, with activation softmax, (N, *spatial)
class indices, one-hot encoded here), over the spatial dimensions: I = sum P*T, FP = sum P*(1 - T),
FN = sum (1 - P)*T. "mean" averages over (n, c), "sum" adds, "none" keeps (N, C).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossd.losses import checks
from lossd.losses.errors import invalid
from lossd.losses.reduction import reduce_loss
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, Tensors

_MAP_RULE = "(N, C, d1, ..., dk), k >= 1"


def _counts(input: torch.Tensor, target: torch.Tensor, activation: str
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(I, FP, FN) per (n, c)."""
    if activation == "sigmoid":
        p = torch.sigmoid(input)
    elif activation == "softmax":
        p = torch.softmax(input, dim=1)
    else:
        p = input
    if not target.is_floating_point():  # class indices (softmax): one-hot along C
        target = F.one_hot(target.long(), input.shape[1]).movedim(-1, 1).to(p.dtype)
    dims = tuple(range(2, p.dim()))
    intersection = (p * target).sum(dim=dims)
    return intersection, p.sum(dim=dims) - intersection, target.sum(dim=dims) - intersection


def _tversky_index(input: torch.Tensor, target: torch.Tensor, alpha: float, beta: float, smooth: float,
                   activation: str) -> torch.Tensor:
    i, fp, fn = _counts(input, target, activation)
    return (i + smooth) / (i + alpha * fp + beta * fn + smooth)


def tversky(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean", alpha: float = 0.5,
            beta: float = 0.5, smooth: float = 1e-5, activation: str = "sigmoid") -> torch.Tensor:
    """Tversky loss (Salehi et al., 2017), alpha weighing false positives and beta false negatives::

        l_nc = 1 - (I + smooth) / (I + alpha*FP + beta*FN + smooth)

    alpha = beta = 0.5 is the Dice loss. Shapes: input (N, C, d1..dk); target same shape, or (N, d1..dk) class
    indices with activation softmax; output () or (N, C) with reduction "none".
    """
    return reduce_loss(1 - _tversky_index(input, target, alpha, beta, smooth, activation), reduction)


def focal_tversky(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean", alpha: float = 0.5,
                  beta: float = 0.5, smooth: float = 1e-5, gamma: float = 0.75,
                  activation: str = "sigmoid") -> torch.Tensor:
    """Focal Tversky loss (Abraham & Khan, 2019): ``l_nc = (1 - TI_nc)^gamma``, the Tversky index TI as in
    :func:`tversky`, raised per (sample, class) and then averaged.

    Shapes: as :func:`tversky`.
    """
    return reduce_loss((1 - _tversky_index(input, target, alpha, beta, smooth, activation)).pow(gamma), reduction)


def jaccard(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean", smooth: float = 1e-5,
            activation: str = "sigmoid") -> torch.Tensor:
    """Soft Jaccard (IoU) loss: ``l_nc = 1 - (I + smooth) / (sum P + sum T - I + smooth)``.

    Shapes: as :func:`tversky`.
    """
    i, fp, fn = _counts(input, target, activation)
    return reduce_loss(1 - (i + smooth) / (i + fp + fn + smooth), reduction)


def _check(tensors: Tensors, params: Params) -> None:
    x, target = tensors["input"], tensors["target"]
    if x.dim() < 3:
        raise invalid("inputs[input]", f"shape {checks.shape_text(x.shape)} has no spatial dimension; expected "
                      f"{_MAP_RULE}")
    if target.is_floating_point():
        checks.same_shape(tensors, "target", "input")
        checks.in_range(target, "target", 0.0, 1.0)
    else:
        if params["activation"] != "softmax":
            raise invalid("inputs[target]", "class indices need activation softmax; with sigmoid or none the "
                          "target is a map of the input's shape in [0, 1]")
        expected = (x.shape[0], *x.shape[2:])
        if tuple(target.shape) != expected:
            raise invalid("inputs[target]", f"shape {checks.shape_text(target.shape)} does not fit input "
                          f"{checks.shape_text(x.shape)}; expected {checks.shape_text(expected)} of class indices")
        checks.class_indices(target, "target", x.shape[1], None)
    if params["activation"] == "none":
        checks.in_range(x, "input", 0.0, 1.0)


def _nc_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return tuple(tensors["input"].shape[:2])


_INPUT = Role("input", (Kind.FLOAT,), _MAP_RULE, "logits (probabilities with activation none)", differentiable=True)
_TARGET = Role("target", (Kind.FLOAT, Kind.INDEX), "same shape as input, values in [0, 1]; or (N, d1, ..., dk) "
               "class indices with activation softmax", "ground-truth masks")
_ACTIVATION = Param("activation", ParamType.STRING, "sigmoid", "applied to input: sigmoid (logits, one map a "
                    "class), softmax over C, or none (probabilities)", choices=("sigmoid", "softmax", "none"))
_SMOOTH = Param("smooth", ParamType.FLOAT, 1e-5, "added to the numerator and the denominator", minimum=0.0)
_ALPHA = Param("alpha", ParamType.FLOAT, 0.5, "weight of false positives", minimum=0.0)
_BETA = Param("beta", ParamType.FLOAT, 0.5, "weight of false negatives (Salehi et al. recommend 0.7, alpha 0.3)",
              minimum=0.0)


def _spec(name: str, fn: object, summary: str, formula: str, params: tuple[Param, ...], aliases: tuple[str, ...],
          notes: str) -> LossSpec:
    return LossSpec(name=name, hessian="rows", summary=summary, formula=formula, fn=fn,  # type: ignore[arg-type]
                    roles=(_INPUT, _TARGET), check=_check, unreduced_shape=_nc_shape, params=params,
                    aliases=aliases, notes=notes, category="segmentation")


SPECS = (
    _spec("tversky", tversky, "Tversky loss: Dice with false positives and false negatives weighted apart.",
          "l_nc = 1 - (I + s)/(I + alpha*FP + beta*FN + s)", (_ALPHA, _BETA, _SMOOTH, _ACTIVATION),
          ("TverskyLoss", "tversky_loss"),
          "As monai's TverskyLoss (alpha weighs FP, beta FN), per (sample, class). Keras' tversky swaps the two "
          "(its alpha weighs FN); kornia's tversky_loss adds no smoothing to the numerator and averages over the "
          "classes present only."),
    _spec("focal_tversky", focal_tversky, "Focal Tversky loss: the Tversky loss raised to gamma.",
          "l_nc = (1 - TI_nc)^gamma, TI = (I + s)/(I + alpha*FP + beta*FN + s)",
          (_ALPHA, _BETA, _SMOOTH, Param("gamma", ParamType.FLOAT, 0.75, "the exponent (the paper's 1/gamma with "
                                         "gamma = 4/3)", minimum=0.0, exclusive_minimum=True), _ACTIVATION),
          ("FocalTverskyLoss",),
          "The exponent is taken per (sample, class), then averaged; smp raises the class mean to it instead (the "
          "two agree for one class)."),
    _spec("jaccard", jaccard, "Soft Jaccard (IoU) loss: 1 - intersection over union of the soft masks.",
          "l_nc = 1 - (I + s)/(sum P + sum T - I + s)", (Param("smooth", ParamType.FLOAT, 1e-5, "added to the "
                                                            "numerator and the denominator", minimum=0.0),
                                                      _ACTIVATION),
          ("JaccardLoss", "soft_iou", "iou_loss"),
          "Per (sample, class), as dice. monai's DiceLoss(jaccard=True) equals it with half the smoothing; smp's "
          "JaccardLoss aggregates over the batch per class."),
)

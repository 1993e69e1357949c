"""Binary margin losses: hinge, squared hinge, exponential and soft margin.

They take raw scores and labels in {-1, +1}; hinge and squared_hinge also take {0, 1} labels, read as
Keras does (0 -> -1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossd.losses import checks
from lossd.losses.binary import _input_shape
from lossd.losses.errors import invalid
from lossd.losses.hessian import zero_hessian
from lossd.losses.reduction import reduce_loss
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, Tensors


def _as_signs(target: torch.Tensor) -> torch.Tensor:
    """Labels as -1/+1: a target holding only 0s and 1s is mapped 0 -> -1 (Keras' rule); else unchanged."""
    if target.numel() and bool(((target == 0) | (target == 1)).all()):
        return 2.0 * target - 1.0
    return target


# ---------------------------------------------------------------------------------------------- functions


def hinge(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean", margin: float = 1.0) -> torch.Tensor:
    """Binary hinge loss on scores x and labels y in {-1, +1} (all-{0, 1} labels are read as 0 -> -1)::

        l_i = max(0, margin - y_i * x_i)

    Its (sub)gradient is -y_i where y_i * x_i < margin and 0 beyond. Not torch's HingeEmbeddingLoss.
    Shapes: input (*), target same as input; output () or (*) with reduction "none".

    >>> round(float(hinge(torch.tensor([0.8, -0.2, 1.5, -0.7]), torch.tensor([1.0, -1.0, 1.0, -1.0]))), 6)
    0.325
    """
    y = _as_signs(target)
    return reduce_loss(torch.clamp(margin - y * input, min=0.0), reduction)


def squared_hinge(
    input: torch.Tensor, target: torch.Tensor, reduction: str = "mean", margin: float = 1.0
) -> torch.Tensor:
    """Squared hinge loss on scores x and labels y in {-1, +1} (all-{0, 1} labels are read as 0 -> -1)::

        l_i = max(0, margin - y_i * x_i)^2

    Differentiable everywhere, unlike the hinge.
    Shapes: input (*), target same as input; output () or (*) with reduction "none".

    >>> round(float(squared_hinge(torch.tensor([0.8, -0.2, 1.5, -0.7]), torch.tensor([1.0, -1.0, 1.0, -1.0]))), 6)
    0.1925
    """
    y = _as_signs(target)
    return reduce_loss(torch.clamp(margin - y * input, min=0.0) ** 2, reduction)


def exponential(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Exponential (AdaBoost) loss on scores x and labels y in {-1, +1}::

        l_i = exp(-y_i * x_i)

    Very sensitive to confidently wrong predictions (and so to label noise).
    Shapes: input (*), target same as input; output () or (*) with reduction "none".

    >>> float(exponential(torch.tensor([0.0, 0.0]), torch.tensor([1.0, -1.0])))
    1.0
    """
    return reduce_loss(torch.exp(-target * input), reduction)


def soft_margin(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Soft margin (logistic) loss on scores x and labels y in {-1, +1} (torch's SoftMarginLoss)::

        l_i = log(1 + exp(-y_i * x_i))

    Shapes: input (*), target same as input; output () or (*) with reduction "none".

    >>> round(float(soft_margin(torch.tensor([0.0]), torch.tensor([1.0]))), 6)
    0.693147
    """
    return F.soft_margin_loss(input, target, reduction=reduction)


# ----------------------------------------------------------------------------------------------- checks


def _signs(target: torch.Tensor, allow_01: bool) -> None:
    """Labels must be -1/+1 (or, with ``allow_01``, all of them 0/1)."""
    if not target.numel():
        return
    nan = torch.isnan(target) if target.is_floating_point() else torch.zeros_like(target, dtype=torch.bool)
    pm1 = (target == 1) | (target == -1) | nan  # NaN flows through, as in torch
    if bool(pm1.all()):
        return
    if allow_01:
        if bool(((target == 0) | (target == 1) | nan).all()):
            return
        flat = (~pm1).reshape(-1).nonzero()[0].item()
        value = target.reshape(-1)[flat].item()
        if value == 0:
            raise invalid("inputs[target]", f"mixes -1 and 0 labels (0 at flat index {flat}); expected labels in "
                          "{-1, +1}, or all in {0, 1}")
        raise invalid("inputs[target]", f"value {value:g} at flat index {flat} is not a label; expected labels in "
                      "{-1, +1}, or all in {0, 1}")
    flat = (~pm1).reshape(-1).nonzero()[0].item()
    value = target.reshape(-1)[flat].item()
    hint = " (for 0/1 labels send 2*t - 1)" if value == 0 else ""
    raise invalid("inputs[target]", f"value {value:g} at flat index {flat} is not -1 or +1; expected labels in "
                  f"{{-1, +1}}{hint}")


def _check_hinge(tensors: Tensors, params: Params) -> None:
    checks.same_shape(tensors, "target", "input")
    _signs(tensors["target"], allow_01=True)


def _check_pm1(tensors: Tensors, params: Params) -> None:
    checks.same_shape(tensors, "target", "input")
    _signs(tensors["target"], allow_01=False)


# ------------------------------------------------------------------------------------------------ specs

_SCORES = Role("input", (Kind.FLOAT,), "any shape (*)", "raw scores (decision values)", differentiable=True)
_SIGNS = Role("target", (Kind.FLOAT,), "same shape as input, values in {-1, +1}", "labels -1 or +1")
_SIGNS_OR_01 = Role("target", (Kind.FLOAT,), "same shape as input, values in {-1, +1} (or all in {0, 1})",
                    "labels -1 or +1; a target holding only 0s and 1s is read as 0 -> -1")
_MARGIN = Param("margin", ParamType.FLOAT, 1.0, "required distance of y*x beyond 0 (the tutorial fixes 1)",
                minimum=0.0, exclusive_minimum=True)
_LABELS_01_NOTE = ("Accepts {0, 1} labels as Keras does (0 read as -1, when the target holds only 0s and 1s); "
                   "a target mixing -1 and 0 is refused.")

SPECS = (
    LossSpec(
        name="hinge",
        hessian_vanishes=True,
        hessian_fn=zero_hessian,
        hessian="elementwise",
        summary="Binary hinge loss (SVM): max(0, margin - y*x) on raw scores and -1/+1 labels.",
        formula="l_i = max(0, margin - y_i*x_i)",
        fn=hinge,
        roles=(_SCORES, _SIGNS_OR_01),
        check=_check_hinge,
        unreduced_shape=_input_shape,
        params=(_MARGIN,),
        aliases=("Hinge", "hinge_loss"),
        notes=("Not torch's HingeEmbeddingLoss (the tutorial's 'built-in', a loss on distances: hinge_embedding). "
        + _LABELS_01_NOTE
        + " Hessian diagonal: zero almost everywhere (the loss is piecewise linear); for gradient "
        "boosting, use a constant Hessian instead."),
        category="binary",
    ),
    LossSpec(
        name="squared_hinge",
        hessian_vanishes=True,
        hessian="elementwise",
        summary="Squared hinge loss: max(0, margin - y*x)^2, a smooth hinge.",
        formula="l_i = max(0, margin - y_i*x_i)^2",
        fn=squared_hinge,
        roles=(_SCORES, _SIGNS_OR_01),
        check=_check_hinge,
        unreduced_shape=_input_shape,
        params=(_MARGIN,),
        aliases=("SquaredHinge",),
        notes="Equals Keras' squared_hinge. " + _LABELS_01_NOTE,
        category="binary",
    ),
    LossSpec(
        name="exponential",
        hessian="elementwise",
        summary="Exponential (AdaBoost) loss: exp(-y*x) on raw scores and -1/+1 labels.",
        formula="l_i = exp(-y_i*x_i)",
        fn=exponential,
        roles=(_SCORES, _SIGNS),
        check=_check_pm1,
        unreduced_shape=_input_shape,
        aliases=("exp_loss", "adaboost"),
        notes="Labels must be -1/+1 (sklearn's private ExponentialLoss takes 0/1 labels instead).",
        category="binary",
    ),
    LossSpec(
        name="soft_margin",
        hessian="elementwise",
        summary="Soft margin (logistic) loss: log(1 + exp(-y*x)) on raw scores and -1/+1 labels.",
        formula="l_i = log(1 + exp(-y_i*x_i))",
        fn=soft_margin,
        roles=(_SCORES, _SIGNS),
        check=_check_pm1,
        unreduced_shape=_input_shape,
        aliases=("SoftMarginLoss", "soft_margin_loss"),
        notes="torch's SoftMarginLoss; labels must be -1/+1 (torch does not check).",
        category="binary",
    ),
)

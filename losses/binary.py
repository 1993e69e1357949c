"""Binary and multi-label classification losses: BCE on probabilities, sigmoid focal, multi-label soft margin
and multi-label margin.

bce takes probabilities (or logits with ``from_logits``); focal and multilabel_soft_margin take logits;
multilabel_margin takes scores and padded lists of class indices. The margin losses on -1/+1 labels (hinge,
squared_hinge, exponential, soft_margin) are in :mod:`lossd.losses.margin`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossd.losses import checks
from lossd.losses.errors import invalid
from lossd.losses.hessian import zero_hessian
from lossd.losses.reduction import reduce_loss
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, Tensors

_MULTILABEL_RULE = "(N, C) or unbatched (C,)"


# ---------------------------------------------------------------------------------------------- functions


def bce(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    epsilon: float = 0.0,
    from_logits: bool = False,
) -> torch.Tensor:
    """Binary cross-entropy between predicted probabilities p and targets t in [0, 1] (torch's BCELoss)::

        l_i = -w_i * (t_i * log(p_i) + (1 - t_i) * log(1 - p_i))

    With ``epsilon`` = 0 (default) each log is clamped at -100, as torch does; with ``epsilon`` > 0, p is
    first clipped to [epsilon, 1 - epsilon], as Keras does with 1e-7 (the gradient is 0 where p is clipped).
    With ``from_logits`` the input holds logits and the stable sigmoid form is used (``epsilon`` is ignored).
    Shapes: input (*), target same as input, weight broadcastable to input; output () or (*) with "none".

    >>> round(float(bce(torch.tensor([0.8, 0.4]), torch.tensor([1.0, 0.0]))), 6)
    0.366985
    """
    if from_logits:
        return F.binary_cross_entropy_with_logits(input, target, weight=weight, reduction=reduction)
    if epsilon > 0:
        input = input.clamp(epsilon, 1.0 - epsilon)
    return F.binary_cross_entropy(input, target, weight=weight, reduction=reduction)


def focal(
    input: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    alpha: float | None = 0.25,
    gamma: float = 2.0,
) -> torch.Tensor:
    """Sigmoid (binary) focal loss on logits x and targets t in [0, 1] (Lin et al. 2017)::

        p_i = sigmoid(x_i),  1 - p_t = p_i * (1 - t_i) + (1 - p_i) * t_i
        l_i = alpha_t * (1 - p_t)^gamma * BCE_with_logits(x_i, t_i),  alpha_t = alpha*t_i + (1 - alpha)*(1 - t_i)

    ``alpha`` None drops alpha_t (then gamma = 0 gives plain BCE; with alpha = 0.25 it gives an
    alpha-weighted BCE). Equals torchvision's sigmoid_focal_loss, optax's and kornia's.
    Shapes: input (*), target same as input; output () or (*) with reduction "none".

    >>> round(float(focal(torch.tensor([0.0]), torch.tensor([1.0]), alpha=None, gamma=0.0)), 6)
    0.693147
    """
    ce = F.binary_cross_entropy_with_logits(input, target, reduction="none")
    # 1 - p_t from sigmoid(x) and sigmoid(-x) separately: no cancellation in 1 - sigmoid(x) for large x.
    # The floor at the smallest normal number keeps the gradient of (1 - p_t)^gamma finite for gamma < 1.
    one_minus_pt = torch.sigmoid(input) * (1.0 - target) + torch.sigmoid(-input) * target
    one_minus_pt = one_minus_pt.clamp_min(torch.finfo(one_minus_pt.dtype).tiny)
    loss = ce if gamma == 0 else one_minus_pt**gamma * ce
    if alpha is not None:
        loss = (alpha * target + (1.0 - alpha) * (1.0 - target)) * loss
    return reduce_loss(loss, reduction)


def multilabel_soft_margin(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Multi-label soft margin loss (torch's): per sample, the class-mean of BCE-with-logits::

        l_n = -(1/C) * sum_c w_c * (t_nc * log(sigmoid(x_nc)) + (1 - t_nc) * log(sigmoid(-x_nc)))

    Shapes: input (N, C) or (C,), target same as input with values in [0, 1], weight (C,);
    output () or (N,) (() for an unbatched input) with reduction "none".

    >>> round(float(multilabel_soft_margin(torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 1.0]]))), 6)
    0.693147
    """
    return F.multilabel_soft_margin_loss(input, target, weight=weight, reduction=reduction)


def multilabel_margin(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Multi-label margin loss (torch's): hinge between every target class j and every non-target class i::

        l_n = sum_{j in T_n} sum_{i not in T_n} max(0, 1 - (x_nj - x_ni)) / C

    T_n is the leading run of non-negative class indices of ``target[n]``; the first -1 ends it and
    everything after it is padding.
    Shapes: input (N, C) or (C,) scores, target same shape (int64 indices in [-1, C));
    output () or (N,) (() for an unbatched input) with reduction "none".

    >>> round(float(multilabel_margin(torch.tensor([[0.1, 0.2, 0.4, 0.8]]), torch.tensor([[3, 0, -1, 1]]))), 4)
    0.85
    """
    return F.multilabel_margin_loss(input, target, reduction=reduction)


# ----------------------------------------------------------------------------------------------- checks


def _input_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return tuple(tensors["input"].shape)


def _per_sample_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    x = tensors["input"]
    return (x.shape[0],) if x.dim() == 2 else ()


def _check_weight(tensors: Tensors) -> None:
    weight = tensors.get("weight")
    if weight is not None:
        checks.broadcastable_to(weight, "weight", tensors["input"].shape, "input")
        checks.finite(weight, "weight")


def _check_bce(tensors: Tensors, params: Params) -> None:
    checks.same_shape(tensors, "target", "input")
    _check_weight(tensors)
    # torch's binary_cross_entropy raises on a NaN probability or target: refused here too (it says so).
    if not params["from_logits"]:
        checks.in_range(tensors["input"], "input", 0.0, 1.0, nan=False)
    checks.in_range(tensors["target"], "target", 0.0, 1.0, nan=False)


def _check_focal(tensors: Tensors, params: Params) -> None:
    checks.same_shape(tensors, "target", "input")
    checks.in_range(tensors["target"], "target", 0.0, 1.0)


def _check_multilabel_input(x: torch.Tensor) -> int:
    if x.dim() not in (1, 2):
        raise invalid("inputs[input]", f"shape {checks.shape_text(x.shape)}; expected {_MULTILABEL_RULE}")
    num_classes = x.shape[-1]
    if num_classes < 1:
        raise invalid("inputs[input]", f"shape {checks.shape_text(x.shape)} has no classes; expected C >= 1")
    return num_classes


def _check_multilabel_soft_margin(tensors: Tensors, params: Params) -> None:
    num_classes = _check_multilabel_input(tensors["input"])
    checks.same_shape(tensors, "target", "input")
    weight = tensors.get("weight")
    if weight is not None:
        if tuple(weight.shape) != (num_classes,):
            raise invalid("inputs[weight]", f"shape {checks.shape_text(weight.shape)}; expected ({num_classes},), "
                          "one weight per class")
        checks.non_negative(weight, "weight")
    checks.in_range(tensors["target"], "target", 0.0, 1.0)


def _check_multilabel_margin(tensors: Tensors, params: Params) -> None:
    num_classes = _check_multilabel_input(tensors["input"])
    checks.same_shape(tensors, "target", "input")
    target = tensors["target"].to(torch.int64)
    bad = (target < -1) | (target >= num_classes)
    if target.numel() and bool(bad.any()):
        flat = bad.reshape(-1).nonzero()[0].item()
        raise invalid("inputs[target]", f"class index {target.reshape(-1)[flat].item()} at flat index {flat} is "
                      f"outside [-1, {num_classes}); expected class indices, padded with -1 after the last one")


# ------------------------------------------------------------------------------------------------ specs

SPECS = (
    LossSpec(
        name="bce",
        hessian="elementwise",
        summary="Binary cross-entropy on probabilities in [0, 1] (or logits with from_logits).",
        formula="l_i = -w_i * (t_i*log(p_i) + (1 - t_i)*log(1 - p_i)), p clipped to [epsilon, 1 - epsilon] "
        "when epsilon > 0",
        fn=bce,
        roles=(
            Role("input", (Kind.FLOAT,), "any shape (*), values in [0, 1] (any value with from_logits)",
                 "predicted probabilities (logits with from_logits)", differentiable=True),
            Role("target", (Kind.FLOAT,), "same shape as input, values in [0, 1]", "labels or soft labels",
                 differentiable=True),
            Role("weight", (Kind.FLOAT,), "broadcastable to input", "per-element rescaling weight", required=False),
        ),
        check=_check_bce,
        unreduced_shape=_input_shape,
        params=(
            Param("epsilon", ParamType.FLOAT, 0.0, "clip probabilities to [epsilon, 1 - epsilon] before the log "
                  "(Keras uses 1e-7); 0 keeps torch's behaviour (each log clamped at -100)",
                  minimum=0.0, maximum=0.5, exclusive_maximum=True),
            Param("from_logits", ParamType.BOOL, False, "input holds logits (as Keras' from_logits=True); "
                  "epsilon is then ignored"),
        ),
        aliases=("BCELoss", "binary_cross_entropy", "binary_crossentropy", "BinaryCrossentropy"),
        notes="Takes probabilities, as torch's BCELoss and Keras' binary_crossentropy do (bce_with_logits takes "
        "logits). Keras clips p to [1e-7, 1 - 1e-7]: pass epsilon=1e-7 for its numbers at the extremes (the "
        "names binary_cross_entropy and binary_crossentropy are one name to lossd, so no preset). A NaN "
        "probability or target is refused, as torch's binary_cross_entropy raises on it (elsewhere NaN flows "
        "through).",
        category="binary",
    ),
    LossSpec(
        name="focal",
        hessian="elementwise",
        summary="Sigmoid focal loss: BCE on logits down-weighted by (1 - p_t)^gamma, optionally alpha-balanced.",
        formula="l_i = alpha_t * (1 - p_t)^gamma * BCE_with_logits(x_i, t_i), p_t = p*t + (1-p)*(1-t), "
        "alpha_t = alpha*t + (1-alpha)*(1-t)",
        fn=focal,
        roles=(
            Role("input", (Kind.FLOAT,), "any shape (*)", "logits", differentiable=True),
            Role("target", (Kind.FLOAT,), "same shape as input, values in [0, 1]", "labels or soft labels",
                 differentiable=True),
        ),
        check=_check_focal,
        unreduced_shape=_input_shape,
        params=(
            Param("alpha", ParamType.FLOAT, 0.25, "weight of positives (1 - alpha for negatives); none: no "
                  "weighting", minimum=0.0, maximum=1.0, nullable=True),
            Param("gamma", ParamType.FLOAT, 2.0, "focusing exponent; 0 gives (alpha-weighted) BCE", minimum=0.0),
        ),
        aliases=("focal_loss", "sigmoid_focal_loss", "binary_focal_loss_with_logits", "BinaryFocalLossWithLogits"),
        notes="gamma=0 gives plain BCE only with alpha=none (the tutorial says it always does). optax's "
        "sigmoid_focal_loss defaults to alpha=None: pass alpha=none for its default numbers.",
        category="binary",
    ),
    LossSpec(
        name="multilabel_soft_margin",
        hessian="rows",
        summary="Multi-label soft margin loss: per sample, the mean over classes of BCE on logits.",
        formula="l_n = -(1/C) * sum_c w_c * (t_nc*log(sigmoid(x_nc)) + (1 - t_nc)*log(sigmoid(-x_nc)))",
        fn=multilabel_soft_margin,
        roles=(
            Role("input", (Kind.FLOAT,), _MULTILABEL_RULE, "logits, one per class", differentiable=True),
            Role("target", (Kind.FLOAT, Kind.INDEX), "same shape as input, values in [0, 1]",
                 "multi-hot labels (soft allowed; integer 0/1 too, as torch takes them)", differentiable=True),
            Role("weight", (Kind.FLOAT,), "(C,), >= 0", "per-class rescaling weight", required=False),
        ),
        check=_check_multilabel_soft_margin,
        unreduced_shape=_per_sample_shape,
        aliases=("MultiLabelSoftMarginLoss", "multilabel_soft_margin_loss"),
        notes="torch's MultiLabelSoftMarginLoss; soft targets in [0, 1] are accepted (torch documents {0, 1}).",
        category="binary",
    ),
    LossSpec(
        name="multilabel_margin",
        hessian_vanishes=True,
        hessian_fn=zero_hessian,
        hessian="rows",
        summary="Multi-label margin loss: hinge between every target class and every non-target class.",
        formula="l_n = sum_{j in T_n} sum_{i not in T_n} max(0, 1 - (x_nj - x_ni)) / C",
        fn=multilabel_margin,
        roles=(
            Role("input", (Kind.FLOAT,), _MULTILABEL_RULE, "scores, one per class", differentiable=True),
            Role("target", (Kind.INDEX,), "same shape as input, class indices in [-1, C)",
                 "target classes first, then -1 and padding (everything after the first -1 is ignored)"),
        ),
        check=_check_multilabel_margin,
        unreduced_shape=_per_sample_shape,
        aliases=("MultiLabelMarginLoss", "multilabel_margin_loss"),
        notes=("torch's MultiLabelMarginLoss; every target entry, padding included, must lie in [-1, C) "
        "(torch raises otherwise)."
        + " Hessian diagonal: zero almost everywhere (the loss is piecewise linear); for gradient "
        "boosting, use a constant Hessian instead."),
        category="binary",
    ),
)

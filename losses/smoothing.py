"""The tutorial's two label-smoothing cross-entropies: with a fixed smoothing (label_smoothing_cross_entropy)
and with one that shrinks as the model grows confident (adaptive_label_smoothing).

Both take (N, C) logits, classes along dimension 1, and (N,) class indices, int64 in [0, C).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossd.losses import checks
from lossd.losses.errors import invalid
from lossd.losses.multiclass import _check_classes, _check_index_target
from lossd.losses.reduction import reduce_loss
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, Tensors

_2D_RULE = "(N, C)"


def label_smoothing_cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    smoothing: float = 0.1,
    distribution: str = "others",
) -> torch.Tensor:
    """Cross-entropy of logits against a smoothed one-hot target (the tutorial's LabelSmoothingCrossEntropy)::

        l_i = -sum_c q_ic * log_softmax(input_i)_c
        "others":  q_ic = 1 - eps on c = y_i, eps / (C - 1) elsewhere        (the tutorial's code and prose)
        "uniform": q_ic = 1 - eps + eps / C on c = y_i, eps / C elsewhere   (torch's label_smoothing)

    "others"(eps) equals torch's cross_entropy(label_smoothing = eps * C / (C - 1)).
    Shapes: input (N, C); target (N,) of indices; output () or (N,) with reduction "none".
    """
    logp = F.log_softmax(input, dim=1)
    num_classes = input.shape[1]
    on_true = logp.gather(1, target.unsqueeze(1)).squeeze(1)
    if distribution == "uniform":
        off, true = smoothing / num_classes, 1.0 - smoothing + smoothing / num_classes
    else:
        off, true = smoothing / max(num_classes - 1, 1), 1.0 - smoothing
    losses = -(off * logp.sum(dim=1) + (true - off) * on_true)
    return reduce_loss(losses, reduction)


def _check_smoothing_ce(tensors: Tensors, params: Params) -> None:
    x = tensors["input"]
    if x.dim() != 2:
        raise invalid("inputs[input]", f"shape {checks.shape_text(x.shape)}; expected {_2D_RULE} logits")
    at_least = 2 if params.get("distribution", "others") == "others" else 1
    num_classes = _check_classes(x, "input", "eps / (C - 1) needs C >= 2" if at_least == 2 else _2D_RULE, at_least)
    _check_index_target(tensors, "input", (x.shape[0],), num_classes, None)


def _rows_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return (tensors["input"].shape[0],)


def adaptive_label_smoothing(
    input: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    base_smoothing: float = 0.1,
    min_smoothing: float = 0.01,
) -> torch.Tensor:
    """Label-smoothing cross-entropy whose smoothing shrinks as the model grows confident::

        p_i   = softmax(input_i)[y_i], treated as a constant (no gradient flows through it)
        eps_i = max(base_smoothing * (1 - p_i), min_smoothing)
        l_i   = -((1 - eps_i) * log_softmax(input_i)[y_i] + eps_i / (C - 1) * sum_{c != y_i} log_softmax(input_i)_c)

    This is the tutorial's AdaptiveLabelSmoothing as intended (its code raises on an in-place write into an
    expanded view). Shapes: input (N, C); target (N,) of indices; output () or (N,) with reduction "none".
    """
    logp = F.log_softmax(input, dim=1)
    num_classes = input.shape[1]
    on_true = logp.gather(1, target.unsqueeze(1)).squeeze(1)
    confidence = on_true.detach().exp()
    eps = torch.clamp(base_smoothing * (1.0 - confidence), min=min_smoothing)
    off = eps / (num_classes - 1)
    losses = -(off * (logp.sum(dim=1) - on_true) + (1.0 - eps) * on_true)
    return reduce_loss(losses, reduction)


def _check_adaptive(tensors: Tensors, params: Params) -> None:
    x = tensors["input"]
    if x.dim() != 2:
        raise invalid("inputs[input]", f"shape {checks.shape_text(x.shape)}; expected {_2D_RULE} logits")
    num_classes = _check_classes(x, "input", "eps / (C - 1) needs C >= 2", 2)
    _check_index_target(tensors, "input", (x.shape[0],), num_classes, None)


SPECS = (
    LossSpec(
        name="label_smoothing_cross_entropy",
        hessian="rows",
        summary="Cross-entropy of logits against a label-smoothed one-hot target (the tutorial's convention).",
        formula="l_i = -sum_c q_ic log_softmax(x_i)_c; others: q = 1-eps on y_i, eps/(C-1) elsewhere; "
        "uniform: q = 1-eps+eps/C on y_i, eps/C elsewhere",
        fn=label_smoothing_cross_entropy,
        roles=(
            Role("input", (Kind.FLOAT,), _2D_RULE, "unnormalized logits", differentiable=True),
            Role("target", (Kind.INDEX,), "(N,) class indices in [0, C)", "class indices"),
        ),
        check=_check_smoothing_ce,
        unreduced_shape=_rows_shape,
        params=(
            Param("smoothing", ParamType.FLOAT, 0.1, "eps: the probability mass moved off the true class",
                  minimum=0.0, maximum=1.0),
            Param("distribution", ParamType.STRING, "others", "where eps goes: 'others' spreads it over the C-1 "
                  "other classes (tutorial); 'uniform' over all C classes (torch's label_smoothing)",
                  choices=("others", "uniform")),
        ),
        aliases=("LabelSmoothingCrossEntropy", "label_smoothing_ce", "ls_ce"),
        notes="Default 'others' follows the tutorial's code and prose (true class 1-eps, others eps/(C-1)), not its "
        "displayed formula (eps/C, torch's convention, available as distribution='uniform'); others(eps) equals "
        "torch cross_entropy(label_smoothing=eps*C/(C-1)).",
        category="multiclass",
    ),
    LossSpec(
        name="adaptive_label_smoothing",
        hessian="rows",
        summary="Label-smoothing cross-entropy with per-sample smoothing that shrinks as the model grows confident.",
        formula="eps_i = max(base*(1 - stopgrad(softmax(x_i)[y_i])), min); l_i = -((1-eps_i) log p_iy + "
        "eps_i/(C-1) sum_{c!=y} log p_ic)",
        fn=adaptive_label_smoothing,
        roles=(
            Role("input", (Kind.FLOAT,), _2D_RULE + ", C >= 2", "unnormalized logits", differentiable=True),
            Role("target", (Kind.INDEX,), "(N,) class indices in [0, C)", "class indices"),
        ),
        check=_check_adaptive,
        unreduced_shape=_rows_shape,
        params=(
            Param("base_smoothing", ParamType.FLOAT, 0.1, "smoothing at zero confidence", minimum=0.0, maximum=1.0),
            Param("min_smoothing", ParamType.FLOAT, 0.01, "floor of the per-sample smoothing", minimum=0.0,
                  maximum=1.0),
        ),
        aliases=("AdaptiveLabelSmoothing",),
        notes="The tutorial's code raises (in-place scatter into an expanded view); this is its intended maths. "
        "The confidence is detached, so the gradient treats eps_i as a constant (it is not the full derivative).",
        category="multiclass",
    ),
)

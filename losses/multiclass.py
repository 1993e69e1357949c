"""Multi-class losses beyond plain cross-entropy: NLL on log-probabilities, the Weston-Watkins multi-class
hinge (torch's MultiMarginLoss) and torch 2.13's fused linear + cross-entropy.

Classes lie along dimension 1 of a batched input (dimension 0 of an unbatched one); class indices are
int64 in [0, C). The tutorial's two label-smoothing cross-entropies are in :mod:`lossd.losses.smoothing`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossd.losses import checks
from lossd.losses.errors import invalid
from lossd.losses.hessian import multi_margin_hessian
from lossd.losses.reduction import reduce_loss
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, Tensors

_ND_RULE = "(N, C), (N, C, d1, ..., dk) or unbatched (C,)"


def _num_classes(x: torch.Tensor) -> int:
    return x.shape[1] if x.dim() >= 2 else x.shape[0]


def _index_target_shape(x: torch.Tensor) -> tuple[int, ...]:
    return (x.shape[0], *x.shape[2:]) if x.dim() >= 2 else ()


def _check_index_target(tensors: Tensors, input_role: str, expected: tuple[int, ...], num_classes: int,
                        ignore_index: int | None) -> None:
    target = tensors["target"]
    if tuple(target.shape) != expected:
        raise invalid("inputs[target]", f"shape {checks.shape_text(target.shape)} does not fit {input_role} "
                      f"{checks.shape_text(tensors[input_role].shape)}; expected {checks.shape_text(expected)} "
                      "of class indices")
    checks.class_indices(target, "target", num_classes, ignore_index)


def _check_class_weight(tensors: Tensors, role: str, num_classes: int) -> None:
    weight = tensors.get(role)
    if weight is None:
        return
    if tuple(weight.shape) != (num_classes,):
        raise invalid(f"inputs[{role}]", f"shape {checks.shape_text(weight.shape)}; expected ({num_classes},), "
                      "one weight per class")
    checks.non_negative(weight, role)


def _check_classes(x: torch.Tensor, role: str, rule: str, at_least: int = 1) -> int:
    num_classes = _num_classes(x)
    if num_classes < at_least:
        raise invalid(f"inputs[{role}]", f"has {num_classes} classes along the class dimension; expected "
                      f"C >= {at_least} ({rule})")
    return num_classes


# ---------------------------------------------------------------------------------------------- nll

def nll(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> torch.Tensor:
    """Negative log-likelihood of class indices under log-probabilities ``input``::

        l_i = -w[y_i] * input_i[y_i]
        mean = sum_i l_i / sum_i w[y_i]        (elements whose y_i == ignore_index are skipped)

    ``input`` is taken as given (usually log_softmax output); nll(log_softmax(x)) == cross_entropy(x).
    Shapes: input (N, C, d1..dk) or (C,); target (N, d1..dk) or () of indices; weight (C,);
    output () or (N, d1..dk) with reduction "none".
    """
    return F.nll_loss(input, target, weight=weight, reduction=reduction, ignore_index=ignore_index)


def _check_nll(tensors: Tensors, params: Params) -> None:
    x = tensors["input"]
    checks.min_ndim(x, "input", 1, _ND_RULE)
    num_classes = _check_classes(x, "input", _ND_RULE)
    _check_index_target(tensors, "input", _index_target_shape(x), num_classes, params["ignore_index"])
    _check_class_weight(tensors, "weight", num_classes)


def _nd_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return _index_target_shape(tensors["input"])


# ---------------------------------------------------------------------------------------- multi margin

def multi_margin(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    p: int = 1,
    margin: float = 1.0,
) -> torch.Tensor:
    """Weston-Watkins multi-class hinge (torch's MultiMarginLoss), per sample::

        l_i = sum_{c != y_i} w[y_i] * max(0, margin - x_i[y_i] + x_i[c])^p / C

    with w = ones when absent and p in {1, 2}. "mean" averages l_i over the batch.
    Shapes: input (N, C) or (C,); target (N,) or () of indices; weight (C,); output () or (N,) with "none".
    """
    losses = F.multi_margin_loss(input, target, p=p, margin=margin, weight=weight, reduction="none")
    return reduce_loss(losses, reduction)


def _check_multi_margin(tensors: Tensors, params: Params) -> None:
    x = tensors["input"]
    rule = "(N, C) or unbatched (C,)"
    if x.dim() not in (1, 2):
        raise invalid("inputs[input]", f"shape {checks.shape_text(x.shape)}; expected {rule} scores")
    num_classes = _check_classes(x, "input", rule)
    _check_index_target(tensors, "input", _index_target_shape(x), num_classes, None)
    _check_class_weight(tensors, "weight", num_classes)


# ------------------------------------------------------------------------------ linear cross-entropy

def linear_cross_entropy(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    linear_bias: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy of the logits ``input @ linear_weight.T + linear_bias`` (torch's F.linear_cross_entropy)::

        logits = linear(input, linear_weight, linear_bias)
        loss   = cross_entropy(logits, target, weight, ignore_index, label_smoothing)

    ``ignore_index`` None means -100 for index targets (and must stay None for probability targets).
    Shapes: input (N, in) or (in,); linear_weight (C, in) or (C, d1..dk, in) (then input must be batched);
    linear_bias (C,) or (C, d1..dk); target (N, d1..dk) or () of indices, or the logits' shape
    (N, C, d1..dk) / (C,) of probabilities; weight (C,); output () or (N, d1..dk) with reduction "none".
    """
    return F.linear_cross_entropy(input, linear_weight, target, linear_bias=linear_bias, weight=weight,
                                  reduction=reduction, ignore_index=ignore_index, label_smoothing=label_smoothing)


def _linear_logits_shape(tensors: Tensors) -> tuple[int, ...]:
    x, w = tensors["input"], tensors["linear_weight"]
    return (*x.shape[:-1], w.shape[0], *w.shape[1:-1])


def _check_linear_ce(tensors: Tensors, params: Params) -> None:
    x, w = tensors["input"], tensors["linear_weight"]
    if x.dim() not in (1, 2):
        raise invalid("inputs[input]", f"shape {checks.shape_text(x.shape)}; expected (N, in_features) or "
                      "unbatched (in_features,)")
    if w.dim() < 2:
        raise invalid("inputs[linear_weight]", f"shape {checks.shape_text(w.shape)}; expected (C, in_features) "
                      "or (C, d1, ..., dk, in_features)")
    if w.shape[-1] != x.shape[-1]:
        raise invalid("inputs[linear_weight]", f"shape {checks.shape_text(w.shape)}: its last dimension must "
                      f"equal input's in_features {x.shape[-1]}")
    num_classes, out_features = w.shape[0], tuple(w.shape[1:-1])
    if num_classes < 1:
        raise invalid("inputs[linear_weight]", "has 0 classes along dimension 0; expected C >= 1")
    if out_features and x.dim() == 1:
        raise invalid("inputs[input]", f"shape {checks.shape_text(x.shape)} is unbatched, but linear_weight "
                      f"{checks.shape_text(w.shape)} asks for a K-dimensional loss; expected (N, {x.shape[-1]})")
    bias = tensors.get("linear_bias")
    if bias is not None and tuple(bias.shape) != (num_classes, *out_features):
        raise invalid("inputs[linear_bias]", f"shape {checks.shape_text(bias.shape)}; expected "
                      f"{checks.shape_text((num_classes, *out_features))}, matching linear_weight")
    target = tensors["target"]
    logits_shape = _linear_logits_shape(tensors)
    if target.is_floating_point():
        if tuple(target.shape) != logits_shape:
            raise invalid("inputs[target]", f"shape {checks.shape_text(target.shape)} of probabilities; expected "
                          f"the logits' shape {checks.shape_text(logits_shape)}")
        if params["ignore_index"] is not None:
            raise invalid("params[ignore_index]", "applies only to class-index targets; this target holds "
                          "probabilities (leave ignore_index unset)")
    else:
        expected = (x.shape[0], *out_features) if x.dim() == 2 else ()
        if tuple(target.shape) != expected:
            raise invalid("inputs[target]", f"shape {checks.shape_text(target.shape)}; expected "
                          f"{checks.shape_text(expected)} of class indices, or {checks.shape_text(logits_shape)} "
                          "of probabilities")
        ignore = params["ignore_index"]
        checks.class_indices(target, "target", num_classes, -100 if ignore is None else ignore)
    _check_class_weight(tensors, "weight", num_classes)


def _linear_ce_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    x, w = tensors["input"], tensors["linear_weight"]
    return (x.shape[0], *w.shape[1:-1]) if x.dim() == 2 else ()


# ------------------------------------------------------------------------------------------- specs

_INDEX_TARGET = "(N, d1, ..., dk) or () class indices in [0, C)"
_CLASS_WEIGHT = Role("weight", (Kind.FLOAT,), "(C,), >= 0", "per-class rescaling weight", required=False)
_IGNORE_INDEX = Param("ignore_index", ParamType.INT, -100, "class-index target value that is skipped (it adds "
                      "nothing to the loss nor to the mean's denominator)")

SPECS = (
    LossSpec(
        name="nll",
        hessian="rows",
        summary="Negative log-likelihood of class indices under log-probabilities (pair it with log_softmax).",
        formula="l_i = -w[y_i] * input_i[y_i]; mean = sum l_i / sum w[y_i] over non-ignored i",
        fn=nll,
        roles=(
            Role("input", (Kind.FLOAT,), _ND_RULE, "log-probabilities, classes along dim 1", differentiable=True),
            Role("target", (Kind.INDEX,), _INDEX_TARGET + " (or ignore_index)", "class indices"),
            _CLASS_WEIGHT,
        ),
        check=_check_nll,
        unreduced_shape=_nd_shape,
        params=(_IGNORE_INDEX,),
        aliases=("NLLLoss", "nll_loss", "NLLLoss2d"),
        notes="input must already be log-probabilities (no softmax is applied); 'mean' is the weighted mean, as in "
        "torch.",
        category="multiclass",
    ),
    LossSpec(
        name="multi_margin",
        hessian_vanishes=True,
        hessian_fn=multi_margin_hessian,
        hessian="rows",
        summary="Multi-class hinge (Weston-Watkins, torch's MultiMarginLoss): sum of margin violations / C.",
        formula="l_i = sum_{c != y_i} w[y_i] * max(0, margin - x_i[y_i] + x_i[c])^p / C",
        fn=multi_margin,
        roles=(
            Role("input", (Kind.FLOAT,), "(N, C) or unbatched (C,)", "class scores", differentiable=True),
            Role("target", (Kind.INDEX,), "(N,) or () class indices in [0, C)", "class indices"),
            _CLASS_WEIGHT,
        ),
        check=_check_multi_margin,
        unreduced_shape=_nd_shape,
        params=(
            Param("p", ParamType.INT, 1, "exponent of each violation: 1 (hinge) or 2 (squared hinge)",
                  minimum=1, maximum=2),
            Param("margin", ParamType.FLOAT, 1.0, "required gap between the true class and every other class"),
        ),
        aliases=("MultiMarginLoss", "multi_margin_loss", "categorical_hinge"),
        notes=("categorical_hinge means the tutorial's loss (= MultiMarginLoss, a sum over wrong classes / C); "
        "Keras/optax/sklearn's categorical/multiclass hinge is the Crammer-Singer max form, a different loss."
        + " Hessian diagonal: zero almost everywhere with p = 1 (piecewise linear); with p = 2, 2 "
        "w[y]/C per active margin."),
        category="multiclass",
    ),
    LossSpec(
        name="linear_cross_entropy",
        hessian="rows",
        hessian_roles=("input",),
        summary="Cross-entropy of a linear layer's logits, input @ W.T + b (torch 2.13's F.linear_cross_entropy).",
        formula="logits = input @ linear_weight.T + linear_bias; l = cross_entropy(logits, target, weight, "
        "ignore_index, label_smoothing)",
        fn=linear_cross_entropy,
        roles=(
            Role("input", (Kind.FLOAT,), "(N, in_features) or unbatched (in_features,)", "features fed to the "
                 "linear layer", differentiable=True),
            Role("linear_weight", (Kind.FLOAT,), "(C, in_features) or (C, d1, ..., dk, in_features)",
                 "the linear layer's weight", differentiable=True),
            Role("target", (Kind.INDEX, Kind.FLOAT), "(N, d1, ..., dk) or () class indices in [0, C) (or "
                 "ignore_index); or the logits' shape (N, C, d1, ..., dk) of probabilities",
                 "class indices or class probabilities"),
            Role("linear_bias", (Kind.FLOAT,), "(C,) or (C, d1, ..., dk), matching linear_weight",
                 "the linear layer's bias", required=False, differentiable=True),
            _CLASS_WEIGHT,
        ),
        check=_check_linear_ce,
        unreduced_shape=_linear_ce_shape,
        params=(
            Param("ignore_index", ParamType.INT, None, "class-index target value that is skipped; unset means -100 "
                  "(must stay unset with probability targets)", nullable=True),
            Param("label_smoothing", ParamType.FLOAT, 0.0, "eps: the target becomes (1 - eps) * target + eps / C",
                  minimum=0.0, maximum=1.0),
        ),
        aliases=("LinearCrossEntropyLoss", "fused_linear_cross_entropy"),
        default_wrt=("input",),
        notes="torch's nn.LinearCrossEntropyLoss owns W and b as parameters; here they are inputs "
        "(linear_weight, linear_bias). Chunking options are not exposed (the value is the same).",
        category="multiclass",
    ),
)

"""Classification losses over logits: softmax cross-entropy and sigmoid binary cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossd.losses import checks
from lossd.losses.errors import invalid
from lossd.losses.hessian import bce_with_logits_hessian, cross_entropy_hessian, index_target_mass
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, Tensors

_CE_RULE = "(N, C), (N, C, d1, ..., dk) or unbatched (C,)"
# Keras clips probabilities to [eps, 1 - eps] before the log; its names reproduce that (from_logits=False).
_KERAS_EPS = 1e-7
_KERAS_NAMES = ("categorical_crossentropy", "CategoricalCrossentropy", "sparse_categorical_crossentropy",
                "SparseCategoricalCrossentropy")


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    from_logits: bool = True,
) -> torch.Tensor:
    """Softmax cross-entropy between logits and class indices (or class probabilities).

    With index targets y and class weights w (ones when absent), per element::

        l_i = -w[y_i] * log_softmax(input_i)[y_i]
        mean = sum_i l_i / sum_i w[y_i]        (elements whose y_i == ignore_index are skipped)

    With probability targets p: ``l_i = -sum_c w_c p_ic log_softmax(input_i)_c`` and "mean" is a plain
    mean over N*d1*...*dk. ``label_smoothing`` eps mixes the target with the uniform distribution:
    (1 - eps) * target + eps / C (torch's convention).

    ``from_logits=False`` takes probabilities instead, as Keras does by default: they are normalized
    over the class dimension and clipped to [1e-7, 1 - 1e-7] before the log.

    Shapes: input (N, C, d1..dk) or (C,); target (N, d1..dk) or () of indices, or input's shape of
    probabilities; weight (C,); output () or (N, d1..dk) with reduction "none".
    """
    if not from_logits:
        dim = 1 if input.dim() >= 2 else 0
        probs = input / input.sum(dim=dim, keepdim=True)
        # log_softmax (inside cross_entropy) of log-probabilities that sum to 1 is the identity.
        input = torch.log(probs.clamp(_KERAS_EPS, 1 - _KERAS_EPS))
    return F.cross_entropy(
        input, target, weight=weight, reduction=reduction,
        ignore_index=ignore_index, label_smoothing=label_smoothing,
    )


# Where the closed form pays: (N, C) logits with many classes. Measured on the CPU against autograd: 2.0x at
# 4096 x 1000, 1.65x at 512 x 1000, 1.4x at 8192 x 100, 1.15x at 256 x 100; with 2 or 10 classes it took 1.5x
# autograd's time (softmax and max over short rows), and over (N, C, d) layouts it was even.
_CLOSED_FORM_MIN_CLASSES = 100
_CLOSED_FORM_MIN_ELEMENTS = 1 << 15


def _cross_entropy_value_and_grad(tensors: Tensors, params: Params, reduction: str, wrt: tuple[str, ...],
                                  upstream: torch.Tensor | None
                                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
    """:func:`cross_entropy_closed_form` where it is faster than autograd (wide (N, C) logits); else None."""
    x = tensors["input"]
    if x.dim() != 2 or x.shape[1] < _CLOSED_FORM_MIN_CLASSES or x.numel() < _CLOSED_FORM_MIN_ELEMENTS:
        return None
    return cross_entropy_closed_form(tensors, params, reduction, wrt, upstream)


def cross_entropy_closed_form(tensors: Tensors, params: Params, reduction: str, wrt: tuple[str, ...],
                              upstream: torch.Tensor | None
                              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
    """Cross-entropy over logits and class indices, and its gradient in the logits, without an autograd graph.

    Per position, with a_c = (1 - eps) w[y] [c = y] + eps w_c / C (all 0 where y is ignore_index) and
    s = sum_c a_c, the loss is -sum_c a_c log p_c and its gradient in the logits is p s - a (divided by
    sum w[y] for "mean", times grad_output). One softmax pass makes p; log-sum-exp comes from the largest
    logit and the largest probability, lse = max x - log max p (that probability is at least 1/C, so its log
    is exact), and log p_y = x_y - lse. Autograd runs log_softmax forward and backward instead: about 1.6x
    the time on 4096 x 1000 logits.

    Returns None (autograd then) outside that setting: probability targets, from_logits false, a gradient in
    anything but the logits, no gradient at all (the value is F.cross_entropy itself), and a "mean" over a
    total weight of 0, whose nan and inf torch spreads in its own way.
    Shapes: input (N, C, d1..dk) or (C,); target (N, d1..dk) or (); weight (C,).
    """
    x, y = tensors["input"], tensors["target"]
    if wrt != ("input",) or y.is_floating_point() or not params["from_logits"]:
        return None
    dim = 1 if x.dim() >= 2 else 0
    classes = x.shape[dim]
    eps = float(params["label_smoothing"])
    weight = tensors.get("weight")
    weight = weight.to(x.dtype) if weight is not None else None
    keep, index, w_y, mass = index_target_mass(y, weight, params["ignore_index"], eps, classes, x.dtype)
    total_weight = w_y.sum()
    if reduction == "mean" and not bool(total_weight > 0):  # (a device sync on CUDA: one, before any work)
        return None
    index = index.unsqueeze(dim)
    p = torch.softmax(x, dim)
    lse = x.amax(dim) - p.amax(dim).log()
    per = (lse - x.gather(dim, index).squeeze(dim)).mul_(w_y).mul_(1.0 - eps)  # -(1 - eps) w[y] log p_y
    shape = [1] * x.dim()
    shape[dim] = classes
    if eps:
        minus_logp = lse.unsqueeze(dim) - x
        smooth = (minus_logp.mul_(weight.view(shape)) if weight is not None else minus_logp).sum(dim)
        per = per.add_(smooth.mul_(keep).mul_(eps / classes))
    if reduction == "none":
        loss = per
    else:
        loss = per.sum()
        loss = loss / total_weight if reduction == "mean" else loss
    grad = p.mul_(mass.unsqueeze(dim))  # p s, in p's memory
    if eps:
        uniform = keep.unsqueeze(dim) * weight.view(shape) if weight is not None else keep.unsqueeze(dim)
        grad = grad.sub_(uniform * (eps / classes))
    grad.scatter_add_(dim, index, (w_y * (eps - 1.0)).unsqueeze(dim))
    if reduction == "mean":
        grad.div_(total_weight)
    if upstream is not None:
        up = upstream.to(grad.dtype)
        grad.mul_(up.unsqueeze(dim) if reduction == "none" and x.dim() >= 2 else up)
    return loss, {"input": grad}


def _check_cross_entropy(tensors: Tensors, params: Params) -> None:
    logits, target = tensors["input"], tensors["target"]
    checks.min_ndim(logits, "input", 1, _CE_RULE)
    num_classes = logits.shape[1] if logits.dim() >= 2 else logits.shape[0]
    if num_classes < 1:
        raise invalid("inputs[input]", f"has {num_classes} classes along the class dimension; expected C >= 1")
    if target.is_floating_point():
        checks.same_shape(tensors, "target", "input")
        if params["ignore_index"] != -100:
            raise invalid("params[ignore_index]", "applies only to class-index targets; "
                          "this target holds probabilities")
    else:
        expected = (logits.shape[0], *logits.shape[2:]) if logits.dim() >= 2 else ()
        if tuple(target.shape) != expected:
            raise invalid("inputs[target]", f"shape {checks.shape_text(target.shape)} does not fit input "
                          f"{checks.shape_text(logits.shape)}; expected {checks.shape_text(expected)} of class "
                          "indices, or input's shape of probabilities")
        checks.class_indices(target, "target", num_classes, params["ignore_index"])
    if not params["from_logits"]:
        checks.non_negative(logits, "input", nan=True)
        dim = 1 if logits.dim() >= 2 else 0
        if logits.numel() and bool((logits.sum(dim=dim) <= 0).any()):
            raise invalid("inputs[input]", "a row of probabilities sums to 0; with from_logits=false each "
                          "position needs a positive total over the classes")
    weight = tensors.get("weight")
    if weight is not None:
        if tuple(weight.shape) != (num_classes,):
            raise invalid("inputs[weight]", f"shape {checks.shape_text(weight.shape)}; expected ({num_classes},), "
                          "one weight per class")
        checks.non_negative(weight, "weight")


def _cross_entropy_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    logits = tensors["input"]
    return (logits.shape[0], *logits.shape[2:]) if logits.dim() >= 2 else ()


def bce_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    pos_weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Binary cross-entropy on logits x with targets t in [0, 1] (soft labels allowed)::

        l_i = -w_i * (pw * t_i * log(sigmoid(x_i)) + (1 - t_i) * log(1 - sigmoid(x_i)))

    computed in the numerically stable log-sum-exp form. ``pos_weight`` pw (broadcast along the last
    dimension) scales the positive term; ``weight`` w rescales each element. "mean" is a plain mean over
    all elements, weighted or not.
    Shapes: input (*), target same as input, weight broadcastable to input, pos_weight (C,) or (1,)
    where C is input's last dimension; output () or (*) with reduction "none".
    """
    return F.binary_cross_entropy_with_logits(input, target, weight=weight, pos_weight=pos_weight, reduction=reduction)


def _check_bce(tensors: Tensors, params: Params) -> None:
    logits = tensors["input"]
    checks.same_shape(tensors, "target", "input")
    checks.in_range(tensors["target"], "target", 0.0, 1.0)
    weight = tensors.get("weight")
    if weight is not None:
        checks.broadcastable_to(weight, "weight", logits.shape, "input")
        checks.finite(weight, "weight")
    pos_weight = tensors.get("pos_weight")
    if pos_weight is not None:
        last = logits.shape[-1] if logits.dim() else 1
        if pos_weight.dim() != 1 or pos_weight.shape[0] not in (1, last):
            raise invalid("inputs[pos_weight]", f"shape {checks.shape_text(pos_weight.shape)}; expected ({last},) "
                          "(one weight per class along input's last dimension) or (1,)")
        checks.non_negative(pos_weight, "pos_weight")


def _input_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return tuple(tensors["input"].shape)


SPECS = (
    LossSpec(
        name="cross_entropy",
        hessian_fn=cross_entropy_hessian,
        hessian="rows",
        summary="Softmax cross-entropy of logits against class indices or class probabilities.",
        formula="l_i = -w[y_i] * log_softmax(input_i)[y_i]; mean = sum l_i / sum w[y_i] over non-ignored i",
        fn=cross_entropy,
        roles=(
            Role("input", (Kind.FLOAT,), _CE_RULE, "unnormalized logits, classes along dim 1",
                 differentiable=True),
            Role("target", (Kind.INDEX, Kind.FLOAT), "(N, d1, ..., dk) or () class indices in [0, C) "
                 "(or ignore_index); or input's shape of probabilities",
                 "class indices, or class probabilities (float, then differentiable)", differentiable=True),
            Role("weight", (Kind.FLOAT,), "(C,), >= 0", "per-class rescaling weight", required=False),
        ),
        check=_check_cross_entropy,
        unreduced_shape=_cross_entropy_shape,
        value_and_grad=_cross_entropy_value_and_grad,
        params=(
            Param("ignore_index", ParamType.INT, -100, "class-index target value that is skipped (it adds "
                  "nothing to the loss nor to the mean's denominator)"),
            Param("label_smoothing", ParamType.FLOAT, 0.0, "eps: the target becomes (1 - eps) * target + eps / C",
                  minimum=0.0, maximum=1.0),
            Param("from_logits", ParamType.BOOL, True, "false: input holds probabilities (normalized over the "
                  "classes, clipped to [1e-7, 1 - 1e-7]), as Keras' default"),
        ),
        aliases=("CrossEntropyLoss", "ce", "softmax_cross_entropy", "softmax_cross_entropy_with_integer_labels",
                 *_KERAS_NAMES),
        presets={name: {"from_logits": False} for name in _KERAS_NAMES},
        notes="Takes logits, as torch does; the Keras names take probabilities (from_logits=false preset), as "
        "Keras does. label_smoothing follows torch (eps/C to every class), not the tutorial's eps/(C-1).",
        category="classification",
    ),
    LossSpec(
        name="bce_with_logits",
        hessian_fn=bce_with_logits_hessian,
        hessian="elementwise",
        batchable=True,
        summary="Binary cross-entropy on logits (sigmoid + BCE in one stable step); multi-label ready.",
        formula="l_i = -w_i * (pw * t_i * log(sigmoid(x_i)) + (1 - t_i) * log(1 - sigmoid(x_i)))",
        fn=bce_with_logits,
        roles=(
            Role("input", (Kind.FLOAT,), "any shape (*)", "logits", differentiable=True),
            Role("target", (Kind.FLOAT,), "same shape as input, values in [0, 1]", "labels or soft labels",
                 differentiable=True),
            Role("weight", (Kind.FLOAT,), "broadcastable to input", "per-element rescaling weight", required=False),
            Role("pos_weight", (Kind.FLOAT,), "(C,) or (1,), C = input's last dimension, >= 0",
                 "weight of positive examples per class", required=False),
        ),
        check=_check_bce,
        unreduced_shape=_input_shape,
        aliases=("BCEWithLogitsLoss", "binary_cross_entropy_with_logits", "sigmoid_binary_cross_entropy",
                 "sigmoid_cross_entropy"),
        notes="Takes logits (Keras' binary_crossentropy takes probabilities by default and is not an alias).",
        category="classification",
    ),
)

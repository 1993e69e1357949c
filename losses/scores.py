"""Losses on raw scores from the extended catalog, as optax defines them: the perceptron (binary and multi-class),
the Crammer-Singer multi-class hinge, and the sparsemax loss.

Multi-class losses take scores ``input`` (N, C) or unbatched (C,) and class indices ``target`` (N,) or (); each
gives one value per row: "none" keeps them, "mean" averages, "sum" adds.
"""

from __future__ import annotations

import torch

from lossd.losses import checks
from lossd.losses.errors import invalid
from lossd.losses.hessian import zero_hessian
from lossd.losses.reduction import reduce_loss
from lossd.losses.spec import Kind, LossSpec, Params, Role, Tensors

_RULE = "(N, C) or unbatched (C,)"
_ZERO_NOTE = (" Hessian diagonal: zero almost everywhere (the loss is piecewise linear); for gradient boosting, "
              "use a constant Hessian instead.")


def perceptron(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Binary perceptron loss on scores x and labels y in {-1, +1}: ``l_i = max(0, -y_i * x_i)``.

    Shapes: input (*), target same as input; output () or (*) with reduction "none".
    """
    return reduce_loss(torch.clamp_min(-target * input, 0.0), reduction)


def _true_scores(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return scores.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)


def multiclass_perceptron(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Multi-class perceptron loss: ``l_i = max_j s_ij - s_iy_i`` (0 when the true class scores highest).

    Shapes: input (N, C) or (C,); target (N,) or () class indices; output () or (N,) with reduction "none".
    """
    return reduce_loss(input.amax(dim=-1) - _true_scores(input, target), reduction)


def crammer_singer_hinge(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Crammer-Singer multi-class hinge: ``l_i = max(0, 1 + max_{j != y_i} s_ij - s_iy_i)``.

    Shapes: input (N, C) or (C,); target (N,) or () class indices; output () or (N,) with reduction "none".
    """
    true = _true_scores(input, target)
    others = input.scatter(-1, target.long().unsqueeze(-1), float("-inf"))  # the true class out of the max
    return reduce_loss(torch.clamp_min(1.0 + others.amax(dim=-1) - true, 0.0), reduction)


def _sparsemax(z: torch.Tensor) -> torch.Tensor:
    """The Euclidean projection of each row of ``z`` onto the probability simplex (Martins & Astudillo, 2016)."""
    ordered, _ = torch.sort(z, dim=-1, descending=True)
    ranks = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
    cumulative = ordered.cumsum(dim=-1)
    support = (1 + ranks * ordered > cumulative).to(z.dtype)
    # The support's size: the condition holds for ranks 1..k (k >= 1 for finite scores; NaN ones hold it nowhere,
    # and the rank-1 gather below must still be in range: the answer is NaN then, as it should be).
    k = support.sum(dim=-1, keepdim=True).clamp_min(1)
    tau = (cumulative.gather(-1, k.long() - 1) - 1) / k
    return torch.clamp_min(z - tau, 0.0)


def sparsemax(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Sparsemax loss, the sparse counterpart of softmax cross-entropy, with p = sparsemax(s)::

        l_i = 0.5 * |e_y_i - s_i|^2 - 0.5 * |p_i - s_i|^2     (its gradient is p_i - e_y_i)

    Shapes: input (N, C) or (C,); target (N,) or () class indices; output () or (N,) with reduction "none".
    """
    onehot = torch.zeros_like(input).scatter_(-1, target.long().unsqueeze(-1), 1.0)
    p = _sparsemax(input)
    return reduce_loss(0.5 * ((onehot - input).square().sum(dim=-1) - (p - input).square().sum(dim=-1)), reduction)


def _check_signs(tensors: Tensors, params: Params) -> None:
    checks.same_shape(tensors, "target", "input")
    target = tensors["target"]
    bad = ~((target == 1) | (target == -1) | (torch.isnan(target) if target.is_floating_point() else False))
    if target.numel() and bool(bad.any()):
        flat = bad.reshape(-1).nonzero()[0].item()
        raise invalid("inputs[target]", f"value {target.reshape(-1)[flat].item():g} at flat index {flat} is not -1 "
                      "or +1; expected labels in {-1, +1}")


def _check_multiclass(tensors: Tensors, params: Params) -> None:
    x = tensors["input"]
    if x.dim() not in (1, 2):
        raise invalid("inputs[input]", f"shape {checks.shape_text(x.shape)}; expected {_RULE} scores")
    classes = x.shape[-1]
    if classes < 2:
        raise invalid("inputs[input]", f"has {classes} classes along the class dimension; expected C >= 2 ({_RULE})")
    expected = tuple(x.shape[:-1])
    target = tensors["target"]
    if tuple(target.shape) != expected:
        raise invalid("inputs[target]", f"shape {checks.shape_text(target.shape)} does not fit input "
                      f"{checks.shape_text(x.shape)}; expected {checks.shape_text(expected)} of class indices")
    checks.class_indices(target, "target", classes, None)


def _input_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return tuple(tensors["input"].shape)


def _rows(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return tuple(tensors["input"].shape[:-1])


_SCORES = Role("input", (Kind.FLOAT,), "any shape (*)", "raw scores", differentiable=True)
_SIGNS = Role("target", (Kind.FLOAT, Kind.INDEX), "same shape as input, values in {-1, +1}", "labels")
_CLASS_SCORES = Role("input", (Kind.FLOAT,), _RULE, "raw scores, one per class", differentiable=True)
_CLASSES = Role("target", (Kind.INDEX,), "(N,) or () class indices in [0, C)", "the true class")


def _multiclass(name: str, fn: object, summary: str, formula: str, aliases: tuple[str, ...], notes: str,
                hessian_fn: object = None, vanishes: bool = False) -> LossSpec:
    return LossSpec(name=name, hessian="rows", hessian_fn=hessian_fn, hessian_vanishes=vanishes,  # type: ignore[arg-type]
                    summary=summary, formula=formula, fn=fn, roles=(_CLASS_SCORES, _CLASSES),  # type: ignore[arg-type]
                    check=_check_multiclass, unreduced_shape=_rows, aliases=aliases, notes=notes,
                    category="multiclass")


SPECS = (
    LossSpec(
        name="perceptron",
        hessian="elementwise",
        hessian_fn=zero_hessian,
        hessian_vanishes=True,
        summary="Perceptron loss: max(0, -y*x) on raw scores and -1/+1 labels (no margin, unlike hinge).",
        formula="l_i = max(0, -y_i*x_i)",
        fn=perceptron,
        roles=(_SCORES, _SIGNS),
        check=_check_signs,
        unreduced_shape=_input_shape,
        aliases=("perceptron_loss",),
        notes="optax's perceptron_loss." + _ZERO_NOTE,
        category="binary",
    ),
    _multiclass("multiclass_perceptron", multiclass_perceptron,
                "Multi-class perceptron loss: the top score's excess over the true class's.",
                "l_i = max_j s_ij - s_iy_i", ("multiclass_perceptron_loss",),
                "optax's multiclass_perceptron_loss." + _ZERO_NOTE, zero_hessian, True),
    _multiclass("crammer_singer_hinge", crammer_singer_hinge,
                "Crammer-Singer multi-class hinge: max(0, 1 + the best wrong score - the true score).",
                "l_i = max(0, 1 + max_{j != y_i} s_ij - s_iy_i)", ("multiclass_hinge", "multiclass_hinge_loss"),
                "optax's multiclass_hinge_loss and sklearn's multi-class hinge_loss. Keras' categorical_hinge is "
                "not this loss (its max includes 0 for the true class) and is multi_margin's alias here."
                + _ZERO_NOTE, zero_hessian, True),
    _multiclass("sparsemax", sparsemax,
                "Sparsemax loss: the sparse counterpart of softmax cross-entropy (its probabilities can be 0).",
                "l_i = 0.5*|e_y - s_i|^2 - 0.5*|sparsemax(s_i) - s_i|^2", ("multiclass_sparsemax_loss",
                                                                            "sparsemax_loss"),
                "optax's multiclass_sparsemax_loss. Its gradient is sparsemax(s) - e_y; its Hessian, the sparsemax "
                "Jacobian, is constant between changes of the support."),
)

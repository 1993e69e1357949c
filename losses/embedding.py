"""Pairwise embedding losses of the torch.nn family: hinge_embedding, margin_ranking and cosine_embedding.

They compare inputs under a ±1 target (values other than ±1 are refused: torch would silently mix both
branches for them). Every one computes exactly what its torch.nn namesake computes, reductions included
("mean" averages over the N rows or elements). The triplet losses are in :mod:`lossd.losses.triplet`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossd.losses import checks
from lossd.losses.errors import invalid
from lossd.losses.hessian import zero_hessian
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, ShapeFn, Tensors

_SIGN_KINDS = (Kind.FLOAT, Kind.INDEX)


def _signs(tensors: Tensors, role: str) -> None:
    """Every element of ``role`` must be exactly -1 or +1."""
    t = tensors[role]
    if not t.numel():
        return
    ok = (t == 1) | (t == -1) | (torch.isnan(t) if t.is_floating_point() else False)  # NaN flows, as in torch
    if not bool(ok.all()):
        flat = (~ok).reshape(-1).nonzero()[0].item()
        value = t.reshape(-1)[flat].item()
        raise invalid(checks.field(role), f"value {value:g} at flat index {flat} is not -1 or +1; "
                      "expected a target of -1 or +1 only")


def _like(target: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """An integer ±1 target in the float dtype of ``other``."""
    return target if target.dtype == other.dtype else target.to(other.dtype)


# ---------------------------------------------------------------------------------------------------- hinge_embedding


def hinge_embedding(
    input: torch.Tensor, target: torch.Tensor, reduction: str = "mean", margin: float = 1.0
) -> torch.Tensor:
    """Hinge embedding loss (``nn.HingeEmbeddingLoss``) on distances x with targets y in {-1, +1}::

        l_i = x_i                       if y_i = +1
        l_i = max(0, margin - x_i)      if y_i = -1

    It is a loss on distances (similar pairs pulled to 0, dissimilar ones pushed beyond ``margin``),
    not the binary hinge max(0, 1 - y*x) (that is ``hinge``).
    Shapes: input (*), target same as input; output () or (*) with reduction "none".

    >>> round(float(hinge_embedding(torch.tensor([0.3, 0.4]), torch.tensor([1.0, -1.0]))), 6)
    0.45
    """
    return F.hinge_embedding_loss(input, _like(target, input), margin=margin, reduction=reduction)


def _check_hinge_embedding(tensors: Tensors, params: Params) -> None:
    checks.same_shape(tensors, "target", "input")
    _signs(tensors, "target")


def _input_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return tuple(tensors["input"].shape)


# ---------------------------------------------------------------------------------------------------- margin_ranking


def margin_ranking(
    input1: torch.Tensor, input2: torch.Tensor, target: torch.Tensor, reduction: str = "mean", margin: float = 0.0
) -> torch.Tensor:
    """Margin ranking loss (``nn.MarginRankingLoss``): y = +1 asks input1 to rank above input2, y = -1 below::

        l_i = max(0, -y_i * (input1_i - input2_i) + margin)

    Shapes: input1 (N,) or () (any shape is accepted), input2 and target same as input1; output () or
    input1's shape with reduction "none".

    >>> float(margin_ranking(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5]), torch.tensor([1.0, 1.0])))
    0.25
    """
    return F.margin_ranking_loss(input1, input2, _like(target, input1), margin=margin, reduction=reduction)


def _check_margin_ranking(tensors: Tensors, params: Params) -> None:
    checks.same_shape(tensors, "input2", "input1")
    checks.same_shape(tensors, "target", "input1")
    _signs(tensors, "target")


def _input1_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return tuple(tensors["input1"].shape)


# ---------------------------------------------------------------------------------------------------- cosine_embedding

_VEC_RULE = "(N, D) or unbatched (D,)"


def cosine_embedding(
    input1: torch.Tensor, input2: torch.Tensor, target: torch.Tensor, reduction: str = "mean", margin: float = 0.0
) -> torch.Tensor:
    """Cosine embedding loss (``nn.CosineEmbeddingLoss``) with c_i = cos(input1_i, input2_i)::

        l_i = 1 - c_i                   if y_i = +1
        l_i = max(0, c_i - margin)      if y_i = -1

    where c_i = <a, b> / sqrt((|a|^2 + 1e-12) * (|b|^2 + 1e-12)), as torch computes it.
    Shapes: input1 (N, D) or (D,), input2 same as input1, target (N,) or (); output () or (N,) with
    reduction "none".

    >>> float(cosine_embedding(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([-1.0])))
    0.7071067690849304
    """
    return F.cosine_embedding_loss(input1, input2, _like(target, input1), margin=margin, reduction=reduction)


def _check_vectors(tensors: Tensors, role: str) -> None:
    t = tensors[role]
    if t.dim() not in (1, 2):
        raise invalid(checks.field(role), f"shape {checks.shape_text(t.shape)}; expected {_VEC_RULE}")
    if t.shape[-1] < 1:
        raise invalid(checks.field(role), f"shape {checks.shape_text(t.shape)} has D = 0; expected D >= 1")


def _check_cosine_embedding(tensors: Tensors, params: Params) -> None:
    _check_vectors(tensors, "input1")
    checks.same_shape(tensors, "input2", "input1")
    expected = tuple(tensors["input1"].shape[:-1])
    target = tensors["target"]
    if tuple(target.shape) != expected:
        raise invalid("inputs[target]", f"shape {checks.shape_text(target.shape)}; expected "
                      f"{checks.shape_text(expected)}, one -1/+1 per row of input1")
    _signs(tensors, "target")


def _rows_shape(role: str) -> ShapeFn:
    def shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
        return tuple(tensors[role].shape[:-1])

    return shape


SPECS = (
    LossSpec(
        name="hinge_embedding",
        hessian_vanishes=True,
        hessian_fn=zero_hessian,
        hessian="elementwise",
        summary="Hinge embedding loss on distances: x for similar pairs (y=+1), max(0, margin - x) for dissimilar.",
        formula="l_i = x_i if y_i = 1; max(0, margin - x_i) if y_i = -1",
        fn=hinge_embedding,
        roles=(
            Role("input", (Kind.FLOAT,), "any shape (*)", "distances (or any score to be small for similar pairs)",
                 differentiable=True),
            Role("target", _SIGN_KINDS, "same shape as input, values -1 or +1", "+1 similar, -1 dissimilar"),
        ),
        check=_check_hinge_embedding,
        unreduced_shape=_input_shape,
        params=(Param("margin", ParamType.FLOAT, 1.0, "distance beyond which dissimilar pairs cost nothing"),),
        aliases=("HingeEmbeddingLoss", "hinge_embedding_loss"),
        notes=("Not the binary hinge max(0, 1 - y*x) the tutorial calls HingeEmbeddingLoss (that is 'hinge'). "
        "Targets other than -1/+1 are refused (torch adds both branches for them)."
        + " Hessian diagonal: zero almost everywhere (the loss is piecewise linear); for gradient "
        "boosting, use a constant Hessian instead."),
        category="embedding",
    ),
    LossSpec(
        name="margin_ranking",
        hessian_vanishes=True,
        hessian_fn=zero_hessian,
        hessian="elementwise",
        summary="Margin ranking loss: y=+1 wants input1 above input2 by margin, y=-1 below.",
        formula="l_i = max(0, -y_i * (input1_i - input2_i) + margin)",
        fn=margin_ranking,
        roles=(
            Role("input1", (Kind.FLOAT,), "(N,) or () (any shape accepted)", "first scores", differentiable=True),
            Role("input2", (Kind.FLOAT,), "same shape as input1", "second scores", differentiable=True),
            Role("target", _SIGN_KINDS, "same shape as input1, values -1 or +1",
                 "+1: input1 should rank higher; -1: input2 should"),
        ),
        check=_check_margin_ranking,
        unreduced_shape=_input1_shape,
        params=(Param("margin", ParamType.FLOAT, 0.0, "required score gap"),),
        aliases=("MarginRankingLoss", "margin_ranking_loss"),
        default_wrt=("input1",),
        notes=("target must be -1 or +1: torch's own test samples draw int targets that can be 0 (loss "
        "max(0, margin), no ranking meaning); those are refused. target is not differentiable here."
        + " Hessian diagonal: zero almost everywhere (the loss is piecewise linear); for gradient "
        "boosting, use a constant Hessian instead."),
        category="embedding",
    ),
    LossSpec(
        name="cosine_embedding",
        hessian_vanishes=True,
        hessian="rows",
        summary="Cosine embedding loss: 1 - cos for similar pairs, max(0, cos - margin) for dissimilar.",
        formula="l_i = 1 - cos(x1_i, x2_i) if y_i = 1; max(0, cos(x1_i, x2_i) - margin) if y_i = -1",
        fn=cosine_embedding,
        roles=(
            Role("input1", (Kind.FLOAT,), _VEC_RULE, "first embeddings", differentiable=True),
            Role("input2", (Kind.FLOAT,), "same shape as input1", "second embeddings", differentiable=True),
            Role("target", _SIGN_KINDS, "(N,) or (), values -1 or +1", "+1 similar, -1 dissimilar"),
        ),
        check=_check_cosine_embedding,
        unreduced_shape=_rows_shape("input1"),
        params=(Param("margin", ParamType.FLOAT, 0.0, "cosine below which dissimilar pairs cost nothing",
                      minimum=-1.0, maximum=1.0),),
        aliases=("CosineEmbeddingLoss", "cosine_embedding_loss"),
        default_wrt=("input1",),
        notes="Targets other than -1/+1 are refused.",
        category="embedding",
    ),
)

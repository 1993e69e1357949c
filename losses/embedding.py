"""Margin, embedding and pairwise losses of the torch.nn family.

hinge_embedding, margin_ranking and cosine_embedding compare inputs under a ±1 target (values other
than ±1 are refused: torch would silently mix both branches for them); triplet_margin and
triplet_margin_with_distance pull an anchor towards a positive and away from a negative. Every one
computes exactly what its torch.nn namesake computes, reductions included ("mean" averages over the
N rows or elements).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossd.losses import checks
from lossd.losses.errors import invalid
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, ShapeFn, Tensors

_SIGN_KINDS = (Kind.FLOAT, Kind.INDEX)


def _signs(tensors: Tensors, role: str) -> None:
    """Every element of ``role`` must be exactly -1 or +1."""
    t = tensors[role]
    if not t.numel():
        return
    ok = (t == 1) | (t == -1)
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


# ---------------------------------------------------------------------------------------------------- triplets


def triplet_margin(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    reduction: str = "mean",
    margin: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-6,
    swap: bool = False,
) -> torch.Tensor:
    """Triplet margin loss (``nn.TripletMarginLoss``) on explicit triplets::

        d(x, y) = || x - y + eps ||_p
        l_i = max(0, d(a_i, p_i) - d(a_i, n_i) + margin)

    With ``swap`` the negative distance is min(d(a_i, n_i), d(p_i, n_i)) (Balntas et al. 2016).
    Shapes: anchor (N, D) or (D,), positive and negative same as anchor; output () or (N,) with
    reduction "none".

    >>> float(triplet_margin(torch.tensor([0.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([1.5, 0.0]), eps=0.0))
    0.5
    """
    return F.triplet_margin_loss(anchor, positive, negative, margin=margin, p=p, eps=eps, swap=swap,
                                 reduction=reduction)


def _cosine_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(x, y, dim=-1)


_DISTANCES = {"pairwise_l2": None, "cosine": _cosine_distance}


def triplet_margin_with_distance(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    reduction: str = "mean",
    distance: str = "pairwise_l2",
    margin: float = 1.0,
    swap: bool = False,
) -> torch.Tensor:
    """Triplet margin loss with a named distance (``nn.TripletMarginWithDistanceLoss``)::

        l_i = max(0, d(a_i, p_i) - d(a_i, n_i) + margin)

    ``distance`` is "pairwise_l2" (torch's default ``nn.PairwiseDistance()``: ||x - y + 1e-6||_2) or
    "cosine" (1 - cos(x, y), cos with torch's eps 1e-8 on the norms). With ``swap`` the negative
    distance is min(d(a_i, n_i), d(p_i, n_i)).
    Shapes: anchor (N, D) or (D,), positive and negative same as anchor; output () or (N,) with
    reduction "none".
    """
    return F.triplet_margin_with_distance_loss(anchor, positive, negative, distance_function=_DISTANCES[distance],
                                               margin=margin, swap=swap, reduction=reduction)


def _check_triplet(tensors: Tensors, params: Params) -> None:
    _check_vectors(tensors, "anchor")
    checks.same_shape(tensors, "positive", "anchor")
    checks.same_shape(tensors, "negative", "anchor")


def _triplet_roles() -> tuple[Role, ...]:
    return (
        Role("anchor", (Kind.FLOAT,), _VEC_RULE, "anchor embeddings", differentiable=True),
        Role("positive", (Kind.FLOAT,), "same shape as anchor", "embeddings of the same identity as the anchor",
             differentiable=True),
        Role("negative", (Kind.FLOAT,), "same shape as anchor", "embeddings of another identity",
             differentiable=True),
    )


_SWAP = Param("swap", ParamType.BOOL, False, "use min(d(a, n), d(p, n)) as the negative distance (distance swap)")


SPECS = (
    LossSpec(
        name="hinge_embedding",
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
        notes="Not the binary hinge max(0, 1 - y*x) the tutorial calls HingeEmbeddingLoss (that is 'hinge'). "
        "Targets other than -1/+1 are refused (torch adds both branches for them).",
        category="embedding",
    ),
    LossSpec(
        name="margin_ranking",
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
        notes="target must be -1 or +1: torch's own test samples draw int targets that can be 0 (loss "
        "max(0, margin), no ranking meaning); those are refused. target is not differentiable here.",
        category="embedding",
    ),
    LossSpec(
        name="cosine_embedding",
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
    LossSpec(
        name="triplet_margin",
        summary="Triplet margin loss on explicit (anchor, positive, negative) triplets with an Lp distance.",
        formula="l_i = max(0, ||a_i - p_i + eps||_p - ||a_i - n_i + eps||_p + margin)",
        fn=triplet_margin,
        roles=_triplet_roles(),
        check=_check_triplet,
        unreduced_shape=_rows_shape("anchor"),
        params=(
            Param("margin", ParamType.FLOAT, 1.0, "required gap between negative and positive distances",
                  minimum=0.0, exclusive_minimum=True),
            Param("p", ParamType.FLOAT, 2.0, "norm degree of the distance", minimum=1.0),
            Param("eps", ParamType.FLOAT, 1e-6, "added to the difference before the norm", minimum=0.0),
            _SWAP,
        ),
        aliases=("TripletMarginLoss", "triplet_margin_loss", "triplet"),
        default_wrt=("anchor",),
        notes="Torch's explicit triplets; pytorch-metric-learning's TripletMarginLoss (all triplets from labels, "
        "margin 0.05) is 'batch_triplet'. optax's triplet_margin_loss adds eps differently (diff ~1e-7).",
        category="embedding",
    ),
    LossSpec(
        name="triplet_margin_with_distance",
        summary="Triplet margin loss with a named distance: pairwise L2 (torch's default) or cosine (1 - cos).",
        formula="l_i = max(0, d(a_i, p_i) - d(a_i, n_i) + margin); d = ||x - y + 1e-6||_2 or 1 - cos(x, y)",
        fn=triplet_margin_with_distance,
        roles=_triplet_roles(),
        check=_check_triplet,
        unreduced_shape=_rows_shape("anchor"),
        params=(
            Param("distance", ParamType.STRING, "pairwise_l2", "distance function: pairwise_l2 "
                  "(nn.PairwiseDistance()) or cosine (1 - cosine similarity)", choices=tuple(_DISTANCES)),
            Param("margin", ParamType.FLOAT, 1.0, "required gap between negative and positive distances",
                  minimum=0.0, exclusive_minimum=True),
            _SWAP,
        ),
        aliases=("TripletMarginWithDistanceLoss", "triplet_margin_with_distance_loss"),
        default_wrt=("anchor",),
        notes="torch takes any Python callable as distance_function; a remote service takes a name instead.",
        category="embedding",
    ),
)

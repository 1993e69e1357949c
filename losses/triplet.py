"""Triplet losses of the torch.nn family: triplet_margin and triplet_margin_with_distance.

They pull an anchor towards a positive and away from a negative. Every one computes exactly what its
torch.nn namesake computes, reductions included ("mean" averages over the N rows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossd.losses import checks
from lossd.losses.embedding import _VEC_RULE, _check_vectors, _rows_shape
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, Tensors


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
        name="triplet_margin",
        hessian_vanishes=True,
        hessian="rows",
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
        hessian_vanishes=True,
        hessian="rows",
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

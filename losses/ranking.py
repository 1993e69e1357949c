"""Learning-to-rank losses over lists of scores with graded relevance.

Inputs: ``scores`` (L,) for one query or (Q, L) for Q queries; ``relevance`` of the same shape
(integers or floats, >= 0); an optional boolean ``mask`` of the same shape marks the real items of
padded lists (masked items join no pair and no NDCG). The pairs of a query are the (i, j) with
rel_i > rel_j. Each loss gives one value per query (() for an unbatched (L,) list); "mean" averages
those over the Q queries, and a query without any pair (all relevances equal) contributes 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossd.losses import checks
from lossd.losses.errors import invalid
from lossd.losses.hessian import zero_hessian
from lossd.losses.reduction import reduce_loss
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, Tensors

_EXP2_MAX = 100.0  # 2**100 - 1 is far from float32's overflow at 2**128


def _batched(
    scores: torch.Tensor, relevance: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Q, L) views of the inputs, and the mask (all true when absent)."""
    if scores.dim() == 1:
        scores, relevance = scores[None], relevance[None]
        mask = None if mask is None else mask[None]
    if mask is None:
        mask = torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    return scores, relevance, mask


def _pairs(relevance: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(Q, L, L): true where rel_i > rel_j and both items are real."""
    return (relevance[:, :, None] > relevance[:, None, :]) & mask[:, :, None] & mask[:, None, :]


def _finish(per_query: torch.Tensor, unbatched: bool, reduction: str) -> torch.Tensor:
    if unbatched:
        per_query = per_query[0]
    return reduce_loss(per_query, reduction)


# ---------------------------------------------------------------------------------------------------- pairwise_hinge


def pairwise_hinge(
    scores: torch.Tensor,
    relevance: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
    margin: float = 1.0,
) -> torch.Tensor:
    """Pairwise hinge (RankSVM) loss: every more-relevant item should outscore a less-relevant one by ``margin``::

        l_q = mean_{(i, j): rel_i > rel_j} max(0, margin - (s_i - s_j))       (l_q = 0 without pairs)

    then "mean" averages l_q over the Q queries (every query counts, pairless ones as 0).
    Shapes: scores (L,) or (Q, L), relevance and mask same as scores; output () or (Q,) (() for an
    unbatched list) with reduction "none".
    """
    unbatched = scores.dim() == 1
    s, rel, valid = _batched(scores, relevance, mask)
    pairs = _pairs(rel, valid)
    hinge = torch.relu(margin - (s[:, :, None] - s[:, None, :]))
    total = torch.where(pairs, hinge, torch.zeros_like(hinge)).sum(dim=(1, 2))
    count = pairs.sum(dim=(1, 2)).clamp_min(1).to(s.dtype)
    return _finish(total / count, unbatched, reduction)


# ---------------------------------------------------------------------------------------------------- lambda_rank


def _discounts(positions: torch.Tensor, k: int | None, dtype: torch.dtype) -> torch.Tensor:
    """1 / log2(1 + r) for 1-based positions r, and 0 beyond the cutoff k."""
    d = 1.0 / torch.log2(1.0 + positions.to(dtype))
    if k is not None:
        d = torch.where(positions <= k, d, torch.zeros_like(d))
    return d


def lambda_rank(
    scores: torch.Tensor,
    relevance: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
    sigma: float = 1.0,
    k: int | None = None,
    gain: str = "exp2",
) -> torch.Tensor:
    """LambdaRank: RankNet's pairwise logistic loss weighted by |delta NDCG@k| (Burges 2010), per query::

        l_q = sum_{(i, j): rel_i > rel_j} |dNDCG_ij| * log(1 + exp(-sigma * (s_i - s_j)))
        |dNDCG_ij| = |G_i - G_j| * |D(r_i) - D(r_j)| / IDCG@k

    G = 2^rel - 1 (gain "exp2") or rel ("linear"); r_i = 1-based rank of item i when the real items are
    sorted by descending score (ties: lower index first); D(r) = 1 / log2(1 + r) for r <= k, 0 beyond
    (k None: no cutoff); IDCG@k = sum_{r <= k} G_(r) / log2(1 + r) over the gains sorted descending.
    |dNDCG| (the NDCG change from swapping i and j) is a constant weight: no gradient flows through the
    ranks. The pair terms are summed (not averaged) per query; "mean" averages l_q over the Q queries.
    Shapes: scores (L,) or (Q, L), relevance and mask same as scores; output () or (Q,) (() for an
    unbatched list) with reduction "none".
    """
    unbatched = scores.dim() == 1
    s, rel, valid = _batched(scores, relevance, mask)
    dtype = s.dtype
    g = rel.to(dtype)
    if gain == "exp2":
        g = torch.exp2(g) - 1
    g = torch.where(valid, g, torch.zeros_like(g))
    length = s.shape[1]
    positions = torch.arange(1, length + 1, device=s.device)
    # Current ranks (masked items sort last); the sort is on detached scores, so ranks carry no gradient.
    order = torch.argsort(s.detach().masked_fill(~valid, float("-inf")), dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(1, order, positions.expand_as(order).contiguous())
    disc = _discounts(ranks, k, dtype)
    ideal = torch.sort(g, dim=1, descending=True).values
    idcg = (ideal * _discounts(positions, k, dtype)).sum(dim=1)
    delta = (g[:, :, None] - g[:, None, :]).abs() * (disc[:, :, None] - disc[:, None, :]).abs()
    delta = delta / idcg.clamp_min(torch.finfo(dtype).tiny)[:, None, None]
    pair_loss = F.softplus(-sigma * (s[:, :, None] - s[:, None, :]))
    pairs = _pairs(rel, valid)
    per_query = torch.where(pairs, delta * pair_loss, torch.zeros_like(pair_loss)).sum(dim=(1, 2))
    return _finish(per_query, unbatched, reduction)


# ---------------------------------------------------------------------------------------------------- specs


def _check_lists(tensors: Tensors, params: Params) -> None:
    scores = tensors["scores"]
    if scores.dim() not in (1, 2):
        raise invalid("inputs[scores]", f"shape {checks.shape_text(scores.shape)}; expected (L,) or (Q, L)")
    if scores.dim() == 2 and scores.shape[0] == 0:
        raise invalid("inputs[scores]", f"shape {checks.shape_text(scores.shape)} holds no query; expected Q >= 1")
    checks.same_shape(tensors, "relevance", "scores")
    if tensors.get("mask") is not None:
        checks.same_shape(tensors, "mask", "scores")
    checks.finite(scores, "scores", nan=True)
    checks.non_negative(tensors["relevance"], "relevance", nan=True)


def _check_lambda_rank(tensors: Tensors, params: Params) -> None:
    _check_lists(tensors, params)
    rel = tensors["relevance"]
    if params["gain"] == "exp2" and rel.numel() and float(rel.max()) > _EXP2_MAX:
        raise invalid("inputs[relevance]", f"value {float(rel.max()):g} is too large for gain 'exp2' (2^rel "
                      f"overflows); expected relevance <= {_EXP2_MAX:g}, or gain 'linear'")


def _queries_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    scores = tensors["scores"]
    return () if scores.dim() == 1 else (scores.shape[0],)


def _roles() -> tuple[Role, ...]:
    return (
        Role("scores", (Kind.FLOAT,), "(L,) or (Q, L)", "model scores, higher ranks first", differentiable=True),
        Role("relevance", (Kind.INDEX, Kind.FLOAT), "same shape as scores, >= 0",
             "graded relevance labels (pairs are rel_i > rel_j)"),
        Role("mask", (Kind.BOOL,), "same shape as scores", "true for real items, false for padding",
             required=False),
    )


SPECS = (
    LossSpec(
        name="pairwise_hinge",
        hessian_vanishes=True,
        hessian_fn=zero_hessian,
        hessian="rows",
        summary="Pairwise hinge (RankSVM): mean over pairs rel_i > rel_j of max(0, margin - (s_i - s_j)), per query.",
        formula="l_q = mean_{rel_i > rel_j} max(0, margin - (s_i - s_j)) (0 without pairs); mean over queries",
        fn=pairwise_hinge,
        roles=_roles(),
        check=_check_lists,
        unreduced_shape=_queries_shape,
        params=(Param("margin", ParamType.FLOAT, 1.0, "required score gap between a more and a less relevant item"),),
        aliases=("rank_svm",),
        default_wrt=("scores",),
        notes=("Per query a mean over its pairs, then a mean over queries (pairless queries count as 0); "
        "F.margin_ranking_loss on all pairs pooled weights queries by their pair counts instead."
        + " Hessian diagonal: zero almost everywhere (the loss is piecewise linear); for gradient "
        "boosting, use a constant Hessian instead."),
        category="ranking",
    ),
    LossSpec(
        name="lambda_rank",
        hessian="rows",
        summary="LambdaRank: pairwise logistic loss weighted by the |delta NDCG@k| of swapping each pair.",
        formula="l_q = sum_{rel_i > rel_j} |G_i - G_j| * |D(r_i) - D(r_j)| / IDCG@k "
        "* log(1 + exp(-sigma*(s_i - s_j))); "
        "G = 2^rel - 1 or rel; D(r) = 1/log2(1 + r) if r <= k else 0; r = rank by score (ties by index), "
        "held constant; mean over queries",
        fn=lambda_rank,
        roles=_roles(),
        check=_check_lambda_rank,
        unreduced_shape=_queries_shape,
        params=(
            Param("sigma", ParamType.FLOAT, 1.0, "steepness of the pairwise logistic", minimum=0.0,
                  exclusive_minimum=True),
            Param("k", ParamType.INT, None, "NDCG cutoff: only the top k ranks have a discount (none: all)",
                  minimum=1, nullable=True),
            Param("gain", ParamType.STRING, "exp2", "gain of a relevance: exp2 = 2^rel - 1, linear = rel",
                  choices=("exp2", "linear")),
        ),
        aliases=("LambdaRank", "lambda_loss"),
        default_wrt=("scores",),
        notes="One variant pinned down (Burges 2010, summed per query); the LambdaLoss framework (Wang et al. 2018, "
        "allRank's lambdaLoss) has others. sklearn's ndcg_score uses linear gains.",
        category="ranking",
    ),
)

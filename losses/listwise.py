"""Ranking losses of the extended catalog, on the inputs of lossd.losses.ranking (scores and relevance (L,) or
(Q, L), an optional mask of real items): RankNet (pairwise logistic), ListNet (top-1 softmax) and ListMLE
(Plackett-Luce likelihood). One value per query; "mean" averages over the queries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossd.losses.ranking import _batched, _check_lists, _finish, _pairs, _queries_shape, _roles
from lossd.losses.spec import LossSpec, Param, ParamType

_NEG = -1e30  # masked items' logits: exp(-1e30) is 0 in every float dtype, and no inf - inf appears


def ranknet(scores: torch.Tensor, relevance: torch.Tensor, mask: torch.Tensor | None = None,
            reduction: str = "mean", sigma: float = 1.0) -> torch.Tensor:
    """RankNet (Burges et al., 2005): per query, the mean over its pairs rel_i > rel_j of the logistic loss that
    item i outranks item j::

        l_q = mean_{(i, j): rel_i > rel_j} log(1 + exp(-sigma * (s_i - s_j)))       (0 without pairs)

    then "mean" over the Q queries (as pairwise_hinge). Shapes: scores (L,) or (Q, L), relevance and mask same
    as scores; output () or (Q,) with reduction "none".
    """
    unbatched = scores.dim() == 1
    s, rel, valid = _batched(scores, relevance, mask)
    pairs = _pairs(rel, valid)
    logistic = F.softplus(-sigma * (s[:, :, None] - s[:, None, :]))
    total = torch.where(pairs, logistic, torch.zeros_like(logistic)).sum(dim=(1, 2))
    count = pairs.sum(dim=(1, 2)).clamp_min(1).to(s.dtype)
    return _finish(total / count, unbatched, reduction)


def listnet(scores: torch.Tensor, relevance: torch.Tensor, mask: torch.Tensor | None = None,
            reduction: str = "mean") -> torch.Tensor:
    """ListNet (Cao et al., 2007), top-1: the cross-entropy between the relevance's softmax and the scores'::

        l_q = -sum_i softmax(rel_q)_i * log_softmax(s_q)_i      (over the real items)

    Shapes: scores (L,) or (Q, L), relevance and mask same as scores; output () or (Q,) with reduction "none".
    """
    unbatched = scores.dim() == 1
    s, rel, valid = _batched(scores, relevance, mask)
    target = torch.softmax(rel.to(s.dtype).masked_fill(~valid, _NEG), dim=1)
    log_p = torch.log_softmax(s.masked_fill(~valid, _NEG), dim=1)
    per_query = -(target * torch.where(valid, log_p, torch.zeros_like(log_p))).sum(dim=1)
    return _finish(per_query, unbatched, reduction)


def listmle(scores: torch.Tensor, relevance: torch.Tensor, mask: torch.Tensor | None = None,
            reduction: str = "mean") -> torch.Tensor:
    """ListMLE (Xia et al., 2008): the Plackett-Luce negative log-likelihood of the order by relevance::

        l_q = -sum_i [ s_pi(i) - log sum_{j >= i} exp(s_pi(j)) ]

    pi sorts the real items by descending relevance; ties keep their index order (a stable sort).
    Shapes: scores (L,) or (Q, L), relevance and mask same as scores; output () or (Q,) with reduction "none".
    """
    unbatched = scores.dim() == 1
    s, rel, valid = _batched(scores, relevance, mask)
    # Padding sorts last (rel -inf), and its scores drop out of every suffix sum (logit -1e30).
    keys = rel.to(s.dtype).masked_fill(~valid, float("-inf"))
    order = torch.argsort(keys, dim=1, descending=True, stable=True)
    ordered = s.masked_fill(~valid, _NEG).gather(1, order)
    real = valid.gather(1, order)
    suffix = torch.logcumsumexp(ordered.flip(1), dim=1).flip(1)  # log sum_{j >= i} exp(s_pi(j))
    terms = torch.where(real, suffix - ordered, torch.zeros_like(ordered))
    return _finish(terms.sum(dim=1), unbatched, reduction)


def _list_loss(name: str, fn: object, summary: str, formula: str, alias: str, notes: str,
               params: tuple[Param, ...] = ()) -> LossSpec:
    return LossSpec(name=name, hessian="rows", summary=summary, formula=formula, fn=fn,  # type: ignore[arg-type]
                    roles=_roles(), check=_check_lists, unreduced_shape=_queries_shape, params=params,
                    aliases=(alias,), default_wrt=("scores",), notes=notes, category="ranking")


SPECS = (
    _list_loss("ranknet", ranknet, "RankNet: the pairwise logistic loss over pairs rel_i > rel_j, averaged per query.",
               "l_q = mean_{rel_i > rel_j} log(1 + exp(-sigma*(s_i - s_j))) (0 without pairs); mean over queries",
               "RankNet", "Ties (equal relevance) form no pair. Per query a mean over its pairs, then a mean over "
               "queries, as pairwise_hinge.",
               (Param("sigma", ParamType.FLOAT, 1.0, "steepness of the pairwise logistic", minimum=0.0,
                      exclusive_minimum=True),)),
    _list_loss("listnet", listnet, "ListNet (top-1): cross-entropy between the softmax of the relevance and of the "
               "scores, per query.", "l_q = -sum_i softmax(rel_q)_i * log softmax(s_q)_i", "ListNet",
               "The relevance is turned into a distribution by a softmax (the paper's top-1 probabilities); optax's "
               "ranking_softmax_loss takes the labels as given instead (give it softmax(rel) to compare)."),
    _list_loss("listmle", listmle, "ListMLE: the Plackett-Luce negative log-likelihood of the relevance order, per "
               "query.", "l_q = -sum_i (s_pi(i) - log sum_{j >= i} exp(s_pi(j))), pi: items by descending relevance",
               "ListMLE", "Ties in relevance keep their index order (a stable sort of -relevance)."),
)

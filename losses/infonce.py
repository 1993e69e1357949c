"""InfoNCE losses over a batch of embeddings, with positives fixed by position or by key.

info_nce is the tutorial's InfoNCE (positives are the cyclic neighbours i-1 and i+1), with the standard
denominator by default and ``denominator="seed"`` reproducing the tutorial's double count. moco_info_nce
scores a query against its key and a queue of negatives. Every softmax is computed with log-sum-exp, so
large similarities never overflow, and both losses work on cosine similarities (L2-normalised embeddings)
unless asked for raw dot products with ``normalize=False``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossd.losses import checks
from lossd.losses.contrastive import _masked_logsumexp, _matrix, _rows, _temperature
from lossd.losses.errors import invalid
from lossd.losses.reduction import reduce_loss
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, Tensors


def _normalize() -> Param:
    return Param("normalize", ParamType.BOOL, True, "L2-normalise the embeddings first (cosine similarity); "
                 "false uses raw dot products, for embeddings already normalised")


# ---------------------------------------------------------------------------------------------------- info_nce


def info_nce(
    features: torch.Tensor,
    reduction: str = "mean",
    temperature: float = 0.07,
    positives: str = "adjacent",
    denominator: str = "all_non_self",
    normalize: bool = True,
) -> torch.Tensor:
    """The tutorial's InfoNCE: each row's positives are its cyclic neighbours, summed inside the log.

    With z_i = features_i / ||features_i|| (raw features when ``normalize`` is false), s_ij = z_i.z_j / tau,
    P(i) = {(i - 1) mod N, (i + 1) mod N} (one row when N = 2; the row itself when N = 1)::

        pos_i = sum_{j in P(i)} exp(s_ij)
        all_i = sum_{k != i} exp(s_ik)
        l_i = -log(pos_i / all_i)               denominator = "all_non_self" (standard, default)
        l_i = -log(pos_i / (pos_i + all_i))     denominator = "seed" (the tutorial's code: positives twice)

    computed as log-sum-exps. "mean" averages over the N rows. With N = 2 the standard loss is always 0
    and the seed's log 2; with N = 1 the seed's loss is 0 and the standard one is undefined (refused).
    Shapes: features (N, D); output () or (N,) with reduction "none".
    """
    z = F.normalize(features, dim=1) if normalize else features
    sim = z @ z.T / temperature
    n = sim.shape[0]
    rows = torch.arange(n, device=sim.device)
    pos = torch.zeros(n, n, dtype=torch.bool, device=sim.device)
    if positives == "adjacent":
        pos[rows, (rows + 1) % n] = True
        pos[rows, (rows - 1) % n] = True
    eye = torch.eye(n, dtype=torch.bool, device=sim.device)
    lse_pos = _masked_logsumexp(sim, pos)
    lse_all = _masked_logsumexp(sim, ~eye)
    if denominator == "seed":
        lse_all = torch.logaddexp(lse_pos, lse_all)
    return reduce_loss(lse_all - lse_pos, reduction)


def _check_info_nce(tensors: Tensors, params: Params) -> None:
    _matrix(tensors, "features")
    if tensors["features"].shape[0] < 2 and params["denominator"] == "all_non_self":
        raise invalid("inputs[features]", "has 1 row: the standard denominator (every other row) is empty, so "
                      "the loss is undefined; expected N >= 2 (denominator='seed' gives 0 for N = 1)")


# ---------------------------------------------------------------------------------------------------- moco_info_nce


def moco_info_nce(
    query: torch.Tensor,
    key: torch.Tensor,
    queue: torch.Tensor,
    reduction: str = "mean",
    temperature: float = 0.07,
    normalize: bool = True,
) -> torch.Tensor:
    """MoCo's InfoNCE: each query against its own key (the positive) and a queue of K negatives.

    With q, k, u the L2-normalised query, key and queue rows (raw when ``normalize`` is false)::

        logits_i = [q_i.k_i, q_i.u_1, ..., q_i.u_K] / tau
        l_i = -log_softmax(logits_i)[0]

    i.e. cross-entropy with label 0. MoCo stops the gradient at the key and the queue; Gradient
    differentiates the query by default and key/queue only when asked. "mean" averages over N queries.
    Shapes: query (N, D), key (N, D), queue (K, D); output () or (N,) with reduction "none".
    """
    if normalize:
        query, key, queue = (F.normalize(t, dim=1) for t in (query, key, queue))
    logits = torch.cat([(query * key).sum(dim=1, keepdim=True), query @ queue.T], dim=1) / temperature
    return reduce_loss(torch.logsumexp(logits, dim=1) - logits[:, 0], reduction)


def _check_moco(tensors: Tensors, params: Params) -> None:
    _matrix(tensors, "query")
    checks.same_shape(tensors, "key", "query")
    checks.finite(tensors["key"], "key", nan=True)
    queue, d = tensors["queue"], tensors["query"].shape[1]
    if queue.dim() != 2 or queue.shape[1] != d:
        raise invalid("inputs[queue]", f"shape {checks.shape_text(queue.shape)}; expected (K, {d}), the query's "
                      "embedding size")
    checks.finite(queue, "queue", nan=True)


SPECS = (
    LossSpec(
        name="info_nce",
        row_wise=False,
        summary="The tutorial's InfoNCE: positives are the cyclic neighbours i-1 and i+1 in the batch.",
        formula="l_i = -log(sum_{j in {i-1, i+1} mod N} exp(s_ij) / D_i); s_ij = cos(f_i, f_j)/tau; "
        "D_i = sum_{k != i} exp(s_ik) (all_non_self) or that plus the positives' sum again (seed)",
        fn=info_nce,
        roles=(Role("features", (Kind.FLOAT,), "(N, D)", "one embedding per row; rows i and i+1 are positives",
                    differentiable=True),),
        check=_check_info_nce,
        unreduced_shape=_rows("features"),
        params=(
            _temperature(),
            Param("positives", ParamType.STRING, "adjacent", "which rows are positives: adjacent = i-1 and i+1, "
                  "cyclic (the tutorial's)", choices=("adjacent",)),
            Param("denominator", ParamType.STRING, "all_non_self", "all_non_self: every other row once (standard); "
                  "seed: the tutorial's code, which adds the positives a second time",
                  choices=("all_non_self", "seed")),
            _normalize(),
        ),
        aliases=("InfoNCELoss",),
        default_wrt=("features",),
        notes="The tutorial's code counts positives twice in the denominator (denominator='seed' reproduces it), "
        "skips L2 normalisation (normalize=false) and overflows without a max-shift (log-sum-exp here).",
        category="contrastive",
    ),
    LossSpec(
        name="moco_info_nce",
        row_wise=False,
        summary="MoCo InfoNCE: cross-entropy of [q.k, q.queue^T]/tau against label 0.",
        formula="l_i = -log(exp(q_i.k_i/tau) / (exp(q_i.k_i/tau) + sum_j exp(q_i.u_j/tau))), L2-normalised rows",
        fn=moco_info_nce,
        roles=(
            Role("query", (Kind.FLOAT,), "(N, D)", "query embeddings", differentiable=True),
            Role("key", (Kind.FLOAT,), "(N, D), same as query", "positive key of each query (MoCo stops its "
                 "gradient; differentiable on request)", differentiable=True),
            Role("queue", (Kind.FLOAT,), "(K, D), D as query", "negative keys (MoCo stops its gradient; "
                 "differentiable on request)", differentiable=True),
        ),
        check=_check_moco,
        unreduced_shape=_rows("query"),
        params=(_temperature(), _normalize()),
        aliases=("moco", "MoCo"),
        default_wrt=("query",),
        notes="Normalises query, key and queue by default (MoCo's model does so before the loss); "
        "temperature 0.07 is MoCo v1's (v2 uses 0.2).",
        category="contrastive",
    ),
)

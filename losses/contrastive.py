"""Contrastive and metric-learning losses over a batch of labelled embeddings: nt_xent and circle.

nt_xent (SimCLR / optax / pytorch-metric-learning) and circle take labels: samples sharing a label are
positives. Every softmax is computed with log-sum-exp (masked entries are -inf), so large similarities
never overflow, and both losses work on cosine similarities (L2-normalised embeddings). The InfoNCE
losses (info_nce, moco_info_nce) are in :mod:`lossd.losses.infonce`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossd.losses import checks
from lossd.losses.errors import invalid
from lossd.losses.reduction import reduce_loss
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, ShapeFn, Tensors


def _masked_logsumexp(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Row-wise log-sum-exp over the entries where ``keep`` holds; -inf for a row that keeps none."""
    return torch.logsumexp(values.masked_fill(~keep, float("-inf")), dim=1)


def _temperature() -> Param:
    return Param("temperature", ParamType.FLOAT, 0.07, "softmax temperature tau (similarities are divided by it)",
                 minimum=0.0, exclusive_minimum=True)


def _matrix(tensors: Tensors, role: str, rule: str = "(N, D)") -> None:
    t = tensors[role]
    if t.dim() != 2:
        raise invalid(checks.field(role), f"shape {checks.shape_text(t.shape)}; expected {rule}")
    if t.shape[0] < 1 or t.shape[1] < 1:
        raise invalid(checks.field(role), f"shape {checks.shape_text(t.shape)} is empty; expected {rule} "
                      "with at least one row and one column")
    checks.finite(t, role, nan=True)


def _labels(tensors: Tensors, like: str) -> None:
    labels, n = tensors["labels"], tensors[like].shape[0]
    if tuple(labels.shape) != (n,):
        raise invalid("inputs[labels]", f"shape {checks.shape_text(labels.shape)}; expected ({n},), one label "
                      f"per row of {like}")


def _rows(role: str) -> ShapeFn:
    def shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
        return (tensors[role].shape[0],)

    return shape


# ---------------------------------------------------------------------------------------------------- nt_xent


def _positive_pairs(labels: torch.Tensor) -> torch.Tensor:
    same = labels[:, None] == labels[None, :]
    return same & ~torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)


def nt_xent(
    embeddings: torch.Tensor, labels: torch.Tensor, reduction: str = "mean", temperature: float = 0.07
) -> torch.Tensor:
    """NT-Xent (SimCLR; optax ``ntxent``; pytorch-metric-learning ``NTXentLoss``) over labelled embeddings.

    With s_ij = cos(e_i, e_j) / tau, for every ordered positive pair (a, p) (a != p, labels equal) and the
    negatives N(a) = {n : label_n != label_a}::

        l_ap = -log(exp(s_ap) / (exp(s_ap) + sum_{n in N(a)} exp(s_an)))

    Other positives of a are not in the denominator. "mean" averages over the P ordered positive pairs
    (as optax and pml do); "none" lists them in row-major (a, p) order. The SimCLR two-view form (z1, z2)
    is embeddings = concat(z1, z2) with labels = [0..N-1, 0..N-1]. A batch with no positive pair is refused.
    Shapes: embeddings (M, D), labels (M,) integers; output () or (P,) with reduction "none".
    """
    z = F.normalize(embeddings, dim=1)
    sim = z @ z.T / temperature
    pos = _positive_pairs(labels)
    lse_neg = _masked_logsumexp(sim, labels[:, None] != labels[None, :])
    anchor, positive = pos.nonzero(as_tuple=True)
    s_ap = sim[anchor, positive]
    return reduce_loss(torch.logaddexp(s_ap, lse_neg[anchor]) - s_ap, reduction)


def _check_labelled(tensors: Tensors, params: Params) -> None:
    _matrix(tensors, "embeddings", "(M, D)")
    _labels(tensors, "embeddings")


def _check_nt_xent(tensors: Tensors, params: Params) -> None:
    _check_labelled(tensors, params)
    if not bool(_positive_pairs(tensors["labels"]).any()):
        raise invalid("inputs[labels]", "no two samples share a label, so there is no positive pair and the mean "
                      "over positive pairs is undefined; expected at least one label that occurs twice")


def _pairs_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return (int(_positive_pairs(tensors["labels"]).sum()),)


# ---------------------------------------------------------------------------------------------------- circle


def circle(
    embeddings: torch.Tensor, labels: torch.Tensor, reduction: str = "mean", m: float = 0.4, gamma: float = 80.0
) -> torch.Tensor:
    """Circle loss (Sun et al. 2020), pair-label form, as pytorch-metric-learning's ``CircleLoss``.

    With s_ij = cos(e_i, e_j), positives P(i) = {j != i : label_j = label_i}, negatives N(i) = {label_j != label_i},
    and weights alpha computed on detached similarities (no gradient flows through them)::

        alpha_p = max(0, 1 + m - s_ip),  alpha_n = max(0, s_in + m)
        l_i = softplus(logsumexp_{p in P(i)} -gamma*alpha_p*(s_ip - (1 - m))
                       + logsumexp_{n in N(i)}  gamma*alpha_n*(s_in - m))

    l_i = 0 for an anchor with no positive or no negative (so a batch without any positive pair gives 0).
    "mean" averages over all N anchors, zeros included (pml with MeanReducer; Keras' circle(...).mean()).
    Shapes: embeddings (N, D), labels (N,) integers; output () or (N,) with reduction "none".
    """
    z = F.normalize(embeddings, dim=1)
    sim = z @ z.T
    pos = _positive_pairs(labels)
    neg = labels[:, None] != labels[None, :]
    fixed = sim.detach()
    alpha_p = torch.relu(1 + m - fixed)
    alpha_n = torch.relu(fixed + m)
    lse_p = _masked_logsumexp(-gamma * alpha_p * (sim - (1 - m)), pos)
    lse_n = _masked_logsumexp(gamma * alpha_n * (sim - m), neg)
    valid = pos.any(dim=1) & neg.any(dim=1)
    total = torch.where(valid, lse_p + lse_n, torch.zeros_like(lse_p))
    losses = torch.where(valid, F.softplus(total), torch.zeros_like(lse_p))
    return reduce_loss(losses, reduction)


_EMBEDDINGS = Role("embeddings", (Kind.FLOAT,), "(M, D)", "embeddings (normalised inside)", differentiable=True)
_LABELS = Role("labels", (Kind.INDEX,), "(M,) integers", "class labels; samples with equal labels are positives")


SPECS = (
    LossSpec(
        name="nt_xent",
        row_wise=False,
        summary="NT-Xent (SimCLR) over labelled embeddings: mean over positive pairs of a softmax against negatives.",
        formula="l_ap = -log(exp(s_ap) / (exp(s_ap) + sum_{n: y_n != y_a} exp(s_an))); s = cos/tau; "
        "mean over ordered positive pairs (a != p, y_a = y_p)",
        fn=nt_xent,
        roles=(_EMBEDDINGS, _LABELS),
        check=_check_nt_xent,
        unreduced_shape=_pairs_shape,
        params=(_temperature(),),
        aliases=("NTXentLoss", "ntxent", "simclr"),
        default_wrt=("embeddings",),
        notes="Equals optax.losses.ntxent and pml NTXentLoss. The SimCLR view pair is concat(z1, z2) with labels "
        "[0..N-1, 0..N-1]. A batch without a positive pair is refused (pml answers 0, optax NaN).",
        category="contrastive",
    ),
    LossSpec(
        name="circle",
        row_wise=False,
        summary="Circle loss (pair-label form) with self-paced weights on cosine similarities.",
        formula="l_i = softplus(lse_p(-gamma*a_p*(s_ip - 1 + m)) + lse_n(gamma*a_n*(s_in - m))); "
        "a_p = [1 + m - s_ip]+, a_n = [s_in + m]+ detached; mean over all anchors",
        fn=circle,
        roles=(_EMBEDDINGS, _LABELS),
        check=_check_labelled,
        unreduced_shape=_rows("embeddings"),
        params=(
            Param("m", ParamType.FLOAT, 0.4, "relaxation margin (pml and Keras default 0.4; the paper used 0.25)",
                  minimum=0.0, maximum=1.0),
            Param("gamma", ParamType.FLOAT, 80.0, "scale (pml and Keras default 80; the paper used 256 for faces)",
                  minimum=0.0, exclusive_minimum=True),
        ),
        aliases=("CircleLoss",),
        default_wrt=("embeddings",),
        notes="pml's default reducer averages only non-zero anchors (AvgNonZero); here 'mean' is over all anchors "
        "(pml MeanReducer). Keras' circle does not normalise nor detach the weights (its gradients differ).",
        category="contrastive",
    ),
)

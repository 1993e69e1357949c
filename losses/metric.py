"""Metric-learning losses of the extended catalog, as pytorch-metric-learning defines them (no miner):
contrastive, batch_triplet, multi_similarity, supcon and npairs over labelled embeddings, and the classification
forms arcface, cosface (class weights) and proxy_anchor (proxies).

Embeddings (and class weights, proxies) are L2-normalized; "distance" is the Euclidean distance of normalized
embeddings, "similarity" their cosine. The pair and triplet losses couple every sample of the batch: they give one
value ("mean", each with pml's own averaging); arcface and cosface give one value per sample.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lossd.losses import checks
from lossd.losses.contrastive import _check_labelled, _matrix, _positive_pairs
from lossd.losses.errors import invalid
from lossd.losses.reduction import reduce_loss
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, Tensors

_SMALL = 1e-16  # pml's small_val in divisions


def _cosines(embeddings: torch.Tensor) -> torch.Tensor:
    z = F.normalize(embeddings, dim=1)
    return z @ z.T


def _distances(embeddings: torch.Tensor) -> torch.Tensor:
    """Euclidean distances of L2-normalized embeddings: sqrt(2 - 2 cos), exactly 0 on the diagonal."""
    z = F.normalize(embeddings, dim=1)
    squared = (z[:, None, :] - z[None, :, :]).square().sum(dim=-1)
    return torch.sqrt(squared.clamp_min(1e-30)) * (squared > 0)


def _masked_lse_plus_one(values: torch.Tensor, keep: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """log(1 + sum exp(values)) over the kept entries (0 where none is kept)."""
    masked = values.masked_fill(~keep, float("-inf"))
    zero = torch.zeros_like(masked.select(dim, 0)).unsqueeze(dim)
    return torch.logsumexp(torch.cat([masked, zero], dim=dim), dim=dim)


def _avg_non_zero(losses: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """pml's AvgNonZeroReducer: the mean over the entries above 0 (NaN is not above 0, so left out); when none is,
    sum(embeddings * 0), which is 0, or NaN when an embedding holds one."""
    positive = losses > 0
    count = positive.sum()
    total = torch.where(positive, losses, torch.zeros_like(losses)).sum()
    return torch.where(count > 0, total / count.clamp_min(1), (embeddings * 0).sum())


def contrastive(embeddings: torch.Tensor, labels: torch.Tensor, reduction: str = "mean", pos_margin: float = 0.0,
                neg_margin: float = 1.0) -> torch.Tensor:
    """Contrastive loss over all pairs (Hadsell et al.; pml's ContrastiveLoss with MeanReducer)::

        mean_{positive pairs} [d_ij - pos_margin]+  +  mean_{negative pairs} [neg_margin - d_ij]+

    d: Euclidean distance of normalized embeddings; a mean over no pair is 0.
    Shapes: embeddings (M, D), labels (M,) integers; output ().
    """
    d = _distances(embeddings)
    pos = _positive_pairs(labels)
    neg = labels[:, None] != labels[None, :]
    pos_term = (torch.relu(d - pos_margin) * pos).sum() / pos.sum().clamp_min(1)
    neg_term = (torch.relu(neg_margin - d) * neg).sum() / neg.sum().clamp_min(1)
    return pos_term + neg_term


def batch_triplet(embeddings: torch.Tensor, labels: torch.Tensor, reduction: str = "mean",
                  margin: float = 0.05) -> torch.Tensor:
    """Triplet margin loss over every triplet of the batch (pml's TripletMarginLoss, AvgNonZero)::

        l_apn = [d_ap - d_an + margin]+   for a != p with y_a = y_p, and y_n != y_a

    averaged over the triplets whose loss is above 0 (0 when none is).
    Shapes: embeddings (M, D), labels (M,) integers; output ().
    """
    d = _distances(embeddings)
    pos = _positive_pairs(labels)
    neg = labels[:, None] != labels[None, :]
    triplets = pos[:, :, None] & neg[:, None, :]
    losses = torch.relu(d[:, :, None] - d[:, None, :] + margin)
    return _avg_non_zero(losses[triplets], embeddings)


def multi_similarity(embeddings: torch.Tensor, labels: torch.Tensor, reduction: str = "mean", alpha: float = 2.0,
                     beta: float = 50.0, base: float = 0.5) -> torch.Tensor:
    """Multi-similarity loss (Wang et al., 2019; pml's MultiSimilarityLoss, no miner), per anchor i::

        l_i = 1/alpha log(1 + sum_p exp(-alpha (s_ip - base))) + 1/beta log(1 + sum_n exp(beta (s_in - base)))

    averaged over all anchors. Shapes: embeddings (M, D), labels (M,) integers; output ().
    """
    s = _cosines(embeddings)
    pos = _positive_pairs(labels)
    neg = labels[:, None] != labels[None, :]
    pos_loss = _masked_lse_plus_one(-alpha * (s - base), pos) / alpha
    neg_loss = _masked_lse_plus_one(beta * (s - base), neg) / beta
    return (pos_loss + neg_loss).mean()


def supcon(embeddings: torch.Tensor, labels: torch.Tensor, reduction: str = "mean",
           temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al., 2020; pml's SupConLoss), per anchor i with positives P(i)::

        l_i = -mean_{p in P(i)} log( exp(s_ip/tau) / sum_{k != i} exp(s_ik/tau) )

    averaged over the anchors whose loss is above 0 (pml's AvgNonZero). Shapes: embeddings (M, D), labels (M,);
    output ().
    """
    logits = _cosines(embeddings) / temperature
    pos = _positive_pairs(labels)
    others = ~torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    log_prob = logits - torch.logsumexp(logits.masked_fill(~others, float("-inf")), dim=1, keepdim=True)
    per_anchor = -(log_prob * pos).sum(dim=1) / (pos.sum(dim=1) + _SMALL)
    return _avg_non_zero(per_anchor, embeddings)


def _first_two(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each label (in order of first appearance), the indices of its first two samples."""
    anchors, positives = [], []
    seen: dict[int, int] = {}
    for i, label in enumerate(labels.tolist()):
        if label not in seen:
            seen[label] = i
        elif seen[label] >= 0:
            anchors.append(seen[label])
            positives.append(i)
            seen[label] = -1
    index = torch.tensor(anchors, dtype=torch.long, device=labels.device)
    return index, torch.tensor(positives, dtype=torch.long, device=labels.device)


def npairs(embeddings: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """N-pair loss (Sohn, 2016; pml's NPairsLoss): for each label, its first sample is an anchor and its second
    the positive; the loss is the cross-entropy of the anchors' cosine similarities to every positive, with the
    own one as the class. Shapes: embeddings (M, D), labels (M,), each label at least twice; output ().
    """
    a, p = _first_two(labels)
    za, zp = F.normalize(embeddings[a], dim=1), F.normalize(embeddings[p], dim=1)
    return F.cross_entropy(za @ zp.T, torch.arange(len(a), device=embeddings.device))


def _class_cosines(embeddings: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return F.normalize(embeddings, dim=1) @ F.normalize(weights, dim=1).T


def arcface(embeddings: torch.Tensor, class_weights: torch.Tensor, labels: torch.Tensor, reduction: str = "mean",
            margin: float = 0.5, scale: float = 64.0) -> torch.Tensor:
    """ArcFace (Deng et al., 2019): softmax cross-entropy over scale * cos, the true class's angle widened by
    ``margin`` (radians): logit_y = scale * cos(theta_y + margin), falling back to scale * (cos theta_y -
    margin * sin margin) where theta_y > pi - margin (the paper's, so that the logit keeps decreasing).

    Shapes: embeddings (N, D), class_weights (C, D), labels (N,); output () or (N,) with reduction "none".
    """
    cos = _class_cosines(embeddings, class_weights)
    true = cos.gather(1, labels.long()[:, None]).clamp(-1 + 1e-7, 1 - 1e-7)
    theta = torch.acos(true)
    widened = torch.where(theta > math.pi - margin, true - margin * math.sin(margin), torch.cos(theta + margin))
    logits = scale * cos.scatter(1, labels.long()[:, None], widened)
    return reduce_loss(F.cross_entropy(logits, labels.long(), reduction="none"), reduction)


def cosface(embeddings: torch.Tensor, class_weights: torch.Tensor, labels: torch.Tensor, reduction: str = "mean",
            margin: float = 0.35, scale: float = 64.0) -> torch.Tensor:
    """CosFace (Wang et al., 2018): softmax cross-entropy over scale * cos, the true class's cosine lowered by
    ``margin``: logit_y = scale * (cos theta_y - margin).

    Shapes: embeddings (N, D), class_weights (C, D), labels (N,); output () or (N,) with reduction "none".
    """
    cos = _class_cosines(embeddings, class_weights)
    index = labels.long()[:, None]
    logits = scale * cos.scatter(1, index, cos.gather(1, index) - margin)
    return reduce_loss(F.cross_entropy(logits, labels.long(), reduction="none"), reduction)


def proxy_anchor(embeddings: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor, reduction: str = "mean",
                 margin: float = 0.1, alpha: float = 32.0) -> torch.Tensor:
    """Proxy-Anchor loss (Kim et al., 2020; pml's ProxyAnchorLoss), with s the cosine of embeddings and proxies::

        1/|C+| sum_{c in C+} log(1 + sum_{i: y_i = c} exp(-alpha (s_ic - margin)))
      + 1/C    sum_c        log(1 + sum_{i: y_i != c} exp(alpha (s_ic + margin)))

    C+: the classes with a sample in the batch. Shapes: embeddings (N, D), proxies (C, D), labels (N,); output ().
    """
    s = _class_cosines(embeddings, proxies)
    pos = F.one_hot(labels.long(), proxies.shape[0]).bool()
    pos_term = _masked_lse_plus_one(-alpha * (s - margin), pos, dim=0)
    neg_term = _masked_lse_plus_one(alpha * (s + margin), ~pos, dim=0)
    with_positives = pos.any(dim=0)
    return (pos_term * with_positives).sum() / with_positives.sum().clamp_min(1) + neg_term.mean()


def _check_npairs(tensors: Tensors, params: Params) -> None:
    _check_labelled(tensors, params)
    labels = tensors["labels"]
    counts = torch.unique(labels, return_counts=True)[1]
    if not bool((counts >= 2).all()):
        raise invalid("inputs[labels]", "a label occurs once; npairs takes an anchor and a positive for every "
                      "label (each label at least twice)")


def _check_classes(role: str) -> object:
    def check(tensors: Tensors, params: Params) -> None:
        _matrix(tensors, "embeddings")
        _matrix(tensors, role, "(C, D)")
        if tensors[role].shape[1] != tensors["embeddings"].shape[1]:
            raise invalid(checks.field(role), f"shape {checks.shape_text(tensors[role].shape)}; expected (C, "
                          f"{tensors['embeddings'].shape[1]}), one row per class, as wide as the embeddings")
        labels, n = tensors["labels"], tensors["embeddings"].shape[0]
        if tuple(labels.shape) != (n,):
            raise invalid("inputs[labels]", f"shape {checks.shape_text(labels.shape)}; expected ({n},)")
        checks.class_indices(labels, "labels", tensors[role].shape[0], None)
    return check


def _scalar(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return ()


def _samples(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return (tensors["embeddings"].shape[0],)


_EMBEDDINGS = Role("embeddings", (Kind.FLOAT,), "(M, D)", "embeddings (normalized inside)", differentiable=True)
_LABELS = Role("labels", (Kind.INDEX,), "(M,) integers", "class labels; samples with equal labels are positives")
_CLASS_LABELS = Role("labels", (Kind.INDEX,), "(N,) class indices in [0, C)", "each sample's class")


def _pair_loss(name: str, fn: object, summary: str, formula: str, params: tuple[Param, ...], alias: str, notes: str,
               check: object = _check_labelled) -> LossSpec:
    return LossSpec(name=name, summary=summary, formula=formula, fn=fn, roles=(_EMBEDDINGS, _LABELS),  # type: ignore[arg-type]
                    check=check, unreduced_shape=_scalar, params=params, aliases=(alias,),  # type: ignore[arg-type]
                    reductions=("mean",), default_wrt=("embeddings",), row_wise=False, notes=notes,
                    category="metric")


def _margin_softmax(name: str, fn: object, summary: str, formula: str, margin: Param, aliases: tuple[str, ...],
                    notes: str) -> LossSpec:
    return LossSpec(
        name=name, summary=summary, formula=formula, fn=fn,  # type: ignore[arg-type]
        roles=(_EMBEDDINGS, Role("class_weights", (Kind.FLOAT,), "(C, D)", "one learnable vector per class "
                                 "(normalized inside)", differentiable=True), _CLASS_LABELS),
        check=_check_classes("class_weights"), unreduced_shape=_samples,  # type: ignore[arg-type]
        params=(margin, Param("scale", ParamType.FLOAT, 64.0, "the logits' scale s", minimum=0.0,
                              exclusive_minimum=True)),
        aliases=aliases, default_wrt=("embeddings", "class_weights"), hessian="rows", hessian_roles=("embeddings",),
        notes=notes, category="metric")


SPECS = (
    _pair_loss("contrastive", contrastive, "Contrastive loss over all pairs: positives pulled within pos_margin, "
               "negatives pushed beyond neg_margin.",
               "mean_pos [d - pos_margin]+ + mean_neg [neg_margin - d]+, d on normalized embeddings",
               (Param("pos_margin", ParamType.FLOAT, 0.0, "distance below which a positive pair costs nothing"),
                Param("neg_margin", ParamType.FLOAT, 1.0, "distance beyond which a negative pair costs nothing")),
               "ContrastiveLoss", "pml's ContrastiveLoss with MeanReducer (its default reducer averages only the "
               "non-zero pairs). Not monai's ContrastiveLoss, which is SimCLR-like."),
    _pair_loss("batch_triplet", batch_triplet, "Triplet margin loss over every triplet of a labelled batch.",
               "mean over non-zero [d_ap - d_an + margin]+, every a != p same label, n other label",
               (Param("margin", ParamType.FLOAT, 0.05, "required gap between d_an and d_ap (pml's default)"),),
               "batch_all_triplet", "pml's TripletMarginLoss with no miner (all triplets, AvgNonZero); the name "
               "TripletMarginLoss stays torch's, the three-tensor form: triplet_margin."),
    _pair_loss("multi_similarity", multi_similarity, "Multi-similarity loss: soft weighting of positive and "
               "negative pairs by their own and their neighbours' similarities.",
               "mean_i 1/alpha log(1 + sum_p e^{-alpha(s_ip - base)}) + 1/beta log(1 + sum_n e^{beta(s_in - base)})",
               (Param("alpha", ParamType.FLOAT, 2.0, "positive scale", minimum=0.0, exclusive_minimum=True),
                Param("beta", ParamType.FLOAT, 50.0, "negative scale", minimum=0.0, exclusive_minimum=True),
                Param("base", ParamType.FLOAT, 0.5, "similarity offset lambda")),
               "MultiSimilarityLoss", "pml's MultiSimilarityLoss with no miner, averaged over all anchors."),
    _pair_loss("supcon", supcon, "Supervised contrastive loss: each anchor's positives against all other samples.",
               "mean over non-zero l_i, l_i = -mean_{p in P(i)} log softmax_{k != i}(s_ik / tau)_p",
               (Param("temperature", ParamType.FLOAT, 0.1, "softmax temperature tau", minimum=0.0,
                      exclusive_minimum=True),),
               "SupConLoss", "pml's SupConLoss (AvgNonZero over anchors). It equals NT-Xent when each anchor has "
               "exactly one positive."),
    _pair_loss("npairs", npairs, "N-pair loss: each label's anchor against every label's positive, a softmax.",
               "CE(cos(anchors, positives), arange); anchor, positive: a label's first two samples",
               (), "NPairsLoss", "pml's NPairsLoss: cosine similarities (its embeddings are normalized), no L2 "
               "regularizer; samples after a label's second are not used.", _check_npairs),
    _margin_softmax("arcface", arcface, "ArcFace: softmax over scaled cosines with an additive angular margin on the "
                    "true class.", "CE(s * [cos(theta_y + m) for y, cos theta_j otherwise])",
                    Param("margin", ParamType.FLOAT, 0.5, "angular margin m, in radians (pml takes degrees)",
                          minimum=0.0, maximum=math.pi / 2),
                    ("ArcFaceLoss", "additive_angular_margin"),
                    "pml's ArcFaceLoss with the margin in radians (pml's 28.6 degrees is 0.5) and class_weights "
                    "(C, D) = pml's W transposed; past theta > pi - m the logit falls back to cos theta - m sin m "
                    "(pml has no fallback)."),
    _margin_softmax("cosface", cosface, "CosFace: softmax over scaled cosines with an additive cosine margin on the "
                    "true class.", "CE(s * [cos theta_y - m for y, cos theta_j otherwise])",
                    Param("margin", ParamType.FLOAT, 0.35, "cosine margin m", minimum=0.0),
                    ("CosFaceLoss", "large_margin_cosine"),
                    "pml's CosFaceLoss, class_weights (C, D) = pml's W transposed."),
    LossSpec(
        name="proxy_anchor",
        summary="Proxy-Anchor loss: each class proxy pulls its samples and pushes the others, softly.",
        formula="1/|C+| sum_{c in C+} log(1 + sum_{y_i=c} e^{-alpha(s_ic - m)}) + 1/C sum_c log(1 + sum_{y_i!=c} "
        "e^{alpha(s_ic + m)})",
        fn=proxy_anchor,
        roles=(_EMBEDDINGS, Role("proxies", (Kind.FLOAT,), "(C, D)", "one learnable proxy per class (normalized "
                                 "inside)", differentiable=True), _CLASS_LABELS),
        check=_check_classes("proxies"),  # type: ignore[arg-type]
        unreduced_shape=_scalar,
        params=(Param("margin", ParamType.FLOAT, 0.1, "margin delta", minimum=0.0),
                Param("alpha", ParamType.FLOAT, 32.0, "scale", minimum=0.0, exclusive_minimum=True)),
        aliases=("ProxyAnchorLoss",),
        reductions=("mean",),
        default_wrt=("embeddings", "proxies"),
        row_wise=False,
        notes="pml's ProxyAnchorLoss with its proxies given as the proxies role.",
        category="metric",
    ),
)

"""The extended distribution and similarity losses: Jensen-Shannon divergence between probability rows, and the
cosine losses between vectors (Keras' sign: a loss, -cos; optax's distance, 1 - cos).

Each gives one value per row (per vector along the last dimension): "none" keeps those, "mean" averages them,
"sum" adds them.
"""

from __future__ import annotations

import torch

from lossd.losses import checks
from lossd.losses.errors import invalid
from lossd.losses.reduction import reduce_loss
from lossd.losses.spec import Kind, LossSpec, Params, Role, Tensors

# Keras' l2_normalize: x / sqrt(max(sum(x^2), 1e-12)), so that a zero vector gives 0, not NaN.
_NORM_EPS = 1e-12


def js_div(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Jensen-Shannon divergence between the rows of P (``input``) and Q (``target``), natural log::

        l_i = 0.5 * KL(P_i || M_i) + 0.5 * KL(Q_i || M_i),   M = (P + Q) / 2,   0 log 0 = 0

    Symmetric, and bounded by log 2. The rows are taken as given (not renormalized).
    Shapes: input (N, C) or unbatched (C,), target same as input; output () or (N,) with reduction "none".
    """
    m = 0.5 * (input + target)
    # xlogy(p, p) - xlogy(p, m) is p log(p/m), 0 where p = 0 (and its gradient stays finite there).
    kl_p = torch.xlogy(input, input) - torch.xlogy(input, m)
    kl_q = torch.xlogy(target, target) - torch.xlogy(target, m)
    return reduce_loss(0.5 * (kl_p + kl_q).sum(dim=-1), reduction)


def _cosine(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """cos(x1, x2) along the last dimension, each vector normalized as Keras' l2_normalize does."""
    a = x1 * torch.rsqrt((x1 * x1).sum(dim=-1, keepdim=True).clamp_min(_NORM_EPS))
    b = x2 * torch.rsqrt((x2 * x2).sum(dim=-1, keepdim=True).clamp_min(_NORM_EPS))
    return (a * b).sum(dim=-1)


def cosine_similarity(x1: torch.Tensor, x2: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Keras' cosine-similarity loss: ``l_i = -cos(x1_i, x2_i)`` along the last dimension (-1 for vectors that
    point the same way, so that minimizing it aligns them).

    Shapes: x1 (..., D), x2 same as x1; output () or x1's shape without its last dimension with "none".
    """
    return reduce_loss(-_cosine(x1, x2), reduction)


def cosine_distance(x1: torch.Tensor, x2: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """optax's cosine distance: ``l_i = 1 - cos(x1_i, x2_i)`` along the last dimension, in [0, 2].

    Shapes: x1 (..., D), x2 same as x1; output () or x1's shape without its last dimension with "none".
    """
    return reduce_loss(1.0 - _cosine(x1, x2), reduction)


def _check_js(tensors: Tensors, params: Params) -> None:
    p = tensors["input"]
    if p.dim() not in (1, 2):
        raise invalid("inputs[input]", f"shape {checks.shape_text(p.shape)}; expected (N, C) or (C,) probabilities")
    checks.same_shape(tensors, "target", "input")
    checks.in_range(p, "input", 0.0, 1.0)
    checks.in_range(tensors["target"], "target", 0.0, 1.0)


def _rows(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return tuple(tensors["input"].shape[:-1])


def _check_vectors(tensors: Tensors, params: Params) -> None:
    x1 = tensors["x1"]
    if x1.dim() < 1:
        raise invalid("inputs[x1]", "a 0-d tensor; expected vectors along the last dimension, (..., D)")
    checks.same_shape(tensors, "x2", "x1")


def _vector_rows(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return tuple(tensors["x1"].shape[:-1])


_P = Role("input", (Kind.FLOAT,), "(N, C) or unbatched (C,), probabilities in [0, 1]", "P, one distribution a row",
          differentiable=True)
_Q = Role("target", (Kind.FLOAT,), "same shape as input, probabilities in [0, 1]", "Q, one distribution a row",
          differentiable=True)
_X1 = Role("x1", (Kind.FLOAT,), "(..., D): vectors along the last dimension", "prediction", differentiable=True)
_X2 = Role("x2", (Kind.FLOAT,), "same shape as x1", "target vectors", differentiable=True)

SPECS = (
    LossSpec(
        name="js_div",
        hessian="rows",
        summary="Jensen-Shannon divergence between probability rows: symmetric, bounded by log 2.",
        formula="l_i = 0.5*KL(P_i || M_i) + 0.5*KL(Q_i || M_i), M = (P + Q)/2",
        fn=js_div,
        roles=(_P, _Q),
        check=_check_js,
        unreduced_shape=_rows,
        aliases=("jensen_shannon", "jensen_shannon_divergence"),
        default_wrt=("input",),
        notes="Natural log (scipy's jensenshannon squared, with its default base). Rows are taken as given, not "
        "renormalized as scipy does. kornia's js_div_loss_2d is this over heat-maps, not an alias: its shapes "
        "differ.",
        category="distribution",
    ),
    LossSpec(
        name="cosine_similarity",
        hessian="rows",
        summary="Cosine-similarity loss, Keras' sign: -cos(x1, x2) along the last dimension.",
        formula="l_i = -<x1_i, x2_i> / (|x1_i| |x2_i|)",
        fn=cosine_similarity,
        roles=(_X1, _X2),
        check=_check_vectors,
        unreduced_shape=_vector_rows,
        aliases=("CosineSimilarity",),
        default_wrt=("x1",),
        notes="Keras' convention: a loss (-cos), where optax's and torch's cosine_similarity return +cos, a "
        "similarity. Norms are clamped as Keras' l2_normalize does (squared norm >= 1e-12), so a zero vector "
        "gives 0.",
        category="similarity",
    ),
    LossSpec(
        name="cosine_distance",
        hessian="rows",
        summary="Cosine distance (optax): 1 - cos(x1, x2) along the last dimension, in [0, 2].",
        formula="l_i = 1 - <x1_i, x2_i> / (|x1_i| |x2_i|)",
        fn=cosine_distance,
        roles=(_X1, _X2),
        check=_check_vectors,
        unreduced_shape=_vector_rows,
        default_wrt=("x1",),
        notes="optax's cosine_distance (epsilon 0 there; here squared norms are clamped at 1e-12, as Keras does).",
        category="similarity",
    ),
)

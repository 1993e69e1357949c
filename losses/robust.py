"""The extended regression losses: squared log error and percentage error (Keras' forms), and four robust
losses bounded in their growth (kornia's forms).

Each compares a prediction ``input`` with a ``target`` element by element (shapes must match exactly) and
reduces like the core regression losses: "mean" (default) over every element, "sum", or "none" (input's shape).
"""

from __future__ import annotations

import torch

from lossd.losses import checks
from lossd.losses.hessian import zero_hessian
from lossd.losses.reduction import reduce_loss
from lossd.losses.spec import Kind, LossSpec, Params, Role, Tensors

# Keras clips with its backend epsilon: log1p(0) for a zero prediction, and no division by a zero target.
_EPS = 1e-7
_INPUT = Role("input", (Kind.FLOAT,), "any shape (*)", "prediction", differentiable=True)
_TARGET = Role("target", (Kind.FLOAT,), "same shape as input", "ground truth", differentiable=True)
_FIXED_TARGET = Role("target", (Kind.FLOAT,), "same shape as input", "ground truth")
_COUNTS = Role("target", (Kind.FLOAT,), "same shape as input, values >= 0", "ground truth, non-negative")


def msle(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean squared logarithmic error (Keras)::

        l_i = (log1p(max(input_i, eps)) - log1p(max(target_i, eps)))^2,   eps = 1e-7

    Predictions below eps are clipped (their gradient is 0), as Keras does; targets must be >= 0.
    Shapes: input (*), target same as input; output () or (*) with reduction "none".

    >>> round(float(msle(torch.tensor([1.0]), torch.tensor([0.0]))), 6)
    0.480453
    """
    return reduce_loss((torch.log1p(input.clamp_min(_EPS)) - torch.log1p(target.clamp_min(_EPS))).square(), reduction)


def mape(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean absolute percentage error, in percent (Keras)::

        l_i = 100 * |target_i - input_i| / max(|target_i|, eps),   eps = 1e-7

    Shapes: input (*), target same as input; output () or (*) with reduction "none".

    >>> float(mape(torch.tensor([1.5, 2.0]), torch.tensor([1.0, 4.0])))
    50.0
    """
    return reduce_loss(100.0 * (target - input).abs() / target.abs().clamp_min(_EPS), reduction)


def charbonnier(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Charbonnier (pseudo-Huber with scale 1): ``l_i = sqrt(d_i^2 + 1) - 1``, ``d = input - target``.

    Shapes: input (*), target same as input; output () or (*) with reduction "none".
    """
    d = input - target
    return reduce_loss(torch.sqrt(d * d + 1.0) - 1.0, reduction)


def cauchy(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cauchy (Lorentzian): ``l_i = log(0.5 d_i^2 + 1)``, ``d = input - target``.

    Shapes: input (*), target same as input; output () or (*) with reduction "none".
    """
    d = input - target
    return reduce_loss(torch.log1p(0.5 * d * d), reduction)


def geman_mcclure(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Geman-McClure: ``l_i = 2 d_i^2 / (d_i^2 + 4)``, ``d = input - target`` (bounded by 2).

    Shapes: input (*), target same as input; output () or (*) with reduction "none".
    """
    d2 = (input - target).square()
    return reduce_loss(2.0 * d2 / (d2 + 4.0), reduction)


def welsch(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Welsch (Leclerc): ``l_i = 1 - exp(-0.5 d_i^2)``, ``d = input - target`` (bounded by 1).

    Shapes: input (*), target same as input; output () or (*) with reduction "none".
    """
    d = input - target
    return reduce_loss(1.0 - torch.exp(-0.5 * d * d), reduction)


def _check_pair(tensors: Tensors, params: Params) -> None:
    checks.same_shape(tensors, "target", "input")


def _check_counts(tensors: Tensors, params: Params) -> None:
    checks.same_shape(tensors, "target", "input")
    checks.non_negative(tensors["target"], "target", nan=True)


def _input_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return tuple(tensors["input"].shape)


_NON_CONVEX = (" Not convex: its Hessian diagonal turns negative for large errors (boosting adapters floor it)."
               " kornia's default reduction is 'none'; lossd's is mean.")


def _robust(name: str, fn: object, summary: str, formula: str, alias: str, notes: str) -> LossSpec:
    return LossSpec(
        name=name, hessian="elementwise", batchable=True, summary=summary, formula=formula, fn=fn,  # type: ignore[arg-type]
        roles=(_INPUT, _TARGET), check=_check_pair, unreduced_shape=_input_shape, aliases=(alias,),
        notes=notes, category="regression")


SPECS = (
    LossSpec(
        name="msle",
        hessian="elementwise",
        batchable=True,
        summary="Mean squared logarithmic error: squared differences of log(1 + x), for targets spanning scales.",
        formula="l_i = (log1p(max(input_i, 1e-7)) - log1p(max(target_i, 1e-7)))^2",
        fn=msle,
        roles=(_INPUT, _COUNTS),
        check=_check_counts,
        unreduced_shape=_input_shape,
        aliases=("mean_squared_logarithmic_error", "MeanSquaredLogarithmicError"),
        notes="Keras' form: predictions below 1e-7 are clipped (gradient 0 there); targets must be >= 0 "
        "(sklearn's mean_squared_log_error refuses negatives too).",
        category="regression",
    ),
    LossSpec(
        name="mape",
        hessian="elementwise",
        hessian_fn=zero_hessian,
        hessian_vanishes=True,
        batchable=True,
        summary="Mean absolute percentage error, in percent.",
        formula="l_i = 100 * |target_i - input_i| / max(|target_i|, 1e-7)",
        fn=mape,
        roles=(_INPUT, _FIXED_TARGET),
        check=_check_pair,
        unreduced_shape=_input_shape,
        aliases=("mean_absolute_percentage_error", "MeanAbsolutePercentageError"),
        notes="In percent, as Keras (sklearn's mean_absolute_percentage_error is the fraction). A zero target "
        "divides by 1e-7 (Keras' epsilon), not by zero. Hessian diagonal: zero almost everywhere (the loss is "
        "piecewise linear); for gradient boosting, use a constant Hessian instead.",
        category="regression",
    ),
    _robust("charbonnier", charbonnier, "Charbonnier loss: sqrt(d^2 + 1) - 1, a smooth L1 (pseudo-Huber, scale 1).",
            "l_i = sqrt(d_i^2 + 1) - 1, d = input - target", "charbonnier_loss",
            "kornia's charbonnier_loss; convex. kornia's default reduction is 'none'; lossd's is mean."),
    _robust("cauchy", cauchy, "Cauchy (Lorentzian) loss: log(0.5 d^2 + 1), robust to outliers.",
            "l_i = log(0.5*d_i^2 + 1), d = input - target", "cauchy_loss", "kornia's cauchy_loss." + _NON_CONVEX),
    _robust("geman_mcclure", geman_mcclure, "Geman-McClure loss: 2 d^2 / (d^2 + 4), bounded by 2.",
            "l_i = 2*d_i^2 / (d_i^2 + 4), d = input - target", "geman_mcclure_loss",
            "kornia's geman_mcclure_loss." + _NON_CONVEX),
    _robust("welsch", welsch, "Welsch (Leclerc) loss: 1 - exp(-0.5 d^2), bounded by 1.",
            "l_i = 1 - exp(-0.5*d_i^2), d = input - target", "welsch_loss", "kornia's welsch_loss." + _NON_CONVEX),
)

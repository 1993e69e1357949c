"""Regression losses: MSE, MAE, Huber, smooth L1 and log-cosh.

Each compares a prediction ``input`` with a ``target`` element by element (the shapes must match
exactly), then reduces: "mean" (default) averages over every element, "sum" adds them, "none" keeps the shape.
Pinball (quantile) losses are in :mod:`lossd.losses.quantile`, the Poisson and Gaussian negative
log-likelihoods in :mod:`lossd.losses.likelihood`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lossd.losses import checks, small
from lossd.losses.hessian import mse_hessian, zero_hessian
from lossd.losses.reduction import reduce_loss
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, Tensors

_INPUT = Role("input", (Kind.FLOAT,), "any shape (*)", "prediction", differentiable=True)
_TARGET = Role("target", (Kind.FLOAT,), "same shape as input", "ground truth", differentiable=True)


def _check_pair(tensors: Tensors, params: Params) -> None:
    checks.same_shape(tensors, "target", "input")


def _input_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return tuple(tensors["input"].shape)


def mse(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean squared error: ``l_i = (input_i - target_i)^2``.

    Shapes: input (*), target same as input; output () or (*) with reduction "none".

    >>> float(mse(torch.tensor([1.0, 2.0]), torch.tensor([1.5, 3.0])))
    0.625
    """
    return F.mse_loss(input, target, reduction=reduction)


def mae(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean absolute error (L1): ``l_i = |input_i - target_i|``; its gradient at 0 is 0.

    Shapes: input (*), target same as input; output () or (*) with reduction "none".

    >>> float(mae(torch.tensor([1.0, 2.0]), torch.tensor([1.5, 3.0])))
    0.75
    """
    return F.l1_loss(input, target, reduction=reduction)


def _scale(reduction: str, numel: int, upstream: torch.Tensor | None) -> float | torch.Tensor:
    """d(reduce(l)) / d(l_i) times the upstream gradient: 1/N for mean, 1 for sum, grad_output for none."""
    if reduction == "none":
        return upstream if upstream is not None else 1.0
    factor = 1.0 / numel if reduction == "mean" and numel else 1.0
    return factor * upstream if upstream is not None else factor


def _reduce_sum_of(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return values
    total = values.sum()
    return total / values.numel() if reduction == "mean" else total


def _mse_value_and_grad(tensors: Tensors, params: Params, reduction: str, wrt: tuple[str, ...],
                        upstream: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """MSE and its gradient, 2 (input - target) / N, without an autograd graph: one temporary.

    With an empty ``wrt``, the value alone (fewer kernel launches than F.mse_loss's).
    """
    diff = tensors["input"] - tensors["target"]
    if reduction == "none":
        loss = diff.square() if wrt else diff.square_()  # without a gradient, diff is not needed again
    else:
        flat = diff if diff.dim() == 1 else diff.reshape(-1)
        loss = torch.dot(flat, flat) if flat.numel() else flat.sum()  # dot: no n-sized temporary
        loss = loss / diff.numel() if reduction == "mean" else loss
    if not wrt:
        return loss, {}
    grad = diff.mul_(2.0).mul_(_scale(reduction, diff.numel(), upstream))  # reuses diff's memory
    return loss, _signed(grad, wrt)


def _mae_value_and_grad(tensors: Tensors, params: Params, reduction: str, wrt: tuple[str, ...],
                        upstream: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """MAE and its gradient, sign(input - target) / N (0 where they are equal, as torch); with an empty
    ``wrt``, the value alone."""
    diff = tensors["input"] - tensors["target"]
    loss = _reduce_sum_of(diff.abs(), reduction)
    if not wrt:
        return loss, {}
    grad = diff.sign_().mul_(_scale(reduction, diff.numel(), upstream))
    return loss, _signed(grad, wrt)


def _signed(grad_input: torch.Tensor, wrt: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The input's gradient, and the target's (its negation) when asked for."""
    out = {}
    if "input" in wrt:
        out["input"] = grad_input
    if "target" in wrt:
        out["target"] = grad_input.neg() if "input" in wrt else grad_input.neg_()
    return out


def huber(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean", delta: float = 1.0) -> torch.Tensor:
    """Huber loss with threshold ``delta`` > 0, on ``e_i = input_i - target_i``::

        l_i = 0.5 * e_i^2                    if |e_i| <= delta
        l_i = delta * (|e_i| - 0.5 * delta)  otherwise

    Quadratic (MSE-like) near zero, linear (MAE-like, robust to outliers) beyond ``delta``.
    Shapes: input (*), target same as input; output () or (*) with reduction "none".

    >>> float(huber(torch.tensor([0.0, 0.0]), torch.tensor([0.5, 3.0])))
    1.3125
    """
    return F.huber_loss(input, target, reduction=reduction, delta=delta)


def smooth_l1(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean", beta: float = 1.0) -> torch.Tensor:
    """Smooth L1 loss with threshold ``beta`` >= 0, on ``e_i = input_i - target_i``::

        l_i = 0.5 * e_i^2 / beta   if |e_i| < beta
        l_i = |e_i| - 0.5 * beta   otherwise

    It equals ``huber(delta=beta) / beta``; ``beta = 0`` gives the plain L1 loss.
    Shapes: input (*), target same as input; output () or (*) with reduction "none".

    >>> float(smooth_l1(torch.tensor([0.0, 0.0]), torch.tensor([0.5, 3.0])))
    1.3125
    """
    return F.smooth_l1_loss(input, target, reduction=reduction, beta=beta)


def log_cosh(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Log-cosh loss ``l_i = log(cosh(e_i))``, ``e_i = input_i - target_i``, in the overflow-free form::

        log(cosh(e)) = e + softplus(-2e) - log(2)

    Smooth everywhere: about e^2/2 near zero and |e| - log 2 far away; its gradient is tanh(e).
    Shapes: input (*), target same as input; output () or (*) with reduction "none".

    >>> float(log_cosh(torch.tensor([1000.0]), torch.tensor([0.0]))) > 999.0
    True
    """
    e = input - target
    return reduce_loss(e + F.softplus(-2.0 * e) - math.log(2.0), reduction)


SPECS = (
    LossSpec(
        name="mse",
        small_value=small.mse,
        hessian_fn=mse_hessian,
        hessian="elementwise",
        batchable=True,
        summary="Mean squared error (L2 loss): the average of squared differences.",
        formula="l_i = (input_i - target_i)^2",
        fn=mse,
        roles=(_INPUT, _TARGET),
        check=_check_pair,
        unreduced_shape=_input_shape,
        value_and_grad=_mse_value_and_grad,
        aliases=("MSELoss", "mse_loss", "mean_squared_error", "MeanSquaredError", "l2", "squared_error"),
        notes="Shapes must match exactly (torch would broadcast with a warning). 'l2_loss' is not an alias: "
        "optax's l2_loss is 0.5*(x-y)^2.",
        category="regression",
    ),
    LossSpec(
        name="mae",
        small_value=small.mae,
        hessian_vanishes=True,
        hessian_fn=zero_hessian,
        hessian="elementwise",
        batchable=True,
        summary="Mean absolute error (L1 loss): the average of absolute differences.",
        formula="l_i = |input_i - target_i|",
        fn=mae,
        roles=(_INPUT, _TARGET),
        check=_check_pair,
        unreduced_shape=_input_shape,
        value_and_grad=_mae_value_and_grad,
        aliases=("L1Loss", "l1_loss", "l1", "mean_absolute_error", "MeanAbsoluteError"),
        notes=("The gradient at input == target is 0 (torch's sign(0))."
        + " Hessian diagonal: zero almost everywhere (the loss is piecewise linear); for gradient "
        "boosting, use a constant Hessian instead."),
        category="regression",
    ),
    LossSpec(
        name="huber",
        small_value=small.huber,
        hessian_vanishes=True,
        hessian="elementwise",
        batchable=True,
        summary="Huber loss: quadratic for errors up to delta, linear beyond (robust to outliers).",
        formula="l_i = 0.5*e^2 if |e| <= delta else delta*(|e| - 0.5*delta), e = input_i - target_i",
        fn=huber,
        roles=(_INPUT, _TARGET),
        check=_check_pair,
        unreduced_shape=_input_shape,
        params=(
            Param("delta", ParamType.FLOAT, 1.0, "where the loss turns from quadratic to linear; "
                  "larger is more MSE-like, smaller more robust", minimum=0.0, exclusive_minimum=True),
        ),
        aliases=("HuberLoss", "huber_loss", "Huber"),
        notes=("Equals torch's HuberLoss, optax's huber_loss and Keras' Huber (per element, then averaged)."
        + " Hessian diagonal: 1 where |input - target| <= delta, zero beyond (the linear part)."),
        category="regression",
    ),
    LossSpec(
        name="smooth_l1",
        small_value=small.smooth_l1,
        hessian_vanishes=True,
        hessian="elementwise",
        batchable=True,
        summary="Smooth L1 loss: quadratic (scaled by 1/beta) below beta, L1 beyond; huber(delta=beta)/beta.",
        formula="l_i = 0.5*e^2/beta if |e| < beta else |e| - 0.5*beta, e = input_i - target_i",
        fn=smooth_l1,
        roles=(_INPUT, _TARGET),
        check=_check_pair,
        unreduced_shape=_input_shape,
        params=(
            Param("beta", ParamType.FLOAT, 1.0, "where the loss turns from quadratic to linear; 0 gives L1",
                  minimum=0.0),
        ),
        aliases=("SmoothL1Loss", "smooth_l1_loss"),
        notes=("torch's SmoothL1Loss; unlike huber its linear part has slope 1 (huber's has slope delta)."
        + " Hessian diagonal: 1/beta where |input - target| < beta, zero beyond (the linear part)."),
        category="regression",
    ),
    LossSpec(
        name="log_cosh",
        hessian="elementwise",
        batchable=True,
        summary="Log-cosh loss: smooth everywhere, ~e^2/2 for small errors and ~|e| - log 2 for large ones.",
        formula="l_i = log(cosh(e)) = e + softplus(-2e) - log 2, e = input_i - target_i",
        fn=log_cosh,
        roles=(_INPUT, _TARGET),
        check=_check_pair,
        unreduced_shape=_input_shape,
        aliases=("logcosh", "LogCosh"),
        notes="Computed in the tutorial's stable form (its naive log(cosh(e)) overflows for |e| > ~89 in float32); "
        "equals optax's log_cosh and Keras' LogCosh.",
        category="regression",
    ),
)

"""Regression losses: MSE, MAE, Huber, smooth L1, log-cosh, pinball (single and multi-quantile),
Poisson and Gaussian negative log-likelihoods.

Each compares a prediction ``input`` with a ``target`` element by element (the shapes must match
exactly, except multi_quantile's one column per quantile and gaussian_nll's homoscedastic ``var``),
then reduces: "mean" (default) averages over every element, "sum" adds them, "none" keeps the shape.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lossd.losses import checks
from lossd.losses.errors import invalid
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


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def log_cosh(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Log-cosh loss ``l_i = log(cosh(e_i))``, ``e_i = input_i - target_i``, in the overflow-free form::

        log(cosh(e)) = e + softplus(-2e) - log(2)

    Smooth everywhere: about e^2/2 near zero and |e| - log 2 far away; its gradient is tanh(e).
    Shapes: input (*), target same as input; output () or (*) with reduction "none".

    >>> float(log_cosh(torch.tensor([1000.0]), torch.tensor([0.0]))) > 999.0
    True
    """
    e = input - target
    return _reduce(e + F.softplus(-2.0 * e) - math.log(2.0), reduction)


def quantile(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean", quantile: float = 0.5) -> torch.Tensor:
    """Pinball (quantile) loss for quantile level ``q`` in (0, 1), on ``e_i = target_i - input_i``::

        l_i = q * e_i        if e_i > 0   (under-prediction)
        l_i = (q - 1) * e_i  otherwise    (over-prediction)

    Minimised by the q-th quantile of the target; q = 0.5 gives 0.5 * MAE (not MAE).
    Shapes: input (*), target same as input; output () or (*) with reduction "none".

    >>> float(quantile(torch.tensor([0.0, 0.0]), torch.tensor([1.0, -1.0]), quantile=0.9))
    0.5
    """
    e = target - input
    return _reduce(torch.where(e > 0, quantile * e, (quantile - 1.0) * e), reduction)


def multi_quantile(
    input: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    quantiles: tuple[float, ...] | list[float] = (0.1, 0.5, 0.9),
) -> torch.Tensor:
    """Pinball loss for several quantile levels at once: column k of ``input`` predicts quantile q_k::

        l_ik = q_k * e_ik if e_ik > 0 else (q_k - 1) * e_ik,   e_ik = target_i - input_ik

    "mean" is the mean over k of the per-quantile means (= the mean over all N*Q elements).
    A target column (N, 1) is read as (N,), never broadcast to (N, N).
    Shapes: input (N, Q) with Q = len(quantiles), target (N,) or (N, 1); output () or (N, Q) with "none".

    >>> float(multi_quantile(torch.zeros(1, 2), torch.tensor([1.0]), quantiles=[0.25, 0.75]))
    0.5
    """
    if target.dim() == 2:
        target = target.squeeze(1)
    q = torch.tensor(list(quantiles), dtype=input.dtype, device=input.device)
    e = target.unsqueeze(1) - input
    return _reduce(torch.where(e > 0, q * e, (q - 1.0) * e), reduction)


def poisson_nll(
    input: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    log_input: bool = True,
    full: bool = False,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Poisson negative log-likelihood of counts ``target`` under a predicted rate (torch's PoissonNLLLoss)::

        l_i = exp(input_i) - target_i * input_i             if log_input (input is the log-rate)
        l_i = input_i - target_i * log(input_i + eps)       otherwise (input is the rate)

    ``full`` adds Stirling's approximation of log(target!): t log t - t + 0.5 log(2 pi t), where t > 1.
    Shapes: input (*), target same as input; output () or (*) with reduction "none".

    >>> round(float(poisson_nll(torch.tensor([0.0]), torch.tensor([2.0]))), 4)
    1.0
    """
    return F.poisson_nll_loss(input, target, log_input=log_input, full=full, eps=eps, reduction=reduction)


def gaussian_nll(
    input: torch.Tensor,
    target: torch.Tensor,
    var: torch.Tensor,
    reduction: str = "mean",
    full: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Gaussian negative log-likelihood of ``target`` under mean ``input`` and variance ``var`` (torch's)::

        l_i = 0.5 * (log(max(var_i, eps)) + (input_i - target_i)^2 / max(var_i, eps))  [+ 0.5 * log(2 pi) if full]

    The clamp to ``eps`` is applied without gradient tracking, so the gradient passes through it unchanged.
    Shapes: input (*), target same as input, var same as input, or input's shape without its last
    dimension, or input's shape with one dimension of size 1 (homoscedastic); output () or input's shape.

    >>> float(gaussian_nll(torch.tensor([0.0]), torch.tensor([2.0]), torch.tensor([1.0])))
    2.0
    """
    return F.gaussian_nll_loss(input, target, var, full=full, eps=eps, reduction=reduction)


def _check_multi_quantile(tensors: Tensors, params: Params) -> None:
    x, t = tensors["input"], tensors["target"]
    n_q = len(params["quantiles"])
    if n_q < 1:
        raise invalid("params[quantiles]", "is empty; expected at least one quantile level in (0, 1)")
    if x.dim() != 2:
        raise invalid("inputs[input]", f"shape {checks.shape_text(x.shape)}; expected (N, Q), one column per "
                      f"quantile (Q = {n_q})")
    if x.shape[1] != n_q:
        raise invalid("inputs[input]", f"shape {checks.shape_text(x.shape)} has {x.shape[1]} columns; expected "
                      f"{n_q}, one per entry of quantiles")
    n = x.shape[0]
    if tuple(t.shape) not in ((n,), (n, 1)):
        raise invalid("inputs[target]", f"shape {checks.shape_text(t.shape)} does not fit input "
                      f"{checks.shape_text(x.shape)}; expected ({n},) or ({n}, 1)")


def _check_poisson(tensors: Tensors, params: Params) -> None:
    checks.same_shape(tensors, "target", "input")
    checks.non_negative(tensors["target"], "target")
    if not params["log_input"]:
        x = tensors["input"]
        checks.non_negative(x, "input")


def _gaussian_var_fits(x: torch.Size, v: torch.Size) -> bool:
    if v == x or v == x[:-1]:
        return True
    mismatched = [(a, b) for a, b in zip(x, v, strict=False) if a != b]
    return len(v) == len(x) and len(mismatched) == 1 and mismatched[0][1] == 1


def _check_gaussian(tensors: Tensors, params: Params) -> None:
    checks.same_shape(tensors, "target", "input")
    x, var = tensors["input"], tensors["var"]
    if not _gaussian_var_fits(x.shape, var.shape):
        raise invalid("inputs[var]", f"shape {checks.shape_text(var.shape)} does not fit input "
                      f"{checks.shape_text(x.shape)}; expected input's shape, input's shape without the last "
                      "dimension, or input's shape with a single dimension of size 1")
    checks.finite(var, "var")
    if var.numel() and bool((var <= 0).any()):
        flat = (var <= 0).reshape(-1).nonzero()[0].item()
        raise invalid("inputs[var]", f"value {var.reshape(-1)[flat].item():g} at flat index {flat} is not "
                      "positive; expected variances > 0")


def _multi_quantile_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return tuple(tensors["input"].shape)


SPECS = (
    LossSpec(
        name="mse",
        summary="Mean squared error (L2 loss): the average of squared differences.",
        formula="l_i = (input_i - target_i)^2",
        fn=mse,
        roles=(_INPUT, _TARGET),
        check=_check_pair,
        unreduced_shape=_input_shape,
        aliases=("MSELoss", "mse_loss", "mean_squared_error", "MeanSquaredError", "l2", "squared_error"),
        notes="Shapes must match exactly (torch would broadcast with a warning). 'l2_loss' is not an alias: "
        "optax's l2_loss is 0.5*(x-y)^2.",
        category="regression",
    ),
    LossSpec(
        name="mae",
        summary="Mean absolute error (L1 loss): the average of absolute differences.",
        formula="l_i = |input_i - target_i|",
        fn=mae,
        roles=(_INPUT, _TARGET),
        check=_check_pair,
        unreduced_shape=_input_shape,
        aliases=("L1Loss", "l1_loss", "l1", "mean_absolute_error", "MeanAbsoluteError"),
        notes="The gradient at input == target is 0 (torch's sign(0)).",
        category="regression",
    ),
    LossSpec(
        name="huber",
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
        notes="Equals torch's HuberLoss, optax's huber_loss and Keras' Huber (per element, then averaged).",
        category="regression",
    ),
    LossSpec(
        name="smooth_l1",
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
        notes="torch's SmoothL1Loss; unlike huber its linear part has slope 1 (huber's has slope delta).",
        category="regression",
    ),
    LossSpec(
        name="log_cosh",
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
    LossSpec(
        name="quantile",
        summary="Pinball (quantile) loss: asymmetric L1 whose minimiser is the q-th quantile of the target.",
        formula="l_i = q*e if e > 0 else (q - 1)*e, e = target_i - input_i",
        fn=quantile,
        roles=(_INPUT, _TARGET),
        check=_check_pair,
        unreduced_shape=_input_shape,
        params=(
            Param("quantile", ParamType.FLOAT, 0.5, "quantile level q; under-predictions cost q, over-predictions "
                  "1 - q", minimum=0.0, maximum=1.0, exclusive_minimum=True, exclusive_maximum=True),
        ),
        aliases=("pinball", "pinball_loss", "quantile_loss", "mean_pinball_loss"),
        notes="quantile=0.5 gives 0.5*MAE, not MAE as the tutorial's docstring says; equals sklearn's "
        "mean_pinball_loss(alpha=q).",
        category="regression",
    ),
    LossSpec(
        name="multi_quantile",
        summary="Pinball loss for several quantile levels at once, one input column per quantile.",
        formula="l_ik = q_k*e if e > 0 else (q_k - 1)*e, e = target_i - input_ik; mean over i and k",
        fn=multi_quantile,
        roles=(
            Role("input", (Kind.FLOAT,), "(N, Q), Q = len(quantiles)", "predicted quantiles, one column per level",
                 differentiable=True),
            Role("target", (Kind.FLOAT,), "(N,) or (N, 1)", "ground truth, one value per row", differentiable=True),
        ),
        check=_check_multi_quantile,
        unreduced_shape=_multi_quantile_shape,
        params=(
            Param("quantiles", ParamType.FLOAT_LIST, [0.1, 0.5, 0.9], "the quantile levels, one per input column",
                  minimum=0.0, maximum=1.0, exclusive_minimum=True, exclusive_maximum=True),
        ),
        aliases=("MultiQuantileLoss", "quantiles"),
        notes="A (N, 1) target is read as (N,); the tutorial's code broadcasts it to (N, N) silently.",
        category="regression",
    ),
    LossSpec(
        name="poisson_nll",
        summary="Poisson negative log-likelihood of counts under a predicted rate (or log-rate).",
        formula="l_i = exp(x_i) - t_i*x_i if log_input else x_i - t_i*log(x_i + eps) "
        "[+ t*log(t) - t + 0.5*log(2*pi*t) where t > 1, if full]",
        fn=poisson_nll,
        roles=(
            Role("input", (Kind.FLOAT,), "any shape (*); >= 0 when log_input is false",
                 "predicted log-rate (log_input) or rate", differentiable=True),
            Role("target", (Kind.FLOAT,), "same shape as input, values >= 0", "observed counts",
                 differentiable=True),
        ),
        check=_check_poisson,
        unreduced_shape=_input_shape,
        params=(
            Param("log_input", ParamType.BOOL, True, "input is the log of the rate (else the rate itself)"),
            Param("full", ParamType.BOOL, False, "add Stirling's approximation of log(target!) where target > 1"),
            Param("eps", ParamType.FLOAT, 1e-8, "added to the rate inside the log when log_input is false",
                  minimum=0.0, exclusive_minimum=True),
        ),
        aliases=("PoissonNLLLoss", "poisson_nll_loss", "poisson", "Poisson"),
        presets={"poisson": {"log_input": False, "eps": 1e-7}, "Poisson": {"log_input": False, "eps": 1e-7}},
        notes="'poisson'/'Poisson' take the rate itself with eps=1e-7, reproducing Keras' Poisson; "
        "PoissonNLLLoss keeps torch's defaults (log-rate input, eps=1e-8).",
        category="regression",
    ),
    LossSpec(
        name="gaussian_nll",
        summary="Gaussian negative log-likelihood of the target under a predicted mean and variance.",
        formula="l_i = 0.5*(log(max(var_i, eps)) + (input_i - target_i)^2 / max(var_i, eps)) "
        "[+ 0.5*log(2*pi) if full]",
        fn=gaussian_nll,
        roles=(
            Role("input", (Kind.FLOAT,), "any shape (*)", "predicted mean", differentiable=True),
            Role("target", (Kind.FLOAT,), "same shape as input", "observed value", differentiable=True),
            Role("var", (Kind.FLOAT,), "input's shape; or input's shape without its last dimension, or with one "
                 "dimension of size 1 (shared variance); values > 0", "predicted variance", differentiable=True),
        ),
        check=_check_gaussian,
        unreduced_shape=_input_shape,
        params=(
            Param("full", ParamType.BOOL, False, "add the constant 0.5*log(2*pi) (the exact negative log-density)"),
            Param("eps", ParamType.FLOAT, 1e-6, "variances are clamped to at least eps (the gradient passes "
                  "through the clamp)", minimum=0.0, exclusive_minimum=True),
        ),
        aliases=("GaussianNLLLoss", "gaussian_nll_loss"),
        notes="torch's GaussianNLLLoss; variances must be > 0 (torch accepts 0 and clamps it to eps).",
        category="regression",
    ),
)

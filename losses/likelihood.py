"""Regression losses as negative log-likelihoods: Poisson (counts under a predicted rate) and Gaussian
(a target under a predicted mean and variance).

Each compares a prediction ``input`` with a ``target`` element by element (the shapes must match
exactly, except gaussian_nll's homoscedastic ``var``), then reduces: "mean" (default) averages over
every element, "sum" adds them, "none" keeps the shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossd.losses import checks
from lossd.losses.errors import invalid
from lossd.losses.regression import _input_shape
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, Tensors


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


def _check_poisson(tensors: Tensors, params: Params) -> None:
    checks.same_shape(tensors, "target", "input")
    checks.non_negative(tensors["target"], "target", nan=True)
    if not params["log_input"]:
        x = tensors["input"]
        checks.non_negative(x, "input", nan=True)


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
    checks.finite(var, "var", nan=True)
    if var.numel() and bool((var <= 0).any()):
        flat = (var <= 0).reshape(-1).nonzero()[0].item()
        raise invalid("inputs[var]", f"value {var.reshape(-1)[flat].item():g} at flat index {flat} is not "
                      "positive; expected variances > 0")


SPECS = (
    LossSpec(
        name="poisson_nll",
        hessian="elementwise",
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
        hessian="elementwise",
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

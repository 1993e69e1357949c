"""Quantile regression losses: the pinball loss for one quantile level, and for several at once.

Each compares a prediction ``input`` with a ``target`` element by element (the shapes must match
exactly, except multi_quantile's one column per quantile), then reduces: "mean" (default) averages
over every element, "sum" adds them, "none" keeps the shape.
"""

from __future__ import annotations

import torch

from lossd.losses import checks
from lossd.losses.errors import invalid
from lossd.losses.hessian import zero_hessian
from lossd.losses.reduction import reduce_loss
from lossd.losses.regression import _INPUT, _TARGET, _check_pair, _input_shape
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, Tensors


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
    return reduce_loss(torch.where(e > 0, quantile * e, (quantile - 1.0) * e), reduction)


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
    return reduce_loss(torch.where(e > 0, q * e, (q - 1.0) * e), reduction)


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


def _multi_quantile_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return tuple(tensors["input"].shape)


SPECS = (
    LossSpec(
        name="quantile",
        hessian_vanishes=True,
        hessian_fn=zero_hessian,
        hessian="elementwise",
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
        notes=("quantile=0.5 gives 0.5*MAE, not MAE as the tutorial's docstring says; equals sklearn's "
        "mean_pinball_loss(alpha=q)."
        + " Hessian diagonal: zero almost everywhere (the loss is piecewise linear); for gradient "
        "boosting, use a constant Hessian instead."),
        category="regression",
    ),
    LossSpec(
        name="multi_quantile",
        hessian_vanishes=True,
        hessian_fn=zero_hessian,
        hessian="rows",
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
        notes=("A (N, 1) target is read as (N,); the tutorial's code broadcasts it to (N, N) silently."
        + " Hessian diagonal: zero almost everywhere (the loss is piecewise linear); for gradient "
        "boosting, use a constant Hessian instead."),
        category="regression",
    ),
)

"""Closed-form gradients (LossSpec.value_and_grad) equal autograd of the same loss, in every setting."""

from __future__ import annotations

import pytest
import torch

from lossd.losses import REGISTRY

WITH_CLOSED_FORM = sorted(s.name for s in REGISTRY if s.value_and_grad is not None)


def test_the_elementwise_regression_losses_have_closed_forms() -> None:
    """mse and mae skip autograd (the large elementwise requests are where it pays)."""
    assert {"mse", "mae"} <= set(WITH_CLOSED_FORM)


@pytest.mark.parametrize("wrt", [("input",), ("target",), ("input", "target")], ids="+".join)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("upstream", [False, True], ids=["ones", "grad_output"])
@pytest.mark.parametrize("name", WITH_CLOSED_FORM)
def test_closed_form_equals_autograd(name: str, reduction: str, wrt: tuple[str, ...], upstream: bool) -> None:
    """Value and gradients agree with autograd through spec.fn, ties (input == target) included."""
    spec = REGISTRY.get(name)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, 7, dtype=torch.float64, generator=gen)
    y = torch.randn(5, 7, dtype=torch.float64, generator=gen)
    y[0, :3] = x[0, :3]  # exact ties, where mae's subgradient is 0
    shape = (5, 7) if reduction == "none" else ()
    go = torch.randn(shape, dtype=torch.float64, generator=gen) if upstream else None
    loss, grads = spec.value_and_grad({"input": x.clone(), "target": y.clone()}, {}, reduction, wrt, go)
    leaves = {"input": x.clone().requires_grad_(True), "target": y.clone().requires_grad_(True)}
    expected = spec.fn(**leaves, reduction=reduction)
    want = torch.autograd.grad(expected, [leaves[r] for r in wrt],
                               grad_outputs=go if go is not None else torch.ones_like(expected))
    torch.testing.assert_close(loss, expected.detach())
    assert sorted(grads) == sorted(wrt)
    for role, g in zip(wrt, want, strict=True):
        torch.testing.assert_close(grads[role], g)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", WITH_CLOSED_FORM)
def test_closed_form_value_alone_equals_the_loss(name: str, reduction: str) -> None:
    """With an empty wrt the closed form gives the loss (as Compute uses it) and no gradients."""
    spec = REGISTRY.get(name)
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(4, 6, dtype=torch.float64, generator=gen), torch.randn(4, 6, dtype=torch.float64, generator=gen)
    loss, grads = spec.value_and_grad({"input": x, "target": y}, {}, reduction, (), None)
    torch.testing.assert_close(loss, spec.fn(x, y, reduction=reduction))
    assert grads == {}

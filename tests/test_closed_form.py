"""Closed-form gradients (LossSpec.value_and_grad) equal autograd of the same loss, in every setting."""

from __future__ import annotations

import pytest
import torch

from lossd.losses import REGISTRY
from lossd.losses.classification import cross_entropy_closed_form

WITH_CLOSED_FORM = sorted(s.name for s in REGISTRY if s.value_and_grad is not None)
# The ones over an input and a target of one shape, with no parameters: checked here in every setting.
ELEMENTWISE = [name for name in WITH_CLOSED_FORM if REGISTRY.get(name).category == "regression"]


def test_the_elementwise_regression_losses_have_closed_forms() -> None:
    """mse and mae skip autograd (the large elementwise requests are where it pays)."""
    assert {"mse", "mae"} <= set(ELEMENTWISE)


@pytest.mark.parametrize("wrt", [("input",), ("target",), ("input", "target")], ids="+".join)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("upstream", [False, True], ids=["ones", "grad_output"])
@pytest.mark.parametrize("name", ELEMENTWISE)
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
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_closed_form_value_alone_equals_the_loss(name: str, reduction: str) -> None:
    """With an empty wrt the closed form gives the loss (as Compute uses it) and no gradients."""
    spec = REGISTRY.get(name)
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(4, 6, dtype=torch.float64, generator=gen), torch.randn(4, 6, dtype=torch.float64, generator=gen)
    loss, grads = spec.value_and_grad({"input": x, "target": y}, {}, reduction, (), None)
    torch.testing.assert_close(loss, spec.fn(x, y, reduction=reduction))
    assert grads == {}


# Cross-entropy's closed form covers logits with class-index targets: every parameter, every layout.
_CE = REGISTRY.get("cross_entropy")
_CE_DEFAULTS = {"ignore_index": -100, "label_smoothing": 0.0, "from_logits": True}
_LAYOUTS = {"batched": (6, 5), "spatial": (4, 5, 3), "unbatched": (5,)}


def _ce_case(layout: str, weighted: bool, ignored: bool, seed: int = 5) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shape = _LAYOUTS[layout]
    x = torch.randn(shape, dtype=torch.float64, generator=gen) * 3
    target_shape = (shape[0], *shape[2:]) if len(shape) >= 2 else ()
    y = torch.randint(0, 5, target_shape, generator=gen)
    if ignored and y.dim():
        y.view(-1)[::3] = 2  # ignore_index 2 below: a class that also occurs, so ignoring it matters
    tensors = {"input": x, "target": y}
    if weighted:
        tensors["weight"] = torch.rand(5, dtype=torch.float64, generator=gen) + 0.1
    return tensors


def _ce_autograd(tensors: dict[str, torch.Tensor], params: dict[str, object], reduction: str,
                 go: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = tensors["input"].clone().requires_grad_(True)
    value = _CE.fn(**{**tensors, "input": leaf}, **params, reduction=reduction)
    (grad,) = torch.autograd.grad(value, [leaf], grad_outputs=go if go is not None else torch.ones_like(value))
    return value.detach(), grad


@pytest.mark.parametrize("upstream", [False, True], ids=["ones", "grad_output"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2], ids=["sharp", "smoothed"])
@pytest.mark.parametrize("ignored", [False, True], ids=["all", "ignoring"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("layout", list(_LAYOUTS))
def test_cross_entropy_closed_form_equals_autograd(layout: str, weighted: bool, ignored: bool, smoothing: float,
                                                   reduction: str, upstream: bool) -> None:
    """Value and logit gradient agree with autograd through F.cross_entropy, for class-index targets."""
    tensors = _ce_case(layout, weighted, ignored)
    params = {**_CE_DEFAULTS, "ignore_index": 2 if ignored else -100, "label_smoothing": smoothing}
    shape = tuple(tensors["target"].shape) if reduction == "none" else ()
    go = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(6)) if upstream else None
    closed = cross_entropy_closed_form({k: t.clone() for k, t in tensors.items()}, params, reduction, ("input",), go)
    assert closed is not None
    want_value, want_grad = _ce_autograd(tensors, params, reduction, go)
    # float64 rounding only: a constant rounded to float32 on the way (a bool mask times a Python float) shows
    torch.testing.assert_close(closed[0], want_value, rtol=1e-12, atol=1e-14)
    assert list(closed[1]) == ["input"]
    torch.testing.assert_close(closed[1]["input"], want_grad, rtol=1e-12, atol=1e-14)


def test_cross_entropy_closed_form_leaves_the_rest_to_autograd() -> None:
    """Probability targets, probabilities for input, no gradient asked, and a mean over no weight at all
    (every target ignored) return None: the engine then runs autograd."""
    tensors = _ce_case("batched", weighted=False, ignored=False)
    probabilities = {"input": tensors["input"], "target": torch.softmax(torch.randn(6, 5, dtype=torch.float64), 1)}
    assert cross_entropy_closed_form(probabilities, _CE_DEFAULTS, "mean", ("input",), None) is None
    assert cross_entropy_closed_form(tensors, {**_CE_DEFAULTS, "from_logits": False}, "mean", ("input",), None) is None
    assert cross_entropy_closed_form(tensors, _CE_DEFAULTS, "mean", (), None) is None
    all_ignored = {**tensors, "target": torch.full((6,), 3)}
    assert cross_entropy_closed_form(all_ignored, {**_CE_DEFAULTS, "ignore_index": 3}, "mean", ("input",), None) is None


@pytest.mark.parametrize(("shape", "closed"), [((512, 100), True), ((256, 100), False), ((4096, 10), False),
                                               ((64, 100, 8), False)], ids=str)
def test_cross_entropy_takes_its_closed_form_only_for_wide_logits(shape: tuple[int, ...], closed: bool) -> None:
    """The spec's value_and_grad uses the closed form for (N, C) logits with at least 100 classes and 32K
    elements, where it beats autograd; narrower or spatial logits go to autograd (None)."""
    x = torch.randn(shape, dtype=torch.float64)
    y = torch.randint(0, shape[1], (shape[0], *shape[2:]))
    answer = _CE.value_and_grad({"input": x, "target": y}, _CE_DEFAULTS, "mean", ("input",), None)
    assert (answer is not None) == closed
    if answer is not None:
        want_value, want_grad = _ce_autograd({"input": x, "target": y}, _CE_DEFAULTS, "mean", None)
        torch.testing.assert_close(answer[0], want_value, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(answer[1]["input"], want_grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("setting", ["all_ignored", "probabilities"])
def test_cross_entropy_gradient_through_the_engine_equals_autograd_where_the_closed_form_declines(
        setting: str) -> None:
    """evaluate() falls back to autograd when the closed form returns None: same answer as torch's (here the
    mean over nothing is nan, and its gradient zeros, as torch has them)."""
    from lossd.losses import evaluate, validate

    tensors = _ce_case("batched", weighted=False, ignored=False)
    params: dict[str, object] = {}
    if setting == "all_ignored":
        tensors["target"] = torch.full((6,), 3)
        params = {"ignore_index": 3}
    else:
        tensors["target"] = torch.softmax(torch.randn(6, 5, dtype=torch.float64), 1)
    prepared = validate(_CE, dict(tensors), params, "mean", wrt=["input"])
    result = evaluate(prepared, "cpu")
    want_value, want_grad = _ce_autograd(tensors, {**_CE_DEFAULTS, **params}, "mean", None)
    torch.testing.assert_close(result.loss, want_value, equal_nan=True)
    torch.testing.assert_close(result.gradients["input"], want_grad, equal_nan=True)

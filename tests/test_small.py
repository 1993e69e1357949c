"""The numpy kernels for small value-only requests (LossSpec.small_value) equal the losses' torch functions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from lossd.losses import REGISTRY, evaluate, validate
from lossd.losses.small import SMALL_ELEMENTS, small_arrays

WITH_SMALL = sorted(s.name for s in REGISTRY if s.small_value is not None)
# Parameter settings each kernel is held to (the thresholds' edge cases: smooth_l1's beta 0 is the plain L1).
SETTINGS: dict[str, list[dict[str, Any]]] = {
    "huber": [{"delta": 1.0}, {"delta": 0.25}, {"delta": 3.0}],
    "smooth_l1": [{"beta": 1.0}, {"beta": 0.0}, {"beta": 0.4}],
}
CASES = [(name, params) for name in WITH_SMALL for params in SETTINGS.get(name, [{}])]


def _pair(shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(shape, dtype=dtype, generator=gen) * 2
    y = torch.randn(shape, dtype=dtype, generator=gen) * 2
    flat_x, flat_y = x.view(-1), y.view(-1)
    flat_y[:2] = flat_x[:2]  # ties: e = 0
    if flat_x.numel() > 4:  # errors exactly at the thresholds: 0.25 (huber's delta) and 1 (delta and beta)
        flat_x[2], flat_y[2] = 1.0, 0.75
        flat_x[3], flat_y[3] = 0.5, 1.5
    return x, y


def test_the_regression_losses_have_small_kernels() -> None:
    """mse, mae, huber and smooth_l1: the elementwise losses small callers send most."""
    assert set(WITH_SMALL) == {"mse", "mae", "huber", "smooth_l1"}


@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 5), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_small_kernel_equals_the_torch_function(name: str, params: dict[str, Any], reduction: str,
                                                dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    """Same dtype, same shape, the same values to the dtype's rounding (ties and thresholds included)."""
    spec = REGISTRY.get(name)
    x, y = _pair(shape, dtype)
    full = {p.name: p.default for p in spec.params} | params
    got = np.asarray(spec.small_value({"input": x.numpy(), "target": y.numpy()}, full, reduction))
    want = spec.fn(x, y, reduction=reduction, **full)
    assert got.dtype == want.numpy().dtype
    assert got.shape == tuple(want.shape)
    torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-6 if dtype == torch.float32 else 1e-13,
                               atol=1e-7 if dtype == torch.float32 else 1e-15)


@pytest.mark.parametrize("special", [float("nan"), float("inf"), -float("inf")], ids=str)
@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_small_kernel_propagates_nan_and_inf_as_torch(name: str, params: dict[str, Any], special: float) -> None:
    """A NaN or an infinity in the input gives what torch gives, element by element and reduced."""
    spec = REGISTRY.get(name)
    x, y = _pair((6,), torch.float32)
    x[1] = special
    full = {p.name: p.default for p in spec.params} | params
    for reduction in ("none", "mean"):
        got = torch.from_numpy(np.asarray(spec.small_value({"input": x.numpy(), "target": y.numpy()}, full,
                                                           reduction)))
        torch.testing.assert_close(got, spec.fn(x, y, reduction=reduction, **full), equal_nan=True)


@pytest.mark.parametrize("name", WITH_SMALL)
def test_losses_with_a_small_kernel_check_shapes_only(name: str) -> None:
    """Their validation passes on meta tensors, which have no values to read: a plan that skips validation for a
    request of a structure already validated (lossd.server.plans) refuses nothing validation would."""
    spec = REGISTRY.get(name)
    meta = {"input": torch.empty(4, 3, device="meta"), "target": torch.empty(4, 3, device="meta")}
    validate(spec, meta, {}, "mean")


def test_a_check_that_reads_values_fails_on_meta_tensors() -> None:
    """The guard above has teeth: cross-entropy's check reads its class indices, and meta tensors refuse that."""
    meta = {"input": torch.empty(4, 3, device="meta"), "target": torch.empty(4, dtype=torch.int64, device="meta")}
    with pytest.raises(RuntimeError, match="meta"):
        validate(REGISTRY.get("cross_entropy"), meta, {}, "mean")


def test_small_arrays_are_views_of_the_tensors() -> None:
    """No copy: the arrays share the tensors' memory."""
    x, y = torch.ones(8), torch.zeros(8)
    arrays = small_arrays({"input": x, "target": y})
    assert arrays is not None
    assert np.shares_memory(arrays["input"], x.numpy())


@pytest.mark.parametrize("tensors", [
    {"input": torch.ones(8, dtype=torch.float16), "target": torch.ones(8, dtype=torch.float16)},
    {"input": torch.ones(8, dtype=torch.float32), "target": torch.ones(8, dtype=torch.float64)},
    {"input": torch.ones(SMALL_ELEMENTS // 2 + 1), "target": torch.ones(SMALL_ELEMENTS // 2 + 1)},
    {"input": torch.ones(0), "target": torch.ones(0)},
    {"input": torch.ones(4, 6).t(), "target": torch.ones(6, 4)},
    {"input": torch.ones(8, requires_grad=True), "target": torch.ones(8)},
], ids=["float16", "mixed", "too-many", "empty", "transposed", "requires-grad"])
def test_small_arrays_decline_what_the_kernels_do_not_take(tensors: dict[str, torch.Tensor]) -> None:
    """Halves (computed in float32 by torch), mixed dtypes, more than SMALL_ELEMENTS in all, nothing at all,
    strided layouts and tensors in a graph take torch's path."""
    assert small_arrays(tensors) is None


def test_evaluate_answers_small_requests_with_the_small_kernel() -> None:
    """The engine's answer is the kernel's, bit for bit: every front gets the same number for a small request."""
    x, y = _pair((32,), torch.float32)
    spec = REGISTRY.get("huber")
    result = evaluate(validate(spec, {"input": x, "target": y}, {"delta": 0.5}, "mean"), "cpu")
    kernel = spec.small_value({"input": x.numpy(), "target": y.numpy()}, {"delta": 0.5}, "mean")
    assert result.loss.dtype == torch.float32
    assert result.loss.numpy().tobytes() == np.asarray(kernel).tobytes()


def test_evaluate_takes_torch_for_large_requests() -> None:
    """Past SMALL_ELEMENTS the kernel is not used (torch's multi-threaded kernels win there), and the answers agree."""
    n = SMALL_ELEMENTS  # two tensors of n: twice the limit
    x, y = _pair((n,), torch.float64)
    spec = REGISTRY.get("mse")
    assert small_arrays({"input": x, "target": y}) is None
    result = evaluate(validate(spec, {"input": x, "target": y}, {}, "mean"), "cpu")
    torch.testing.assert_close(result.loss, torch.nn.functional.mse_loss(x, y), rtol=1e-13, atol=0)

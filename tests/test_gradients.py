"""Gradients from the Gradient RPC equal torch autograd; the loss functions pass gradcheck."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import raw_tensor

from lossd.client import LossClient
from lossd.losses import classification, regression
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import loss_service_pb2_grpc as pb_grpc

N, C = 5, 4
DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]
TOL: dict[type, dict[str, float]] = {
    np.float32: {"rtol": 1.3e-6, "atol": 1e-5},
    np.float64: {"rtol": 1e-7, "atol": 1e-7},
}
Maker = Callable[[np.random.Generator, type], dict[str, np.ndarray]]


def _pair(delta: float = 1.0) -> Maker:
    """input = target + e with |e| at least 0.1 away from 0 and from delta (the kinks of mae/huber)."""

    def make(rng: np.random.Generator, dt: type) -> dict[str, np.ndarray]:
        target = rng.normal(size=(N, 3))
        small = rng.uniform(0.1, delta - 0.1, size=target.shape)
        large = rng.uniform(delta + 0.1, delta + 2.0, size=target.shape)
        e = np.where(rng.random(target.shape) < 0.5, small, large) * rng.choice([-1.0, 1.0], size=target.shape)
        return {"input": (target + e).astype(dt), "target": target.astype(dt)}

    return make


def _ce(shape: tuple[int, ...] = (N, C), weight: bool = False, probs: bool = False) -> Maker:
    def make(rng: np.random.Generator, dt: type) -> dict[str, np.ndarray]:
        if probs:
            target = rng.dirichlet(np.ones(C), size=shape[0]).astype(dt)
        else:
            target = np.asarray(rng.integers(0, C, size=(shape[0], *shape[2:]))).astype(np.int64)
        out = {"input": rng.normal(size=shape).astype(dt), "target": target}
        if weight:
            out["weight"] = rng.uniform(0.5, 2.0, size=C).astype(dt)
        return out

    return make


def _bce(weights: bool = False) -> Maker:
    def make(rng: np.random.Generator, dt: type) -> dict[str, np.ndarray]:
        out = {"input": (2 * rng.normal(size=(N, C))).astype(dt), "target": rng.uniform(0, 1, (N, C)).astype(dt)}
        if weights:
            out["weight"] = rng.uniform(0.2, 2.0, size=(N, 1)).astype(dt)
            out["pos_weight"] = rng.uniform(0.5, 3.0, size=C).astype(dt)
        return out

    return make


def _case(name: str, loss: str, make: Maker, ref: Callable[..., torch.Tensor], fn: Callable[..., torch.Tensor],
          roles: tuple[str, ...], **params: Any) -> dict[str, Any]:
    return {"id": name, "loss": loss, "make": make, "ref": ref, "fn": fn, "roles": roles, "params": params}


BOTH = ("input", "target")
CASES = [
    _case("mse", "mse", _pair(), F.mse_loss, regression.mse, BOTH),
    _case("mae", "mae", _pair(), F.l1_loss, regression.mae, BOTH),
    _case("huber", "huber", _pair(), F.huber_loss, regression.huber, BOTH),
    _case("huber_delta_0.5", "huber", _pair(0.5), F.huber_loss, regression.huber, BOTH, delta=0.5),
    _case("ce", "cross_entropy", _ce(), F.cross_entropy, classification.cross_entropy, ("input",)),
    _case("ce_weight_smoothing", "cross_entropy", _ce(weight=True), F.cross_entropy,
          classification.cross_entropy, ("input",), label_smoothing=0.1),
    _case("ce_spatial", "cross_entropy", _ce(shape=(2, C, 3)), F.cross_entropy, classification.cross_entropy,
          ("input",)),
    _case("ce_probabilities", "cross_entropy", _ce(weight=True, probs=True), F.cross_entropy,
          classification.cross_entropy, BOTH),
    _case("bce", "bce_with_logits", _bce(), F.binary_cross_entropy_with_logits, classification.bce_with_logits,
          BOTH),
    _case("bce_weight_pos_weight", "bce_with_logits", _bce(weights=True), F.binary_cross_entropy_with_logits,
          classification.bce_with_logits, BOTH),
]
BY_ID = {c["id"]: c for c in CASES}
CASE_ROLES = [pytest.param(c, r, id=f"{c['id']}-{r}") for c in CASES for r in c["roles"]]


def _torch(arrays: dict[str, np.ndarray], grad: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    out = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
    for role in grad:
        out[role].requires_grad_(True)
    return out


def _torch_grads(case: dict[str, Any], arrays: dict[str, np.ndarray], roles: tuple[str, ...], reduction: str,
                 grad_output: np.ndarray | None = None) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    tensors = _torch(arrays, roles)
    loss = case["ref"](**tensors, reduction=reduction, **case["params"])
    upstream = torch.ones_like(loss) if grad_output is None else torch.from_numpy(grad_output)
    found = torch.autograd.grad(loss, [tensors[r] for r in roles], grad_outputs=upstream)
    return loss.detach(), {r: g.numpy() for r, g in zip(roles, found, strict=True)}


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(("case", "role"), CASE_ROLES)
def test_gradient_matches_torch_autograd(client: LossClient, rng: np.random.Generator, case: dict[str, Any],
                                         role: str, dtype: type, reduction: str) -> None:
    """The Gradient RPC's value and d loss / d role equal torch autograd, in the role's dtype and shape."""
    arrays = case["make"](rng, dtype)
    value, grads = client.gradient(case["loss"], wrt=[role], reduction=reduction, **arrays, **case["params"])
    loss, want = _torch_grads(case, arrays, (role,), reduction)
    assert set(grads) == {role}
    assert grads[role].dtype == np.dtype(dtype)
    assert grads[role].shape == arrays[role].shape
    np.testing.assert_allclose(grads[role], want[role], **TOL[dtype])
    np.testing.assert_allclose(value, loss.item(), **TOL[dtype])


@pytest.mark.parametrize("case", [c for c in CASES if len(c["roles"]) == 2], ids=lambda c: c["id"])
def test_gradient_for_several_roles_at_once(client: LossClient, rng: np.random.Generator,
                                            case: dict[str, Any]) -> None:
    """wrt=[input, target] returns both gradients, each equal to torch autograd."""
    arrays = case["make"](rng, np.float64)
    _, grads = client.gradient(case["loss"], wrt=["input", "target"], **arrays, **case["params"])
    _, want = _torch_grads(case, arrays, ("input", "target"), "mean")
    assert set(grads) == {"input", "target"}
    for role in ("input", "target"):
        np.testing.assert_allclose(grads[role], want[role], **TOL[np.float64])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_default_wrt_is_input(client: LossClient, rng: np.random.Generator, case: dict[str, Any]) -> None:
    """Without wrt the reply has exactly one gradient, keyed "input", equal to torch's d loss / d input."""
    arrays = case["make"](rng, np.float64)
    _, grads = client.gradient(case["loss"], **arrays, **case["params"])
    _, want = _torch_grads(case, arrays, ("input",), "mean")
    assert list(grads) == ["input"]
    np.testing.assert_allclose(grads["input"], want["input"], **TOL[np.float64])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(("case", "role"), CASE_ROLES)
def test_unreduced_gradient_with_grad_output_is_vjp(client: LossClient, rng: np.random.Generator,
                                                    case: dict[str, Any], role: str, dtype: type) -> None:
    """Reduction "none" with grad_output g equals torch.autograd.grad(loss, x, grad_outputs=g)."""
    arrays = case["make"](rng, dtype)
    shape = tuple(case["ref"](**_torch(arrays), reduction="none", **case["params"]).shape)
    g = rng.normal(size=shape).astype(dtype)
    value, grads = client.gradient(case["loss"], wrt=[role], reduction="none", grad_output=g, **arrays,
                                   **case["params"])
    loss, want = _torch_grads(case, arrays, (role,), "none", grad_output=g)
    assert value.shape == shape
    np.testing.assert_allclose(value, loss.numpy(), **TOL[dtype])
    np.testing.assert_allclose(grads[role], want[role], **TOL[dtype])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_unreduced_gradient_without_grad_output_uses_ones(client: LossClient, rng: np.random.Generator,
                                                          case: dict[str, Any]) -> None:
    """Reduction "none" without grad_output differentiates with an all-ones upstream gradient."""
    arrays = case["make"](rng, np.float64)
    _, grads = client.gradient(case["loss"], reduction="none", **arrays, **case["params"])
    _, want = _torch_grads(case, arrays, ("input",), "none")
    _, summed = _torch_grads(case, arrays, ("input",), "sum")
    np.testing.assert_allclose(grads["input"], want["input"], **TOL[np.float64])
    np.testing.assert_allclose(grads["input"], summed["input"], **TOL[np.float64])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("case", "role"), CASE_ROLES)
def test_loss_function_passes_gradcheck(rng: np.random.Generator, case: dict[str, Any], role: str,
                                        reduction: str) -> None:
    """torch.autograd.gradcheck passes in float64 for the lossd loss function w.r.t. each differentiable role."""
    tensors = _torch(case["make"](rng, np.float64))
    leaf = tensors.pop(role).requires_grad_(True)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return case["fn"](**tensors, **{role: x}, reduction=reduction, **case["params"])

    assert torch.autograd.gradcheck(fn, (leaf,), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_float32_gradient_is_float32_of_input_shape(client: LossClient, rng: np.random.Generator,
                                                    case: dict[str, Any]) -> None:
    """float32 inputs give float32 gradients shaped like the input (and float32 'none' values)."""
    arrays = case["make"](rng, np.float32)
    value, grads = client.gradient(case["loss"], reduction="none", **arrays, **case["params"])
    _, want = _torch_grads(case, arrays, ("input",), "none")
    assert value.dtype == np.float32
    assert grads["input"].dtype == np.float32
    assert grads["input"].shape == arrays["input"].shape
    np.testing.assert_allclose(grads["input"], want["input"], **TOL[np.float32])


def _param(value: Any) -> pb.ParamValue:
    return pb.ParamValue(integer=value) if isinstance(value, int) else pb.ParamValue(number=value)


@pytest.mark.parametrize(("case", "role"), CASE_ROLES)
def test_float16_gradient_is_float16_of_input_shape(stub: pb_grpc.LossServiceStub, rng: np.random.Generator,
                                                    case: dict[str, Any], role: str) -> None:
    """float16 inputs give float16 gradients of the role's shape, equal to torch's float32 gradient rounded."""
    arrays = case["make"](rng, np.float16)
    request = pb.GradientRequest(loss=case["loss"], inputs={k: raw_tensor(v) for k, v in arrays.items()},
                                 params={k: _param(v) for k, v in case["params"].items()}, wrt=[role])
    response = stub.Gradient(request)
    grad = response.gradients[role]
    assert response.loss.dtype == pb.DTYPE_FLOAT16
    assert grad.dtype == pb.DTYPE_FLOAT16
    assert tuple(grad.shape) == arrays[role].shape
    as_f32 = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in arrays.items()}
    _, want = _torch_grads(case, as_f32, (role,), "mean")
    got = np.frombuffer(grad.raw_data, dtype="<f2").reshape(arrays[role].shape)
    np.testing.assert_allclose(got.astype(np.float32), want[role].astype(np.float16).astype(np.float32),
                               rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("params", [{}, {"label_smoothing": 0.1, "ignore_index": 7}], ids=["plain", "smoothed"])
def test_wide_cross_entropy_gradient_matches_torch_autograd(client: LossClient, rng: np.random.Generator,
                                                            dt: type, params: dict[str, Any]) -> None:
    """512 x 1000 logits take the closed form on the server (lossd.losses.classification): value and gradient
    equal torch's autograd in the request's dtype, weights and ignored targets included."""
    logits = (rng.normal(size=(512, 1000)) * 4).astype(dt)
    labels = rng.integers(0, 1000, 512)
    labels[::5] = 7
    weight = rng.uniform(0.5, 2.0, 1000).astype(dt)
    value, grads = client.gradient("cross_entropy", input=logits, target=labels, weight=weight, **params)
    leaf = torch.from_numpy(logits).requires_grad_(True)
    want = F.cross_entropy(leaf, torch.from_numpy(labels), weight=torch.from_numpy(weight), **params)
    (want_grad,) = torch.autograd.grad(want, [leaf])
    assert grads["input"].dtype == np.dtype(dt)
    assert value == pytest.approx(want.item(), rel=TOL[dt]["rtol"] * 10)
    np.testing.assert_allclose(grads["input"], want_grad.numpy(), **TOL[dt])

"""GPU checks (`make gpu-check`): skipped without CUDA, run on a CUDA host."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cases import CASES, Case

from lossd.client import InvalidArgumentError, LossClient
from lossd.losses import REGISTRY, evaluate, validate
from lossd.server import BackgroundServer, ServerSettings

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def cuda_client() -> Iterator[LossClient]:
    """A client of a server pinned to cuda:0."""
    with BackgroundServer(ServerSettings(port=0, metrics_port=0, device="cuda:0")) as srv, \
            LossClient(srv.address, timeout=60) as c:
        yield c


@pytest.mark.parametrize("params", [{}, {"label_smoothing": 0.1, "ignore_index": 7}], ids=["plain", "smoothed"])
def test_cuda_cross_entropy_gradient_matches_cpu(cuda_client: LossClient, params: dict[str, Any]) -> None:
    """End to end on the GPU (4096x1000 takes cross-entropy's closed form): CE value and gradient equal the
    CPU autograd's to float32 tolerance, with class weights, smoothing and ignored targets too."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4096, 1000)).astype(np.float32)
    labels = rng.integers(0, 1000, 4096)
    extra: dict[str, Any] = {}
    if params:
        labels[::5] = 7
        extra["weight"] = rng.uniform(0.5, 2.0, 1000).astype(np.float32)
    value, grads = cuda_client.gradient("cross_entropy", input=logits, target=labels, **extra, **params)
    x = torch.from_numpy(logits).requires_grad_(True)
    expected = F.cross_entropy(x, torch.from_numpy(labels), weight=torch.from_numpy(extra["weight"]) if params
                               else None, **params)
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-5)
    np.testing.assert_allclose(grads["input"], x.grad.numpy(), rtol=1e-4, atol=1e-7)


def test_cuda_out_of_range_class_index_is_refused_and_device_stays_usable(cuda_client: LossClient) -> None:
    """A class index == C is refused before CUDA sees it; the next request computes correctly."""
    logits = np.zeros((2, 3), np.float32)
    with pytest.raises(InvalidArgumentError):
        cuda_client.compute("cross_entropy", input=logits, target=np.array([0, 3]))
    value = cuda_client.compute("cross_entropy", input=logits, target=np.array([0, 2]))
    assert value == pytest.approx(np.log(3))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_cuda_every_case_matches_cpu(case: Case) -> None:
    """Each catalog case evaluated on cuda:0 equals the CPU result in float64, value and gradients."""
    spec, preset = REGISTRY.resolve(case.loss)
    arrays = case.make(np.random.default_rng(0), np.dtype(np.float64))
    tensors: dict[str, Any] = {k: torch.from_numpy(v) for k, v in arrays.items()}
    wrt = [r for r in spec.differentiable_roles if r in tensors and tensors[r].is_floating_point()]
    prepared = validate(spec, tensors, dict(case.params), "", wrt=wrt, preset=preset)
    cpu, gpu = evaluate(prepared, "cpu"), evaluate(prepared, "cuda:0")
    torch.testing.assert_close(gpu.loss, cpu.loss)
    for role in wrt:
        torch.testing.assert_close(gpu.gradients[role], cpu.gradients[role])


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES
                                  if REGISTRY.resolve(c.loss)[0].hessian is not None])
def test_cuda_hessian_diagonals_match_cpu(case: Case) -> None:
    """Each catalog case's Hessian diagonals (closed forms and Hessian-vector products) on cuda:0 equal the
    CPU's in float64."""
    spec, preset = REGISTRY.resolve(case.loss)
    arrays = case.make(np.random.default_rng(0), np.dtype(np.float64))
    tensors: dict[str, Any] = {k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()}
    wrt = [r for r in spec.hessian_roles_offered if r in tensors and tensors[r].is_floating_point()]
    prepared = validate(spec, tensors, dict(case.params), "", wrt=wrt, preset=preset, hessian=True)
    cpu, gpu = evaluate(prepared, "cpu"), evaluate(prepared, "cuda:0")
    for role in wrt:
        torch.testing.assert_close(gpu.hessians[role], cpu.hessians[role])

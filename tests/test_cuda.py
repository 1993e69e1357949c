"""GPU checks (`make gpu-check`): skipped without CUDA, run on a CUDA host."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F

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


def test_cuda_cross_entropy_gradient_matches_cpu(cuda_client: LossClient) -> None:
    """End to end on the GPU: CE value and gradient over 4096x1000 equal the CPU's to float32 tolerance."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4096, 1000)).astype(np.float32)
    labels = rng.integers(0, 1000, 4096)
    value, grads = cuda_client.gradient("cross_entropy", input=logits, target=labels)
    x = torch.from_numpy(logits).requires_grad_(True)
    expected = F.cross_entropy(x, torch.from_numpy(labels))
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-5)
    np.testing.assert_allclose(grads["input"], x.grad.numpy(), rtol=1e-4, atol=1e-7)


def test_cuda_out_of_range_class_index_is_refused_and_device_stays_usable(cuda_client: LossClient) -> None:
    """A class index == C is refused before CUDA sees it; the next request computes correctly."""
    logits = np.zeros((2, 3), np.float32)
    with pytest.raises(InvalidArgumentError):
        cuda_client.compute("cross_entropy", input=logits, target=np.array([0, 3]))
    assert cuda_client.compute("cross_entropy", input=logits, target=np.array([0, 2])) == pytest.approx(np.log(3))


@pytest.mark.parametrize("name", sorted(s.name for s in REGISTRY))
def test_cuda_every_loss_matches_cpu(name: str) -> None:
    """Each loss evaluated on cuda:0 equals the CPU result (float64, default parameters)."""
    rng = np.random.default_rng(1)
    spec = REGISTRY.get(name)
    tensors = {"input": torch.from_numpy(rng.standard_normal((8, 5)))}
    tensors["target"] = (torch.from_numpy(rng.integers(0, 5, 8)) if name == "cross_entropy"
                         else torch.from_numpy(rng.random((8, 5))))
    prepared = validate(spec, tensors, {}, "", wrt=["input"])
    cpu, gpu = evaluate(prepared, "cpu"), evaluate(prepared, "cuda:0")
    torch.testing.assert_close(gpu.loss, cpu.loss)
    torch.testing.assert_close(gpu.gradients["input"], cpu.gradients["input"])

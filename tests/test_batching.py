"""Dynamic batching: concurrent small requests share one launch, and each keeps its own answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossd.client import LossClient
from lossd.losses import REGISTRY, evaluate, validate
from lossd.losses.batching import batch_key, evaluate_batch
from lossd.server import BackgroundServer, ServerSettings

CPU = torch.device("cpu")


def _prepared(name: str, n: int, reduction: str, seed: int, grad_output: bool = False):  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 3, dtype=torch.float64, generator=gen), torch.rand(n, 3, dtype=torch.float64, generator=gen)
    go = torch.randn(n, 3, dtype=torch.float64, generator=gen) if grad_output else None
    spec = REGISTRY.get(name)
    wrt = [r for r in ("input", "target") if r in spec.differentiable_roles]  # (msle's, mape's target is data)
    return validate(spec, {"input": x, "target": y}, {}, reduction, wrt=wrt, grad_output=go)


@pytest.mark.parametrize("name", sorted(s.name for s in REGISTRY if s.batchable))
def test_batch_gives_each_request_its_own_reduction_and_gradients(name: str) -> None:
    """A batch of mean, sum and none requests (of different sizes) equals evaluating each alone."""
    batch = [_prepared(name, 2, "mean", 0), _prepared(name, 5, "sum", 1), _prepared(name, 3, "none", 2, True),
             _prepared(name, 1, "none", 3)]
    assert len({batch_key(p, CPU) for p in batch}) == 1
    for got, p in zip(evaluate_batch(batch, CPU), batch, strict=True):
        want = evaluate(p, CPU)
        torch.testing.assert_close(got.loss, want.loss)
        assert set(got.gradients) == set(want.gradients) == set(p.wrt)
        for role in p.wrt:
            torch.testing.assert_close(got.gradients[role], want.gradients[role])


def test_requests_that_differ_do_not_share_a_batch() -> None:
    """Different parameters, trailing shapes or losses give different keys; extra roles none at all."""
    spec = REGISTRY.get("huber")
    x = torch.zeros(4, 3)
    base = validate(spec, {"input": x, "target": x}, {}, "mean")
    other_delta = validate(spec, {"input": x, "target": x}, {"delta": 2.0}, "mean")
    other_shape = validate(spec, {"input": torch.zeros(4, 5), "target": torch.zeros(4, 5)}, {}, "mean")
    weighted = validate(REGISTRY.get("cross_entropy"), {"input": x, "target": torch.zeros(4, dtype=torch.long)},
                        {}, "mean")
    keys = {batch_key(p, CPU) for p in (base, other_delta, other_shape)}
    assert len(keys) == 3 and batch_key(weighted, CPU) is None


@pytest.fixture(scope="module")
def batching_server() -> Iterator[BackgroundServer]:
    """A CPU server with batching forced on and a long (300 ms) window, so concurrent calls meet."""
    settings = ServerSettings(port=0, metrics_port=0, device="cpu", batching="on", batch_delay_us=300_000)
    with BackgroundServer(settings) as srv:
        yield srv


def test_concurrent_calls_are_batched_and_answered_individually(batching_server: BackgroundServer) -> None:
    """Eight concurrent MSE calls, with mixed reductions, run in fewer launches; each answer equals torch's."""
    rng = np.random.default_rng(0)
    cases = [(rng.random((i + 1, 4)).astype(np.float32), rng.random((i + 1, 4)).astype(np.float32),
              ["mean", "sum", "none"][i % 3]) for i in range(8)]
    answers: dict[int, object] = {}
    start = threading.Barrier(8)

    def call(i: int) -> None:
        x, y, reduction = cases[i]
        with LossClient(batching_server.address, timeout=30) as c:
            c.describe("mse")  # connect before the barrier, so the calls leave together
            start.wait(timeout=30)
            answers[i] = c.gradient("mse", input=x, target=y, reduction=reduction)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i, (x, y, reduction) in enumerate(cases):
        tx = torch.from_numpy(x).requires_grad_(True)
        loss = F.mse_loss(tx, torch.from_numpy(y), reduction=reduction)
        (grad,) = torch.autograd.grad(loss, [tx], grad_outputs=torch.ones_like(loss))
        value, grads = answers[i]  # type: ignore[misc]
        np.testing.assert_allclose(value, loss.detach().numpy(), rtol=1e-6)
        np.testing.assert_allclose(grads["input"], grad.numpy(), rtol=1e-6)
    histogram = batching_server.server.metrics.batch_size
    count = histogram.collect()[0].samples
    total = {s.name: s.value for s in count}
    assert total["lossd_batch_size_sum"] == 8
    assert total["lossd_batch_size_count"] < 8

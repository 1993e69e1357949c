"""RemoteLoss, a torch module over a real lossd server: training with it equals training with torch's own loss
(to 1e-10 in float64, 1e-5 in float32), a step costs one call, and mixed objectives backpropagate."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from lossd.client import LossClient
from lossd.integrations.torch import RemoteLoss
from lossd.server import BackgroundServer, ServerSettings


class Counting:
    """A LossClient that counts the compute and gradient calls it forwards."""

    def __init__(self, client: LossClient) -> None:
        self._client = client
        self.calls: list[str] = []

    def describe(self, loss: str) -> Any:
        return self._client.describe(loss)

    def compute(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("compute")
        return self._client.compute(*args, **kwargs)

    def gradient(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("gradient")
        return self._client.gradient(*args, **kwargs)


@pytest.fixture(scope="module")
def lossd() -> Iterator[LossClient]:
    with BackgroundServer(ServerSettings(port=0, metrics_port=0, device="cpu")) as srv, \
            LossClient(srv.address, timeout=60) as client:
        yield client


def _train(criterion: Any, dtype: torch.dtype, classes: int | None, steps: int = 50) -> list[torch.Tensor]:
    """A small MLP trained ``steps`` steps of SGD from one seed; its parameters after."""
    torch.manual_seed(0)
    outputs = classes or 1
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, outputs)).to(dtype)
    x = torch.randn(64, 4, dtype=dtype)
    y = torch.randint(0, classes, (64,)) if classes else (x.sum(dim=1, keepdim=True) ** 2).to(dtype)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize(("loss", "local", "params", "classes"), [
    ("mse", F.mse_loss, {}, None),
    ("huber", lambda a, b: F.huber_loss(a, b, delta=0.5), {"delta": 0.5}, None),
    ("cross_entropy", F.cross_entropy, {}, 3),
], ids=["mse", "huber", "cross_entropy"])
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-10), (torch.float32, 1e-5)],
                         ids=["float64", "float32"])
def test_training_with_remote_loss_equals_training_with_torchs_loss(lossd: LossClient, loss: str, local: Any,
                                                                    params: dict[str, Any], classes: int | None,
                                                                    dtype: torch.dtype, tolerance: float) -> None:
    remote = _train(RemoteLoss(loss, lossd, **params), dtype, classes)
    expected = _train(local, dtype, classes)
    for got, want in zip(remote, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=tolerance)


def test_a_training_step_costs_one_gradient_call(lossd: LossClient) -> None:
    counting = Counting(lossd)
    criterion = RemoteLoss("mse", counting)  # type: ignore[arg-type]
    x = torch.randn(8, requires_grad=True)
    criterion(x, torch.zeros(8)).backward()
    assert counting.calls == ["gradient"]


def test_without_gradients_it_computes_only(lossd: LossClient) -> None:
    """Under no_grad, or with no input requiring grad: one Compute, and a tensor without grad_fn."""
    counting = Counting(lossd)
    criterion = RemoteLoss("mse", counting)  # type: ignore[arg-type]
    x = torch.randn(8, requires_grad=True)
    with torch.no_grad():
        value = criterion(x, torch.zeros(8))
    plain = criterion(x.detach(), torch.zeros(8))
    assert counting.calls == ["compute", "compute"] and value.grad_fn is None and plain.grad_fn is None
    assert value.item() == pytest.approx(float((x.detach() ** 2).mean()), rel=1e-6)


def test_an_unreduced_loss_takes_a_second_call_with_the_upstream_gradient(lossd: LossClient) -> None:
    counting = Counting(lossd)
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    y = torch.randn(6, dtype=torch.float64)
    w = torch.linspace(0.5, 2.0, 6, dtype=torch.float64)
    (w * RemoteLoss("huber", counting, reduction="none", delta=0.3)(x, y)).sum().backward()  # type: ignore[arg-type]
    remote = x.grad.clone()
    x.grad = None
    (w * F.huber_loss(x, y, delta=0.3, reduction="none")).sum().backward()
    assert counting.calls == ["compute", "gradient"]
    torch.testing.assert_close(remote, x.grad, rtol=0, atol=1e-14)


def test_a_mixed_objective_backpropagates(lossd: LossClient) -> None:
    """0.5 * criterion(x, y) + an L2 penalty: the same gradients as with torch's loss."""
    torch.manual_seed(1)
    layer = torch.nn.Linear(3, 1).double()
    x, y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 1, dtype=torch.float64)

    def grads(criterion: Any) -> list[torch.Tensor]:
        layer.zero_grad()
        penalty = sum((p ** 2).sum() for p in layer.parameters())
        (0.5 * criterion(layer(x), y) + 1e-2 * penalty).backward()
        return [p.grad.clone() for p in layer.parameters()]
    for got, want in zip(grads(RemoteLoss("mse", lossd)), grads(F.mse_loss), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-14)


def test_roles_by_keyword_and_gradients_for_every_differentiable_input(lossd: LossClient) -> None:
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = torch.tensor([0.5, 0.0], requires_grad=True)
    RemoteLoss("mse", lossd)(target=y, input=x).backward()
    assert x.grad.tolist() == [0.5, 2.0] and y.grad.tolist() == [-0.5, -2.0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_get_gradients_in_their_dtype(lossd: LossClient, dtype: torch.dtype) -> None:
    x = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], dtype=dtype, requires_grad=True)
    target = torch.tensor([0, 2])
    value = RemoteLoss("cross_entropy", lossd)(x, target)
    value.backward()
    expected = torch.func.grad(lambda z: F.cross_entropy(z, target))(x.detach().float())
    assert value.dtype == dtype and x.grad.dtype == dtype
    torch.testing.assert_close(x.grad.float(), expected, rtol=2e-2, atol=2e-3)


def test_an_unknown_keyword_is_refused_naming_the_roles(lossd: LossClient) -> None:
    with pytest.raises(TypeError, match="no input 'prediction'; its inputs: input, target"):
        RemoteLoss("mse", lossd)(prediction=torch.zeros(2), target=torch.zeros(2))

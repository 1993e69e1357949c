"""AsyncLossClient (grpc.aio): the sync client's behaviours, awaited, against real servers on loopback."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from certs import Authority, make_authority

from lossd.client import (
    AsyncLossClient,
    DeadlineExceededError,
    InvalidArgumentError,
    UnauthenticatedError,
    UnavailableError,
)
from lossd.server import BackgroundServer, ServerSettings

T = TypeVar("T")
PREFIX = f"lossdasync{os.getpid()}-"


def run(make: Callable[[AsyncLossClient], Awaitable[T]], address: str, **options: Any) -> T:
    """``make(client)`` in a fresh event loop, with a client made (and closed) inside that loop."""
    async def main() -> T:
        async with AsyncLossClient(address, timeout=30, **options) as client:
            return await make(client)
    return asyncio.run(main())


def test_compute_mean_returns_a_python_float(server: BackgroundServer) -> None:
    """A reduction to a scalar comes back as a float equal to torch's."""
    x, y = np.array([1.0, 2.0, 4.0]), np.array([1.0, 0.0, 0.0])
    value = run(lambda c: c.compute("mse", input=x, target=y), server.address)
    assert type(value) is float and value == pytest.approx(20 / 3, rel=1e-12)


def test_compute_none_returns_an_array_of_the_input_dtype(server: BackgroundServer) -> None:
    """reduction="none" gives an ndarray shaped and typed like the input."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = run(lambda c: c.compute("mae", input=x, target=np.zeros_like(x), reduction="none"), server.address)
    assert out.dtype == np.float32 and out.shape == (2, 3)
    np.testing.assert_array_equal(out, x)


def test_keyword_scalars_are_parameters_and_torch_tensors_inputs(server: BackgroundServer) -> None:
    """delta=0.5 is a parameter; torch tensors are sent like arrays."""
    x, y = torch.tensor([0.0, 3.0], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    value = run(lambda c: c.compute("huber", input=x, target=y, delta=0.5), server.address)
    assert value == pytest.approx(float(F.huber_loss(x, y, delta=0.5)), rel=1e-12)


def test_gradient_returns_value_and_named_gradients(server: BackgroundServer) -> None:
    """gradient() gives (value, {"input": d/dx}) equal to autograd's."""
    logits, labels = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]), np.array([0, 2])
    value, grads = run(lambda c: c.gradient("cross_entropy", input=logits, target=labels), server.address)
    x = torch.tensor(logits, requires_grad=True)
    expected = F.cross_entropy(x, torch.tensor(labels))
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(grads["input"], x.grad.numpy(), rtol=1e-12)


def test_refusal_raises_invalid_argument_with_fields(server: BackgroundServer) -> None:
    """A bad parameter raises InvalidArgumentError naming params[delta]."""
    with pytest.raises(InvalidArgumentError) as err:
        run(lambda c: c.compute("huber", input=np.ones(2), target=np.ones(2), delta=-1.0), server.address)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and err.value.fields == ["params[delta]"]


def test_unreachable_server_raises_unavailable() -> None:
    """A call to a port where nothing listens raises UnavailableError."""
    with pytest.raises(UnavailableError):
        run(lambda c: c.compute("mse", input=np.ones(1), target=np.ones(1), timeout=5), "127.0.0.1:1")


def test_expired_deadline_raises_deadline_exceeded(server: BackgroundServer) -> None:
    """A timeout too short for the call raises DeadlineExceededError."""
    big = np.zeros(4_000_000, np.float32)
    with pytest.raises(DeadlineExceededError):
        run(lambda c: c.compute("mse", input=big, target=big, timeout=1e-6), server.address)


def test_list_losses_and_describe(server: BackgroundServer) -> None:
    """ListLosses lists the catalog; describe resolves an alias to its loss."""
    async def both(c: AsyncLossClient) -> tuple[list[Any], Any]:
        return await c.list_losses(), await c.describe("MSELoss")
    listed, mse = run(both, server.address)
    assert "cross_entropy" in {info.name for info in listed} and mse.name == "mse"


def test_two_hundred_concurrent_calls_from_one_event_loop(server: BackgroundServer) -> None:
    """200 calls in flight at once from one loop each get their own answer."""
    rng = np.random.default_rng(0)
    pairs = [(rng.random(64), rng.random(64)) for _ in range(200)]

    async def all_of(c: AsyncLossClient) -> list[Any]:
        return await asyncio.gather(*(c.compute("mse", input=x, target=y) for x, y in pairs))
    values = run(all_of, server.address)
    assert values == [pytest.approx(float(((x - y) ** 2).mean()), rel=1e-12) for x, y in pairs]


def test_past_stream_mb_calls_go_over_the_streams_with_the_same_answer(server: BackgroundServer) -> None:
    """With a tiny stream_mb, value and gradient come back over the streaming RPCs, equal to autograd."""
    x, y = np.random.default_rng(1).random((2, 100_000), np.float32)
    value, grads = run(lambda c: c.gradient("mse", input=x, target=y, reduction="none"), server.address,
                       stream_mb=0.1)
    np.testing.assert_allclose(value, (x - y) ** 2, rtol=1e-6)
    np.testing.assert_allclose(grads["input"], 2 * (x - y), rtol=1e-6)


def test_balanced_over_servers_one_of_them_gone(server: BackgroundServer) -> None:
    """Two targets, one stopped: every call lands on the one still serving."""
    gone = BackgroundServer(ServerSettings(host="127.0.0.1", port=0, metrics_port=0, device="cpu")).start()
    address = gone.address
    gone.stop()

    async def many(c: AsyncLossClient) -> list[Any]:
        return [await c.compute("mse", input=np.ones(2), target=np.zeros(2)) for _ in range(10)]
    assert run(many, [address, server.address]) == [1.0] * 10  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def shm_server() -> Iterator[BackgroundServer]:
    with BackgroundServer(ServerSettings(port=0, metrics_port=0, device="cpu", shm_prefix=PREFIX)) as srv:
        yield srv


def test_shared_memory_inputs_and_outputs(shm_server: BackgroundServer) -> None:
    """Shared arrays in, a gradient written into an out= array, equal to the plain answer."""
    n = 1 << 16
    x, y = np.random.default_rng(2).random((2, n), np.float32)

    async def shared(c: AsyncLossClient) -> tuple[Any, Any, np.ndarray]:
        sx, sy, out = (c.shared_array((n,), np.float32) for _ in range(3))
        sx[:], sy[:] = x, y
        value, grads = await c.gradient("mse", input=sx, target=sy, out={"input": out})
        return value, grads["input"] is out, np.array(out)
    value, same, grad = run(shared, shm_server.address, shared_memory=True, shm_prefix=PREFIX)
    assert same and value == pytest.approx(float(((x - y) ** 2).mean()), rel=1e-5)
    np.testing.assert_allclose(grad, 2 * (x - y) / n, rtol=1e-5)


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return make_authority(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secured_server(authority: Authority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    """TLS and a bearer token."""
    tokens = tmp_path_factory.mktemp("tokens") / "tokens"
    tokens.write_text("async-token\n")
    settings = ServerSettings(port=0, metrics_port=0, device="cpu", tls_cert=authority.path("server.pem"),
                              tls_key=authority.path("server.key"), auth_tokens_file=Path(tokens))
    with BackgroundServer(settings) as srv:
        yield srv


def test_tls_and_token(secured_server: BackgroundServer, authority: Authority) -> None:
    """Over a real TLS handshake, the right token computes and a missing one is UNAUTHENTICATED."""
    address = secured_server.address
    call: Callable[[AsyncLossClient], Awaitable[Any]] = lambda c: c.compute("mse", input=np.ones(2), target=np.zeros(2))  # noqa: E731
    assert run(call, address, root_certificates=authority.ca.cert, token="async-token") == 1.0
    with pytest.raises(UnauthenticatedError):
        run(call, address, root_certificates=authority.ca.cert)

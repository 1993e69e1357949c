"""ComputeStream/GradientStream: tensors past the message limit, reassembled, and every malformed stream refused."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import bad_request_fields

from lossd.client import LossClient, ResourceExhaustedError
from lossd.server import BackgroundServer, ServerSettings
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import wire

N = 600_000  # 2.4 MB per float32 tensor: over the 1 MiB message limit of the server below


@pytest.fixture(scope="module")
def small_limit() -> Iterator[BackgroundServer]:
    """A server whose messages may not exceed 1 MiB, and streams not 16 MiB."""
    settings = ServerSettings(port=0, metrics_port=0, device="cpu", max_message_mb=1, max_stream_mb=16)
    with BackgroundServer(settings) as srv:
        yield srv


def _arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random(N, np.float32), rng.random(N, np.float32)


def test_unary_call_over_the_limit_is_refused(small_limit: BackgroundServer) -> None:
    """Without streaming, a 4.8 MB request to a 1 MiB server fails with RESOURCE_EXHAUSTED."""
    x, y = _arrays()
    with LossClient(small_limit.address, stream_mb=1024, timeout=30) as c, pytest.raises(ResourceExhaustedError):
        c.compute("mse", input=x, target=y)


def test_streamed_gradient_past_the_limit_equals_torch(small_limit: BackgroundServer) -> None:
    """The same request streamed in chunks: value and 2.4 MB gradients (reply streamed too) equal torch's."""
    x, y = _arrays()
    with LossClient(small_limit.address, stream_mb=0.5, max_message_mb=1, timeout=60) as c:
        value, grads = c.gradient("mse", input=x, target=y, wrt=["input", "target"])
    tx, ty = torch.from_numpy(x).requires_grad_(), torch.from_numpy(y).requires_grad_()
    loss = F.mse_loss(tx, ty)
    loss.backward()
    assert value == pytest.approx(loss.item(), rel=1e-5)  # float32 sums of 600K terms, in another order
    np.testing.assert_allclose(grads["input"], tx.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(grads["target"], ty.grad.numpy(), rtol=1e-6)


def test_streamed_compute_with_unreduced_reply(small_limit: BackgroundServer) -> None:
    """A streamed Compute with reduction "none" gets its 2.4 MB loss back in chunks, exactly."""
    x, y = _arrays()
    with LossClient(small_limit.address, stream_mb=0.5, max_message_mb=1, timeout=60) as c:
        out = c.compute("mae", input=x, target=y, reduction="none")
    np.testing.assert_array_equal(out, np.abs(x - y))


def test_streamed_grad_output(small_limit: BackgroundServer) -> None:
    """grad_output can be streamed as well: the VJP equals torch's."""
    x, y = _arrays()
    g = np.random.default_rng(1).random(N, np.float32)
    with LossClient(small_limit.address, stream_mb=0.5, max_message_mb=1, timeout=60) as c:
        _, grads = c.gradient("mse", input=x, target=y, reduction="none", grad_output=g)
    np.testing.assert_allclose(grads["input"], 2 * (x - y) * g, rtol=1e-6)


def _header(nbytes_shape: int = 4) -> bytes:
    req = pb.ComputeRequest(loss="mse")
    req.inputs["input"].CopyFrom(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[nbytes_shape]))
    req.inputs["target"].CopyFrom(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[4], raw_data=bytes(16)))
    return pb.StreamRequest(compute=req).SerializeToString()


@pytest.mark.parametrize(("parts", "field"), [
    ([], "request"),
    ([wire.chunk_message("inputs/input", 0, bytes(16))], "request"),
    ([_header(), wire.chunk_message("inputs/other", 0, bytes(16))], "chunk[inputs/other]"),
    ([_header(), wire.chunk_message("inputs/input", 4, bytes(12))], "chunk[inputs/input]"),
    ([_header(), wire.chunk_message("inputs/input", 0, bytes(20))], "chunk[inputs/input]"),
    ([_header(), wire.chunk_message("inputs/input", 0, bytes(8))], "chunk[inputs/input]"),
    ([_header(), _header()], "request"),
], ids=["empty", "chunk-first", "unknown-tensor", "gap", "overrun", "short", "two-headers"])
def test_malformed_streams_are_refused_by_field(small_limit: BackgroundServer, parts: list[bytes],
                                                field: str) -> None:
    """Each malformed stream is INVALID_ARGUMENT naming the header or the chunk at fault."""
    with grpc.insecure_channel(small_limit.address) as ch, pytest.raises(grpc.RpcError) as err:
        list(ch.stream_stream("/lossd.v1.LossService/ComputeStream")(iter(parts), timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(err.value) == [field]


def test_declared_stream_over_the_limit_is_refused_before_allocating(small_limit: BackgroundServer) -> None:
    """A header declaring 32 MB to a 16 MiB stream limit gets RESOURCE_EXHAUSTED at once."""
    with grpc.insecure_channel(small_limit.address) as ch, pytest.raises(grpc.RpcError) as err:
        list(ch.stream_stream("/lossd.v1.LossService/ComputeStream")(iter([_header(8_000_000)]), timeout=10))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert bad_request_fields(err.value) == ["inputs[input].shape"]

"""The same-host shared-memory path: values, zero-copy inputs and outputs, and every refusal."""

from __future__ import annotations

import os
from collections.abc import Iterator
from multiprocessing import shared_memory

import grpc
import numpy as np
import pytest
from helpers import bad_request_fields

from lossd.client import InvalidArgumentError, LossClient
from lossd.server import BackgroundServer, ServerSettings
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import loss_service_pb2_grpc as pb_grpc

PREFIX = f"lossdtest{os.getpid()}-"
N = 1 << 16  # 256 KiB of float32: above the size where the client moves tensors to shared memory


@pytest.fixture(scope="module")
def shm_server() -> Iterator[BackgroundServer]:
    """A server with the shared-memory path on, for names starting with PREFIX."""
    with BackgroundServer(ServerSettings(port=0, metrics_port=0, device="cpu", shm_prefix=PREFIX)) as srv:
        yield srv


@pytest.fixture
def shm_client(shm_server: BackgroundServer) -> Iterator[LossClient]:
    """A client that uses shared memory with the server's prefix."""
    with LossClient(shm_server.address, shared_memory=True, shm_prefix=PREFIX, timeout=30) as c:
        yield c


def _pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random(N, np.float32), rng.random(N, np.float32)


def test_shared_arrays_give_the_grpc_path_results(shm_client: LossClient, client: LossClient) -> None:
    """Inputs in shared arrays and gradients into out= arrays equal the plain gRPC answers."""
    x, y = _pair()
    sx, sy, out = (shm_client.shared_array((N,), np.float32) for _ in range(3))
    sx[:], sy[:] = x, y
    value, grads = shm_client.gradient("mse", input=sx, target=sy, out={"input": out})
    want_value, want = client.gradient("mse", input=x, target=y)
    assert value == pytest.approx(want_value, rel=1e-6)
    assert grads["input"] is out
    np.testing.assert_allclose(out, want["input"], rtol=1e-6)


def test_plain_large_arrays_are_staged_and_gradients_arrive_in_new_shared_arrays(shm_client: LossClient) -> None:
    """Ordinary numpy inputs are copied to staging regions; the gradient comes back in a shared array."""
    x, y = _pair()
    _, grads = shm_client.gradient("mse", input=x, target=y)
    np.testing.assert_allclose(grads["input"], 2 * (x - y) / N, rtol=1e-6)
    assert shm_client._shm is not None and shm_client._shm.region_of(grads["input"]) is not None


def test_input_region_is_mapped_read_only(shm_server: BackgroundServer, shm_client: LossClient) -> None:
    """The server computes from a region without writing to it: the input is unchanged afterwards."""
    x, y = _pair()
    sx = shm_client.shared_array((N,), np.float32)
    sx[:] = x
    shm_client.gradient("mse", input=sx, target=y)
    np.testing.assert_array_equal(sx, x)


def _request(name: str, size: int = 4 * N, offset: int = 0) -> pb.ComputeRequest:
    req = pb.ComputeRequest(loss="mse")
    req.inputs["input"].CopyFrom(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[N],
                                           shm=pb.SharedRegion(name=name, offset=offset, size=size)))
    req.inputs["target"].CopyFrom(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[N], raw_data=bytes(4 * N)))
    return req


@pytest.fixture
def region() -> Iterator[str]:
    """A real 4*N-byte region with the server's prefix, unlinked afterwards."""
    block = shared_memory.SharedMemory(name=f"{PREFIX}raw", create=True, size=4 * N)
    yield block.name.lstrip("/")
    block.close()
    block.unlink()


@pytest.mark.parametrize(("name", "field"), [
    ("other-prefix", "inputs[input].shm.name"),
    (f"{PREFIX}../../etc/passwd", "inputs[input].shm.name"),
    (f"{PREFIX}missing", "inputs[input].shm.name"),
], ids=["outside-prefix", "path-escape", "missing"])
def test_names_the_server_must_not_open_are_refused(shm_server: BackgroundServer, name: str, field: str) -> None:
    """Names outside the prefix, with path characters, or naming nothing are refused by field."""
    with grpc.insecure_channel(shm_server.address) as ch, pytest.raises(grpc.RpcError) as err:
        pb_grpc.LossServiceStub(ch).Compute(_request(name), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(err.value) == [field]


@pytest.mark.parametrize(("size", "offset", "field"), [(4 * N - 4, 0, "inputs[input].shm.size"),
                                                      (4 * N, 8, "inputs[input].shm.offset")],
                         ids=["size-mismatch", "past-the-end"])
def test_regions_too_small_are_refused(shm_server: BackgroundServer, region: str, size: int, offset: int,
                                       field: str) -> None:
    """A declared size that disagrees with the shape, or a range past the object's end, is refused."""
    with grpc.insecure_channel(shm_server.address) as ch, pytest.raises(grpc.RpcError) as err:
        pb_grpc.LossServiceStub(ch).Compute(_request(region, size, offset), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(err.value) == [field]


def test_server_without_a_prefix_refuses_shared_memory(server: BackgroundServer, region: str) -> None:
    """The path is opt-in: the default server refuses a shared-memory tensor, naming it."""
    with grpc.insecure_channel(server.address) as ch, pytest.raises(grpc.RpcError) as err:
        pb_grpc.LossServiceStub(ch).Compute(_request(region), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(err.value) == ["inputs[input].shm"]
    assert "--shm-prefix" in err.value.details()


def test_output_region_for_something_not_computed_is_refused(shm_client: LossClient) -> None:
    """out= for a role outside wrt is refused as output_shm[role]."""
    x, y = _pair()
    out = shm_client.shared_array((N,), np.float32)
    with pytest.raises(InvalidArgumentError) as err:
        shm_client.gradient("mse", input=x, target=y, wrt=["input"], out={"target": out})
    assert err.value.fields == ["output_shm[target]"]


def test_out_requires_shared_arrays(shm_client: LossClient) -> None:
    """out= takes only arrays made by shared_array()."""
    x, y = _pair()
    with pytest.raises(ValueError, match="shared_array"):
        shm_client.gradient("mse", input=x, target=y, out={"input": np.zeros(N, np.float32)})

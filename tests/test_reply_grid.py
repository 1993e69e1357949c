"""Every reply tensor arrives exactly as computed — shape, dtype and bytes — on every path of the codec.

The grid: Compute and Gradient; every reduction; float32, float64, float16 and bfloat16; 1-D and N-D shapes;
sizes on both sides of every threshold in the codec, the server and the client (the zero-copy threshold, the
server's inline threshold, ``stream_mb``, the chunk size, the message limit). Each cell goes through a real
server and is compared with the same loss evaluated in this process, to the bit, by four callers:

- ``numpy``: LossClient with plain numpy arrays (its cached-framing fast path);
- ``torch``: LossClient with torch tensors (its general path; bfloat16 needs it);
- ``shm``: LossClient over the same-host shared-memory path;
- ``raw``: plain protobuf messages and grpc's default serializers, no lossd codec at all: what a client
  in another language sends and sees. Its unary and streaming calls are written out here from the .proto.

The server and clients run with a 1 MiB message limit so that every threshold is crossed by tensors of at
most a few MiB; ``test_default_limits_*`` cross the default 48 MiB / 64 MiB ones once each.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest
import torch

from lossd.client import LossClient
from lossd.losses import REGISTRY, evaluate, validate
from lossd.server import BackgroundServer, ServerSettings
from lossd.server.codec import TORCH_TO_WIRE, WIRE_TO_TORCH
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import wire

KIB = 1024
LIMIT_MB = 1  # server and client message limit in this grid
STREAM_MB = 0.5  # the client streams requests (or replies) over this
CHUNK = LIMIT_MB * 1024 * KIB // 2  # the chunk size both sides use under that limit
INLINE = 256 * KIB  # the server's default inline_bytes
PREFIX = f"lossdgrid{os.getpid()}-"
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
REDUCTIONS = ("none", "mean", "sum")
# Byte sizes of one input tensor around which behaviour changes: the zero-copy threshold, half of the inline
# and of the stream threshold (a request carries two such tensors), the stream threshold and chunk size for
# one tensor, the message limit.
THRESHOLDS = (wire.DETACH_BYTES, INLINE // 2, STREAM_MB * 1024 * KIB // 2, CHUNK, LIMIT_MB * 1024 * KIB)
assert wire.DETACH_BYTES == 64 * KIB, "the grid's sizes assume the codec's 64 KiB zero-copy threshold"


@dataclass(frozen=True)
class Cell:
    """One request: loss, RPC, dtype, reduction, input shape."""

    loss: str
    gradient: bool
    dtype: torch.dtype
    reduction: str
    shape: tuple[int, ...]

    @property
    def id(self) -> str:
        kind = "grad" if self.gradient else "value"
        dtype = str(self.dtype).removeprefix("torch.")
        return f"{self.loss}-{kind}-{dtype}-{self.reduction}-{'x'.join(map(str, self.shape))}"


def _sizes(itemsize: int, step: int) -> list[int]:
    """Element counts just below and just above each threshold (multiples of ``step``), exactly at the
    zero-copy one (the first size it takes), and a tiny one."""
    counts = {step * 4, wire.DETACH_BYTES // itemsize}
    for t in THRESHOLDS:
        at = int(t) // itemsize
        counts |= {at - step, at + step}
    return sorted(counts)


def _shapes(itemsize: int) -> list[tuple[int, ...]]:
    one_d = [(n,) for n in _sizes(itemsize, 1)]
    n_d = [(n // 16, 4, 4) for n in _sizes(itemsize, 16)]
    return one_d + n_d


def _cells(loss: str, sizes: str = "all") -> list[Cell]:
    cells = []
    for dtype in DTYPES:
        itemsize = torch.empty((), dtype=dtype).element_size()
        shapes = _shapes(itemsize)
        if sizes == "edges":  # the zero-copy threshold and the message limit only
            edges = {wire.DETACH_BYTES, LIMIT_MB * 1024 * KIB}
            shapes = [s for s in shapes if any(abs(math.prod(s) * itemsize - e) <= 16 * itemsize for e in edges)]
        for gradient in (False, True):
            for reduction in REDUCTIONS:
                cells += [Cell(loss, gradient, dtype, reduction, shape) for shape in shapes]
    return cells


def _inputs(cell: Cell) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(math.prod(cell.shape) + len(cell.shape))
    if cell.loss == "cross_entropy":  # logits (N, C, d...) and class indices (N, d...)
        logits = torch.randn(cell.shape, generator=gen, dtype=torch.float64).to(cell.dtype)
        target_shape = (cell.shape[0], *cell.shape[2:])
        return {"input": logits, "target": torch.randint(0, cell.shape[1], target_shape, generator=gen)}
    x, y = (torch.randn(cell.shape, generator=gen, dtype=torch.float64).to(cell.dtype) for _ in range(2))
    return {"input": x, "target": y}


def _wrt(cell: Cell) -> list[str]:
    return ["input"] if cell.loss == "cross_entropy" else ["input", "target"]


def _grad_output(cell: Cell, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """A VJP's upstream gradient for unreduced N-D cells (the singular ``grad_output`` field); None otherwise."""
    if not cell.gradient or cell.reduction != "none" or len(cell.shape) == 1:
        return None
    spec, _ = REGISTRY.resolve(cell.loss)
    shape = spec.unreduced_shape(inputs, {})
    return torch.rand(shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(cell.dtype)


def _expected(cell: Cell, inputs: dict[str, torch.Tensor],
              grad_output: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The same request evaluated in this process: what the server must send back, to the bit."""
    spec, preset = REGISTRY.resolve(cell.loss)
    if cell.gradient:
        prepared = validate(spec, dict(inputs), {}, cell.reduction, wrt=_wrt(cell), grad_output=grad_output,
                            preset=preset)
    else:
        prepared = validate(spec, dict(inputs), {}, cell.reduction, preset=preset)
    result = evaluate(prepared, torch.device("cpu"))
    return result.loss.detach(), {k: v.detach() for k, v in result.gradients.items()}


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    """What LossClient returns for a tensor the server sent (bfloat16 arrives as float32)."""
    return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()


def _check_array(got: Any, want: torch.Tensor, what: str) -> None:
    want_np = _as_numpy(want)
    got_np = np.asarray(got)
    assert got_np.shape == want_np.shape, f"{what}: shape {got_np.shape}, expected {want_np.shape}"
    assert got_np.dtype == want_np.dtype, f"{what}: dtype {got_np.dtype}, expected {want_np.dtype}"
    np.testing.assert_array_equal(got_np, want_np, err_msg=what)


def _check_value(got: Any, want: torch.Tensor, reduction: str) -> None:
    if reduction == "none":
        _check_array(got, want, "loss")
    else:
        assert isinstance(got, float)
        assert got == float(want.float() if want.dtype == torch.bfloat16 else want)


# --- servers and clients -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid_server() -> Iterator[BackgroundServer]:
    """A CPU server with a 1 MiB message limit and the shared-memory path on."""
    settings = ServerSettings(port=0, metrics_port=0, device="cpu", max_message_mb=LIMIT_MB, shm_prefix=PREFIX)
    with BackgroundServer(settings) as srv:
        yield srv


@pytest.fixture(scope="module")
def grid_client(grid_server: BackgroundServer) -> Iterator[LossClient]:
    with LossClient(grid_server.address, max_message_mb=LIMIT_MB, stream_mb=STREAM_MB, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def grid_shm_client(grid_server: BackgroundServer) -> Iterator[LossClient]:
    with LossClient(grid_server.address, max_message_mb=LIMIT_MB, stream_mb=STREAM_MB, timeout=60,
                    shared_memory=True, shm_prefix=PREFIX) as c:
        yield c


@pytest.fixture(scope="module")
def grid_channel(grid_server: BackgroundServer) -> Iterator[grpc.Channel]:
    limit = LIMIT_MB * 1024 * KIB
    options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
    with grpc.insecure_channel(grid_server.address, options=options) as ch:
        yield ch


def _call_client(client: LossClient, cell: Cell, inputs: dict[str, Any], grad_output: Any) -> tuple[Any, dict]:
    if cell.gradient:
        return client.gradient(cell.loss, wrt=_wrt(cell), reduction=cell.reduction, grad_output=grad_output,
                               **inputs)
    return client.compute(cell.loss, reduction=cell.reduction, **inputs), {}


def _check_client(client: LossClient, cell: Cell, kind: str) -> None:
    inputs = _inputs(cell)
    grad_output = _grad_output(cell, inputs)
    want_loss, want_grads = _expected(cell, inputs, grad_output)
    if kind == "torch":
        sent, upstream = inputs, grad_output
    else:  # numpy arrays (bfloat16 has no numpy dtype: it travels as a torch tensor)
        sent = {k: v if v.dtype == torch.bfloat16 else v.numpy() for k, v in inputs.items()}
        upstream = grad_output if grad_output is None or grad_output.dtype == torch.bfloat16 else grad_output.numpy()
    value, grads = _call_client(client, cell, sent, upstream)
    _check_value(value, want_loss, cell.reduction)
    assert sorted(grads) == sorted(want_grads)
    for role, g in grads.items():
        _check_array(g, want_grads[role], f"gradients[{role}]")


# --- the raw protobuf caller ---------------------------------------------------------------------------


def _raw_tensor(t: torch.Tensor, with_content: bool = True) -> pb.Tensor:
    data = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if with_content else b""
    return pb.Tensor(dtype=TORCH_TO_WIRE[t.dtype], shape=list(t.shape), raw_data=data)


def _decode_raw(msg: pb.Tensor, data: bytes | None = None) -> torch.Tensor:
    dtype = WIRE_TO_TORCH[msg.dtype]
    shape = tuple(msg.shape)
    if data is None and (len(msg.float_val) or len(msg.double_val)):
        values = msg.double_val if len(msg.double_val) else msg.float_val
        source = torch.float64 if len(msg.double_val) else torch.float32
        return torch.tensor(list(values), dtype=source).to(dtype).reshape(shape)
    data = msg.raw_data if data is None else data
    if not data:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(data), dtype=dtype).reshape(shape)


def _raw_call(channel: grpc.Channel, cell: Cell, inputs: dict[str, torch.Tensor], grad_output: Any,
              encoding: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The cell sent as a plain protobuf request: unary when request and reply fit in one message, else
    over the streaming RPC with the tensors in chunks, as any protobuf library would send it."""
    cls = pb.GradientRequest if cell.gradient else pb.ComputeRequest
    request = cls(loss=cell.loss, reduction=cell.reduction, response_encoding=encoding)
    if cell.gradient:
        request.wrt.extend(_wrt(cell))
    tensors = dict(inputs)
    request_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
    reply_bytes = 3 * max(t.numel() * 8 for t in tensors.values())
    if request_bytes + reply_bytes < LIMIT_MB * 1024 * KIB // 2:
        for role, t in tensors.items():
            request.inputs[role].CopyFrom(_raw_tensor(t))
        if grad_output is not None:
            request.grad_output.CopyFrom(_raw_tensor(grad_output))
        method = "Gradient" if cell.gradient else "Compute"
        response_cls = pb.GradientResponse if cell.gradient else pb.ComputeResponse
        call = channel.unary_unary(f"/lossd.v1.LossService/{method}", request_serializer=cls.SerializeToString,
                                   response_deserializer=response_cls.FromString)
        reply = call(request, timeout=60)
        return _decode_raw(reply.loss), {r: _decode_raw(g) for r, g in reply.gradients.items()} \
            if cell.gradient else {}
    return _raw_stream(channel, cell, request, tensors, grad_output)


def _raw_stream(channel: grpc.Channel, cell: Cell, request: Any, tensors: dict[str, torch.Tensor],
                grad_output: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    kind = "gradient" if cell.gradient else "compute"
    streamed = {f"inputs/{role}": t for role, t in tensors.items()}
    for role, t in tensors.items():
        request.inputs[role].CopyFrom(_raw_tensor(t, with_content=False))
    if grad_output is not None:
        request.grad_output.CopyFrom(_raw_tensor(grad_output, with_content=False))
        streamed["grad_output"] = grad_output

    def parts() -> Iterator[pb.StreamRequest]:
        yield pb.StreamRequest(**{kind: request})
        for name, t in streamed.items():
            data = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            for offset in range(0, len(data), CHUNK):
                yield pb.StreamRequest(chunk=pb.TensorChunk(tensor=name, offset=offset,
                                                            data=data[offset: offset + CHUNK]))

    method = "GradientStream" if cell.gradient else "ComputeStream"
    call = channel.stream_stream(f"/lossd.v1.LossService/{method}",
                                 request_serializer=pb.StreamRequest.SerializeToString,
                                 response_deserializer=pb.StreamResponse.FromString)
    header: Any = None
    received: dict[str, bytearray] = {}
    for part in call(parts(), timeout=60):
        if header is None:
            header = getattr(part, kind)
            continue
        buf = received.setdefault(part.chunk.tensor, bytearray())
        assert part.chunk.offset == len(buf), "chunks arrive in order"
        buf += part.chunk.data

    def tensor(name: str, msg: pb.Tensor) -> torch.Tensor:
        return _decode_raw(msg, bytes(received[name])) if name in received else _decode_raw(msg)

    loss = tensor("loss", header.loss)
    grads = {r: tensor(f"gradients/{r}", g) for r, g in header.gradients.items()} if cell.gradient else {}
    return loss, grads


def _check_raw(channel: grpc.Channel, cell: Cell, encoding: int) -> None:
    inputs = _inputs(cell)
    grad_output = _grad_output(cell, inputs)
    want_loss, want_grads = _expected(cell, inputs, grad_output)
    loss, grads = _raw_call(channel, cell, inputs, grad_output, encoding)
    assert loss.dtype == want_loss.dtype and tuple(loss.shape) == tuple(want_loss.shape)
    assert torch.equal(loss, want_loss)
    assert sorted(grads) == sorted(want_grads)
    for role, g in grads.items():
        assert g.dtype == want_grads[role].dtype and tuple(g.shape) == tuple(want_grads[role].shape), role
        assert torch.equal(g, want_grads[role]), role


# --- the grid ------------------------------------------------------------------------------------------

# mse has a closed form, huber goes through autograd: the same wire, so huber takes the edge sizes only.
ELEMENTWISE = _cells("mse") + _cells("huber", "edges")
# Cross-entropy: (N, C) logits and (N, C, d) ones, reply shaped (N,) / (N, d); class indices as int64.
CROSS_ENTROPY = [c for c in _cells("cross_entropy") if len(c.shape) > 1]
EDGES = _cells("mse", "edges") + [c for c in _cells("cross_entropy", "edges") if len(c.shape) > 1]


@pytest.mark.parametrize("cell", ELEMENTWISE + CROSS_ENTROPY, ids=lambda c: c.id)
def test_client_numpy_reply_equals_in_process_result(grid_client: LossClient, cell: Cell) -> None:
    """LossClient with numpy arrays gets the in-process loss and gradients, bit for bit."""
    _check_client(grid_client, cell, "numpy")


@pytest.mark.parametrize("cell", _cells("mse") + CROSS_ENTROPY, ids=lambda c: c.id)
def test_raw_protobuf_reply_equals_in_process_result(grid_channel: grpc.Channel, cell: Cell) -> None:
    """Plain protobuf requests, decoded by plain protobuf, carry the in-process loss and gradients."""
    _check_raw(grid_channel, cell, pb.ENCODING_RAW)


@pytest.mark.parametrize("cell", EDGES, ids=lambda c: c.id)
def test_client_torch_reply_equals_in_process_result(grid_client: LossClient, cell: Cell) -> None:
    """LossClient with torch tensors (its general path) gets the in-process loss and gradients."""
    _check_client(grid_client, cell, "torch")


@pytest.mark.parametrize("cell", EDGES, ids=lambda c: c.id)
def test_client_shared_memory_reply_equals_in_process_result(grid_shm_client: LossClient, cell: Cell) -> None:
    """LossClient over shared memory gets the in-process loss and gradients."""
    _check_client(grid_shm_client, cell, "shm")


TYPED = [c for c in EDGES if math.prod(c.shape) * 8 * 3 < LIMIT_MB * 1024 * KIB // 2]


@pytest.mark.parametrize("cell", TYPED, ids=lambda c: c.id)
def test_typed_list_reply_equals_in_process_result(grid_channel: grpc.Channel, cell: Cell) -> None:
    """Replies asked for as typed lists (ENCODING_VALUES) hold the in-process values."""
    _check_raw(grid_channel, cell, pb.ENCODING_VALUES)


def test_unary_reply_over_the_message_limit_is_refused_naming_the_stream(grid_channel: grpc.Channel) -> None:
    """A unary call whose reply cannot fit one message is RESOURCE_EXHAUSTED with a message naming the
    streaming RPC (not grpc's bare "Sent message larger than max")."""
    n = LIMIT_MB * 1024 * KIB // 4 // 4  # 256 KiB each: the request fits, its three reply tensors do not
    x = torch.ones(n * 3 // 2)
    request = pb.GradientRequest(loss="mse", reduction="none", wrt=["input", "target"],
                                 inputs={"input": _raw_tensor(x), "target": _raw_tensor(x)})
    call = grid_channel.unary_unary("/lossd.v1.LossService/Gradient",
                                    request_serializer=pb.GradientRequest.SerializeToString,
                                    response_deserializer=pb.GradientResponse.FromString)
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "GradientStream" in info.value.details()


# --- the default limits (64 MiB messages, 48 MiB stream_mb), crossed once each ---------------------------

DEFAULT_STREAM = 48 * 1024 * KIB


@pytest.mark.slow
@pytest.mark.parametrize("elements", [DEFAULT_STREAM // 8 - 1024, DEFAULT_STREAM // 8 + 1024],
                         ids=["below-stream_mb", "above-stream_mb"])
def test_default_limits_unreduced_gradient_of_two_roles(client: LossClient, elements: int) -> None:
    """With the default limits, an unreduced two-role gradient whose reply (three tensors) passes the
    message limit arrives whole, on either side of ``stream_mb``."""
    cell = Cell("mse", True, torch.float32, "none", (elements // 2, 2))
    inputs = _inputs(cell)
    want_loss, want_grads = _expected(cell, inputs, None)
    value, grads = _call_client(client, cell, {k: v.numpy() for k, v in inputs.items()}, None)
    _check_value(value, want_loss, "none")
    for role, g in grads.items():
        _check_array(g, want_grads[role], f"gradients[{role}]")


def test_default_limits_zero_copy_threshold(client: LossClient) -> None:
    """The session's default server: the first unreduced loss that takes the zero-copy path keeps its shape."""
    cell = Cell("mse", False, torch.float32, "none", (wire.DETACH_BYTES // 4,))
    inputs = _inputs(cell)
    want, _ = _expected(cell, inputs, None)
    _check_value(client.compute("mse", reduction="none", **{k: v.numpy() for k, v in inputs.items()}), want, "none")


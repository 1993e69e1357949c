"""ComputeStream and GradientStream: requests and replies larger than one gRPC message.

The first message carries the request, whose large tensors have a dtype and shape but no content;
their bytes follow as chunks, in order. Everything declared is checked, and its memory bounded,
before anything is allocated; the reassembled request then takes the same path as a unary one.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

from lossd.losses import FieldViolation, ResourceLimitError
from lossd.losses.errors import invalid
from lossd.server.codec import WIRE_TO_TORCH, itemsize
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import wire

CHUNK_BYTES = 4 << 20  # 4 MiB, or half the message limit when that is smaller: framing stays noise


def _streamed(header: Any) -> Iterator[tuple[str, str, tuple[int, str | None], pb.Tensor]]:
    """(stream name, field name, raw key, tensor) of each tensor in the header."""
    for role, tensor in header.inputs.items():
        yield f"inputs/{role}", f"inputs[{role}]", (wire.INPUTS, role), tensor
    if isinstance(header, pb.GradientRequest) and header.HasField("grad_output"):
        yield "grad_output", "grad_output", (wire.GRAD_OUTPUT, None), header.grad_output



async def receive(parts: AsyncIterator[wire.Parsed | wire.Chunk], kind: str, max_bytes: int) -> wire.Parsed:
    """The request a stream carries, with its chunked tensors reassembled (one copy each)."""
    first = await anext(aiter(parts), None)
    if first is None:
        raise invalid("request", "empty stream; send the request first, then its tensors' chunks")
    if isinstance(first, wire.Chunk) or first.error or first.message.WhichOneof("part") != kind:
        detail = first.error if isinstance(first, wire.Parsed) and first.error else f"expected {kind!r}"
        raise invalid("request", f"the first message must hold the request ({detail})")
    header = getattr(first.message, kind)
    buffers: dict[str, tuple[tuple[int, str | None], bytearray]] = {}
    total = 0
    for name, field, key, tensor in _streamed(header):
        if wire.has_content(tensor) or tensor.dtype not in WIRE_TO_TORCH or any(d < 0 for d in tensor.shape):
            continue  # sent whole, or wrong in a way the decoder reports by field
        nbytes = math.prod(tensor.shape) * itemsize(WIRE_TO_TORCH[tensor.dtype])
        total += nbytes
        if total > max_bytes:
            raise ResourceLimitError(
                f"the streamed tensors claim more than {max_bytes} bytes",
                [FieldViolation(f"{field}.shape", f"the stream's tensors exceed the limit of {max_bytes} bytes")])
        if nbytes:
            buffers[name] = (key, bytearray(nbytes))
    filled = dict.fromkeys(buffers, 0)
    async for part in parts:
        if not isinstance(part, wire.Chunk):
            raise invalid("request", "after the first message a stream carries chunks only")
        entry = buffers.get(part.tensor)
        if entry is None:
            raise invalid(f"chunk[{part.tensor}]", f"names no streamed tensor; expected one of: {', '.join(buffers)}")
        buf, done = entry[1], filled[part.tensor]
        if part.offset != done or done + len(part.data) > len(buf):
            raise invalid(f"chunk[{part.tensor}]", f"offset {part.offset} with {len(part.data)} bytes; expected "
                          f"offset {done} and at most {len(buf) - done} bytes")
        buf[done: done + len(part.data)] = part.data
        filled[part.tensor] = done + len(part.data)
    for name, (_, buf) in buffers.items():
        if filled[name] != len(buf):
            raise invalid(f"chunk[{name}]", f"the stream ended after {filled[name]} of {len(buf)} bytes")
    raw = {key: memoryview(buf) for key, buf in buffers.values()}
    return wire.Parsed(header, raw, size=total)


_MAPS = {wire.GRADIENTS: "gradients", wire.HESSIANS: "hessians"}


def reply_parts(outgoing: wire.Outgoing, kind: str,
                chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes | pb.StreamResponse]:
    """The reply as stream parts: the response (large tensors without content), then their chunks."""
    header = pb.StreamResponse(**{kind: outgoing.message})
    reply = getattr(header, kind)
    for d in outgoing.detached:  # the header declares each streamed tensor: dtype and shape, no content
        if d.field == wire.LOSS:
            reply.loss.CopyFrom(d.meta)
        else:
            (reply.hessians if d.field == wire.HESSIANS else reply.gradients)[d.key].CopyFrom(d.meta)
    yield header
    for d in outgoing.detached:
        name = "loss" if d.field == wire.LOSS else f"{_MAPS[d.field]}/{d.key}"
        data = memoryview(d.raw).cast("B") if memoryview(d.raw).nbytes else memoryview(b"")
        for offset in range(0, len(data), chunk_bytes):
            yield wire.chunk_message(name, offset, data[offset: offset + chunk_bytes])

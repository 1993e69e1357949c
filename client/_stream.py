"""Client side of ComputeStream/GradientStream: requests and replies larger than one message."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from lossd.client._codec import dtype_size
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import wire

CHUNK_BYTES = 4 << 20



def _reply_buffers(header: Any) -> dict[str, tuple[tuple[int, str | None], np.ndarray]]:
    """Buffers for the reply tensors that will arrive as chunks (declared without content, not empty)."""
    items = [("loss", (wire.LOSS, None), header.loss)]
    for name, field in (("gradients", wire.GRADIENTS), ("hessians", wire.HESSIANS)):
        items += [(f"{name}/{role}", (field, role), t) for role, t in getattr(header, name, {}).items()]
    out = {}
    for name, key, t in items:
        nbytes = int(np.prod(t.shape, dtype=np.int64)) * dtype_size(t.dtype)
        if nbytes and not wire.has_content(t):
            out[name] = (key, np.empty(nbytes, np.uint8))
    return out


def _declared(kind: str, request: Any, detached: list[wire.Detached], chunk_bytes: int) -> Iterator[bytes]:
    """The request's stream parts: the header (declaring each streamed tensor: dtype and shape, no
    content), then each tensor's chunks."""
    names = {}
    for d in detached:
        if d.field == wire.GRAD_OUTPUT:
            request.grad_output.CopyFrom(d.meta)
            names[id(d)] = "grad_output"
        else:
            request.inputs[d.key].CopyFrom(d.meta)
            names[id(d)] = f"inputs/{d.key}"

    def parts() -> Iterator[bytes]:
        yield pb.StreamRequest(**{kind: request}).SerializeToString()
        for d in detached:
            data = memoryview(d.raw).cast("B") if memoryview(d.raw).nbytes else memoryview(b"")
            for offset in range(0, len(data), chunk_bytes):
                yield wire.chunk_message(names[id(d)], offset, data[offset: offset + chunk_bytes])
    return parts()


class _Reply:
    """The reply's parts put back together: the header, then chunks into buffers it declared."""

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._header: Any = None
        self._buffers: dict[str, tuple[tuple[int, str | None], np.ndarray]] = {}

    def add(self, part: Any) -> None:
        if self._header is None:
            self._header = getattr(part.message, self._kind)
            self._buffers = _reply_buffers(self._header)
            return
        entry = self._buffers.get(part.tensor)
        if entry is None or part.offset + len(part.data) > entry[1].nbytes:
            raise RuntimeError(f"the server streamed an unexpected chunk for {part.tensor!r}")
        entry[1][part.offset: part.offset + len(part.data)] = np.frombuffer(part.data, np.uint8)

    def parsed(self) -> wire.Parsed:
        return wire.Parsed(self._header, {key: memoryview(buf) for key, buf in self._buffers.values()})


def stream_call(call: Callable[[Iterator[bytes]], Any], kind: str, request: Any,
                detached: list[wire.Detached], chunk_bytes: int = CHUNK_BYTES) -> wire.Parsed:
    """Send ``request`` (``kind`` "compute" or "gradient") with its large tensors in chunks; the reply,
    reassembled, as a :class:`wire.Parsed` like a unary reply's."""
    reply = _Reply(kind)
    for part in call(_declared(kind, request, detached, chunk_bytes)):
        reply.add(part)
    return reply.parsed()


async def stream_call_async(call: Callable[[Iterator[bytes]], Any], kind: str, request: Any,
                            detached: list[wire.Detached], chunk_bytes: int = CHUNK_BYTES) -> wire.Parsed:
    """:func:`stream_call` for grpc.aio: ``call`` returns an async iterator of the reply's parts."""
    reply = _Reply(kind)
    async for part in call(_declared(kind, request, detached, chunk_bytes)):
        reply.add(part)
    return reply.parsed()

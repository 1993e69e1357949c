"""The Pipeline RPC: many small Compute and Gradient requests over one bidirectional stream.

A unary call costs the same fixed work on both ends whatever it carries: a new HTTP/2 stream, headers,
trailers, a task and several wake-ups. Over one stream, a request costs one entry in a message, and a
message carries as many as the caller had ready. Each item goes through the same validation and
evaluation as a unary call (``Pipeline.do``) and is answered by a result with its id: small items at once
on the event loop, in the order they came, large ones on the compute threads as they complete. A refused
item is answered with its status (code, message, the fields at fault) and the stream goes on.

Metrics: the stream is one ``Pipeline`` call; each item is counted as a ``PipelineItem`` call, with its own
loss, code and duration, so dashboards of calls and refusals see items as they see unary calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc

from lossd.losses import FieldViolation, ResourceLimitError
from lossd.losses.errors import invalid
from lossd.server.errors import ComputeDeadlineError, to_failure
from lossd.server.logs import new_request_id
from lossd.server.metrics import UNKNOWN_LOSS
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import wire

if TYPE_CHECKING:
    from lossd.server.servicer import LossServicer

STREAM_METHOD = "Pipeline"
ITEM_METHOD = "PipelineItem"
_DETAILS_KEY = "grpc-status-details-bin"
_CANCELLED_STATUS: bytes | None = None


class PipelineCall:
    """One Pipeline stream on ``servicer``: reads items, answers each, writes results as they are ready."""

    def __init__(self, servicer: LossServicer, context: grpc.aio.ServicerContext) -> None:
        self._servicer = servicer
        self._pipeline = servicer.pipeline
        self._registry = servicer.registry
        self._metrics = servicer.metrics
        self._context = context
        self._write_lock = asyncio.Lock()
        self._pending: dict[int, asyncio.Task[None]] = {}  # offloaded items not yet computed: cancellable
        self._unwritten: set[asyncio.Task[None]] = set()  # offloaded items whose results are not yet written

    async def run(self, messages: AsyncIterator[pb.PipelineRequest]) -> None:
        """Serve the stream until the caller half-closes it and every item has been answered."""
        try:
            async for message in messages:
                arrived = time.perf_counter()
                response = pb.PipelineResponse()
                for item_id in message.cancel:
                    task = self._pending.pop(item_id, None)
                    if task is not None and task.cancel():
                        _cancelled(response.results.add(), item_id)
                for item in message.items:
                    if item.ByteSize() <= self._servicer.inline_bytes:
                        self.answer(item, arrived, response.results.add())
                    else:
                        self._offload(item, arrived)
                if response.results:
                    await self._write(response)
            # The stream ends once every result is written: an item computed is no longer pending (too late to
            # cancel) but may still be waiting for its write, which returning now would lose.
            while self._unwritten:
                await asyncio.gather(*self._unwritten, return_exceptions=True)
        finally:
            for task in self._unwritten:
                task.cancel()

    def answer(self, item: pb.PipelineItem, arrived: float, result: pb.PipelineResult) -> None:
        """Compute ``item`` now (or refuse it) into ``result``, and count it."""
        started = time.perf_counter()
        result.id = item.id
        kind = item.WhichOneof("call")
        request = getattr(item, kind) if kind else None
        label = (self._registry.canonical(request.loss) or UNKNOWN_LOSS) if request is not None else UNKNOWN_LOSS
        code = grpc.StatusCode.OK
        elements = bytes_out = 0
        size = request.ByteSize() if request is not None else 0
        try:
            self._servicer.admit()
            if request is None:
                raise invalid("items.call", "empty; set compute or gradient")
            _check_deadline(item, arrived)
            outgoing, elements = self._pipeline.do(wire.Parsed(request, size=size), gradient=kind == "gradient")
            bytes_out = self._fill(result, kind, outgoing)
        except Exception as exc:  # every refusal answers this item only: the stream goes on
            code = self._refuse(result, exc)
        self._metrics.observe(ITEM_METHOD, label, code, time.perf_counter() - started, elements, size, bytes_out)

    def _fill(self, result: pb.PipelineResult, kind: str, outgoing: wire.Outgoing) -> int:
        """Put the reply into ``result``; its size, refused past the message limit (like a unary reply)."""
        reply = getattr(result, kind)
        if isinstance(outgoing, wire.Encoded):  # a planned reply, already encoded
            reply.MergeFromString(outgoing.data)
        elif outgoing.detached:  # large tensors were kept out of the message: bring them in, as one encoding
            reply.MergeFromString(wire.serialize(outgoing.message, outgoing.detached))
        else:
            reply.CopyFrom(outgoing.message)
        size = reply.ByteSize()
        if size > self._servicer.max_reply_bytes:
            result.ClearField(kind)
            raise ResourceLimitError(
                f"the reply holds {size} bytes, over this server's message limit of "
                f"{self._servicer.max_reply_bytes}; send this request over {kind.capitalize()}Stream",
                [FieldViolation("items", f"the reply to this item ({size} bytes) does not fit one message")])
        return size

    def _refuse(self, result: pb.PipelineResult, exc: Exception) -> grpc.StatusCode:
        request_id = new_request_id()
        failure = to_failure(exc, request_id)
        result.error = dict(failure.trailing_metadata).get(_DETAILS_KEY, b"")
        result.request_id = request_id
        return failure.code

    def _offload(self, item: pb.PipelineItem, arrived: float) -> None:
        """A large item: computed on a compute thread, its result written when it is done."""
        loop = asyncio.get_running_loop()

        async def run() -> None:
            response = pb.PipelineResponse()
            work = loop.run_in_executor(self._servicer.executor, self.answer, item, arrived, response.results.add())
            try:
                await self._servicer.bounded(work)
            finally:
                self._pending.pop(item.id, None)
            await self._write(response)

        task = loop.create_task(run())
        self._pending[item.id] = task
        self._unwritten.add(task)
        task.add_done_callback(self._unwritten.discard)

    async def _write(self, response: pb.PipelineResponse) -> None:
        async with self._write_lock:  # one write at a time on a stream
            await self._context.write(response)


def _check_deadline(item: pb.PipelineItem, arrived: float) -> None:
    if item.timeout_ms and time.perf_counter() - arrived > item.timeout_ms / 1e3:
        raise ComputeDeadlineError(f"the item's deadline ({item.timeout_ms} ms) passed before its turn came; "
                                   "nothing was computed")


def _cancelled(result: pb.PipelineResult, item_id: int) -> None:
    """The answer to an item the caller cancelled before it was computed."""
    global _CANCELLED_STATUS
    if _CANCELLED_STATUS is None:
        from google.rpc import code_pb2, status_pb2

        _CANCELLED_STATUS = status_pb2.Status(code=code_pb2.CANCELLED,
                                              message="cancelled by the caller before it was computed"
                                              ).SerializeToString()
    result.id = item_id
    result.error = _CANCELLED_STATUS

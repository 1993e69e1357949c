"""The ``lossd.v1.LossService`` implementation: the RPC plumbing around lossd.server.pipeline.

``serve_sync`` (gRPC's unary calls, on the server's threads), ``_serve`` (the REST front's, on the event loop)
and ``_serve_stream`` (the streaming RPCs, on the event loop through lossd.server.bridge) are the places that
count calls, time them, apply the limits, turn exceptions into statuses, tag each call with its request id, and
decide whether a request is computed where it was received, batched, or handed to the compute threads; they
share their steps (``_open``, ``_refused``, ``_close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent import futures
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import grpc

from lossd.losses import (
    FieldViolation,
    Registry,
    ResourceLimitError,
)
from lossd.losses.errors import invalid
from lossd.server.batching import Batcher
from lossd.server.describe import loss_info
from lossd.server.errors import ComputeDeadlineError, RpcFailure, ServerBusyError, ShuttingDownError, to_failure
from lossd.server.logs import REQUEST_ID, given_request_id, new_request_id
from lossd.server.metrics import UNKNOWN_LOSS, ServerMetrics, lossd_version
from lossd.server.pipeline import Pipeline
from lossd.server.pipelined import STREAM_METHOD, PipelineCall
from lossd.server.placement import Placement
from lossd.server.shm import SharedMemoryAccess
from lossd.server.streaming import CHUNK_BYTES, receive, reply_parts
from lossd.server.tracing import CallSpans
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import loss_service_pb2_grpc as pb_grpc
from lossd.v1 import wire

log = logging.getLogger("lossd.server")
SERVICE = pb.DESCRIPTOR.services_by_name["LossService"].full_name


@dataclass
class _Call:
    """What one call's bookkeeping records as it goes."""

    loss: str
    request_id: str | None
    code: grpc.StatusCode = grpc.StatusCode.OK
    elements: int = 0
    started: float = field(default_factory=time.perf_counter)
    spans: Any = None  # CallSpans, when tracing
    device: str | None = None
    ended: bool = False  # counted and logged already


class LossServicer(pb_grpc.LossServiceServicer):
    """Serves losses from ``registry`` on ``device``."""

    def __init__(self, registry: Registry, placement: Placement, metrics: ServerMetrics, executor: Executor,
                 *, max_elements: int, inline_bytes: int, shm: SharedMemoryAccess | None = None,
                 max_stream_bytes: int = 2 << 30, batcher: Batcher | None = None, max_in_flight: int = 0,
                 max_request_elements: int = 0, max_deadline_s: float = 0.0, access_log: bool = False,
                 max_request_memory_bytes: int = 0, tracer: Any = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._registry = registry
        # The event loop the streams, the REST front and the batcher run on; unary gRPC calls run on the server's
        # threads (grpc's thread-pool server) and reach the loop only to batch.
        self._loop = loop
        self._in_flight = metrics.calls_in_flight  # counted by the server's threads and the loop alike
        self._pipeline = Pipeline(registry, placement, metrics, max_elements=max_elements,
                                  shm=shm or SharedMemoryAccess(""), batcher=batcher,
                                  max_request_elements=max_request_elements,
                                  max_request_bytes=max_request_memory_bytes)
        self._server_info = pb.ServerInfo(
            version=lossd_version(), device=str(placement.device), gpu_min_elements=placement.gpu_min_elements,
            max_message_bytes=max_elements, shm_prefix=shm.prefix if shm else "")
        self._metrics = metrics
        self._executor = executor
        self._inline_bytes = inline_bytes
        self._max_stream_bytes = max_stream_bytes
        self._batching = batcher is not None
        self._max_in_flight = max_in_flight
        self._max_deadline_s = max_deadline_s or None
        self._draining = False
        self._last_call = 0.0
        self._access_log = access_log
        self._tracer = tracer  # an OpenTelemetry tracer, or None: tracing off
        self._chunk_bytes = min(CHUNK_BYTES, max(1, max_elements // 2))  # max_elements: the message limit
        # The largest reply a unary call may carry: the message limit less room for framing and metadata.
        self._max_reply_bytes = max(0, max_elements - _REPLY_SLACK)

    def Compute(self, request: wire.Parsed, context: grpc.ServicerContext) -> wire.Outgoing:
        return self.serve_sync("Compute", request.message.loss, request, context, self._compute,
                               self._compute_batched)

    def Gradient(self, request: wire.Parsed, context: grpc.ServicerContext) -> wire.Outgoing:
        return self.serve_sync("Gradient", request.message.loss, request, context, self._gradient,
                               self._gradient_batched)

    def _compute(self, parsed: wire.Parsed) -> tuple[wire.Outgoing, int]:
        return self._pipeline.do(parsed, gradient=False)

    def _gradient(self, parsed: wire.Parsed) -> tuple[wire.Outgoing, int]:
        return self._pipeline.do(parsed, gradient=True)

    def _compute_batched(self, parsed: wire.Parsed) -> Awaitable[tuple[wire.Outgoing, int]]:
        return self._pipeline.do_batched(parsed, gradient=False)

    def _gradient_batched(self, parsed: wire.Parsed) -> Awaitable[tuple[wire.Outgoing, int]]:
        return self._pipeline.do_batched(parsed, gradient=True)

    async def Pipeline(self, messages: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
        """Many small requests over one stream (lossd.server.pipelined): the stream is one call in the metrics
        and the in-flight count; each item is counted as a PipelineItem call."""
        async with self._accounted(STREAM_METHOD, "all", context):
            await PipelineCall(self, context).run(messages)

    @property
    def registry(self) -> Registry:
        """The losses served."""
        return self._registry

    @property
    def metrics(self) -> ServerMetrics:
        """The server's metrics."""
        return self._metrics

    @property
    def executor(self) -> Executor:
        """The compute threads."""
        return self._executor

    @property
    def inline_bytes(self) -> int:
        """Requests up to this size are computed where they were received; larger ones on the compute threads."""
        return self._inline_bytes

    @property
    def max_reply_bytes(self) -> int:
        """The largest reply one message may carry."""
        return self._max_reply_bytes

    @property
    def pipeline(self) -> Pipeline:
        """The validation and evaluation every front shares."""
        return self._pipeline

    @property
    def draining(self) -> bool:
        """Whether the server is refusing new calls before it stops (readiness is false then)."""
        return self._draining

    async def serve(self, method: str, loss_name: str | None, request: Any, context: Any,
                    work: Callable[[Any], tuple[Any, int]],
                    batched: Callable[[Any], Awaitable[tuple[Any, int]]] | None = None,
                    service: str = SERVICE) -> Any:
        """One call of another front through the same admission, limits, errors, metrics and tracing (see
        :meth:`_serve`)."""
        return await self._serve(method, loss_name, request, context, work, batched, service)

    def ListLosses(self, request: wire.Parsed, context: grpc.ServicerContext) -> pb.ListLossesResponse:
        return self.serve_sync("ListLosses", request.message.name or None, request, context, self._do_list)

    async def ComputeStream(self, parts: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for part in self._serve_stream("ComputeStream", parts, context, "compute", self._compute):
            yield part

    async def GradientStream(self, parts: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for part in self._serve_stream("GradientStream", parts, context, "gradient", self._gradient):
            yield part

    async def _serve_stream(self, method: str, parts: AsyncIterator[Any], context: grpc.aio.ServicerContext,
                            kind: str, work: Callable[[Any], tuple[wire.Outgoing, int]]) -> AsyncIterator[Any]:
        """Like _serve, for a streamed request and reply (the reply's streaming is timed too)."""
        async with self._accounted(method, UNKNOWN_LOSS, context) as call:
            if call.spans is not None:
                work = _traced(work, call.spans)
            parsed = await receive(parts, kind, self._max_stream_bytes)
            call.loss = self._registry.canonical(parsed.message.loss) or UNKNOWN_LOSS
            loop = asyncio.get_running_loop()
            outgoing, call.elements = await self.bounded(loop.run_in_executor(self._executor, work, parsed))
            call.device = outgoing.message.device
            for part in reply_parts(outgoing, kind, self._chunk_bytes):
                yield part

    async def _serve(self, method: str, loss_name: str | None, request: Any, context: grpc.aio.ServicerContext,
                     work: Callable[[Any], tuple[Any, int]],
                     batched: Callable[[Any], Awaitable[tuple[Any, int]]] | None = None,
                     service: str = SERVICE) -> Any:
        """One unary call of the REST front, with the bookkeeping of :meth:`_accounted` written out: this is every
        small call's path, where an async context manager's generator costs more than the loss itself.

        The REST front calls this (its ``context`` stands in for grpc's), gRPC's unary calls :meth:`serve_sync`:
        the same steps, on a server thread. ``request`` has ``size`` (bytes received) and
        ``error`` (set when its bytes did not decode); ``work`` computes it in place or on a compute thread,
        ``batched`` (when given and batching is on) is the way for small requests.
        """
        started, label, request_id, spans, work = self._open(method, loss_name, context, work, service)
        code = grpc.StatusCode.OK
        elements = bytes_out = 0
        response = None
        ended = False
        try:
            self._admit_request(request)
            if request.size <= self._inline_bytes and self._batching and batched is not None:
                response, elements = await self.bounded(batched(request))
            elif request.size <= self._inline_bytes:
                response, elements = work(request)  # runs now: nothing to wait for or to expire in a queue
            else:
                timed = self._queued(method, started, work, context)
                loop = asyncio.get_running_loop()
                response, elements = await self.bounded(loop.run_in_executor(self._executor, timed, request))
            bytes_out = self._reply_size(method, response)
            return response
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            failure, request_id = self._refused(exc, method, label, started, elements, request_id, request.size,
                                                bytes_out, spans)
            ended = True
            await self._abort(context, failure, request_id)
        finally:
            if not ended:
                self._close(method, label, code, started, elements, request_id, request.size, bytes_out, spans,
                            response)

    def serve_sync(self, method: str, loss_name: str | None, request: Any, context: grpc.ServicerContext,
                   work: Callable[[Any], tuple[Any, int]],
                   batched: Callable[[Any], Coroutine[Any, Any, tuple[Any, int]]] | None = None,
                   service: str = SERVICE) -> Any:
        """:meth:`_serve` for a unary gRPC call on one of the server's threads: the same admission, limits, errors,
        metrics and tracing. A small request is computed on the calling thread, a large one on the compute
        threads (dropped unrun if the call ends while it waits), a batched one through the event loop's batcher.

        Small calls are served this way because grpc's thread-pool server hands a call to Python with fewer
        wake-ups than grpc.aio (MSE over 1K floats from 16 callers on 2 cores, with the same plans: server CPU per
        call 337-390 us against 430-483 us on grpc.aio, two runs of 15 rounds side by side).
        """
        started, label, request_id, spans, work = self._open(method, loss_name, context, work, service)
        code = grpc.StatusCode.OK
        elements = bytes_out = 0
        response = None
        ended = False
        try:
            self._admit_request(request)
            if request.size <= self._inline_bytes and self._batching and batched is not None:
                assert self._loop is not None
                response, elements = self._waited(asyncio.run_coroutine_threadsafe(batched(request), self._loop),
                                                  context)
            elif request.size <= self._inline_bytes and self._max_deadline_s is None:
                response, elements = work(request)  # runs now: nothing to wait for or to expire in a queue
            else:
                timed = self._queued(method, started, work, context)
                response, elements = self._waited(self._executor.submit(timed, request), context)
            bytes_out = self._reply_size(method, response)
            return response
        except futures.CancelledError:  # the call ended (cancelled, or its deadline passed) while it waited
            code = grpc.StatusCode.CANCELLED
            context.abort(code, "the call ended before its computation ran")
        except Exception as exc:
            failure, request_id = self._refused(exc, method, label, started, elements, request_id, request.size,
                                                bytes_out, spans)
            ended = True
            context.set_trailing_metadata((*failure.trailing_metadata, (REQUEST_ID, request_id)))
            context.abort(failure.code, failure.message)
        finally:
            if not ended:
                self._close(method, label, code, started, elements, request_id, request.size, bytes_out, spans,
                            response)

    def _open(self, method: str, loss_name: str | None, context: Any, work: Callable[[Any], tuple[Any, int]],
              service: str) -> tuple[float, str, str | None, Any, Callable[[Any], tuple[Any, int]]]:
        """A unary call's start: its time, loss label, request id (counted in flight), spans and ``work`` (traced
        when tracing is on)."""
        started = time.perf_counter()
        label = "all" if loss_name is None else (self._registry.canonical(loss_name) or UNKNOWN_LOSS)
        request_id = self._begin(method, context)
        spans = None
        if self._tracer is not None:  # off: this test is all tracing costs
            spans = CallSpans(self._tracer, method, context.invocation_metadata(), service)
            work = _traced(work, spans)
        return started, label, request_id, spans, work

    def _admit_request(self, request: Any) -> None:
        self.admit()
        if request.error:
            raise invalid("request", request.error)

    def _reply_size(self, method: str, response: Any) -> int:
        """The reply's bytes, refused past the message limit."""
        size = _reply_bytes(response)
        if size > self._max_reply_bytes:
            raise _reply_too_large(method, size, self._max_reply_bytes)
        return size

    def _refused(self, exc: Exception, method: str, label: str, started: float, elements: int,
                 request_id: str | None, bytes_in: int, bytes_out: int, spans: Any) -> tuple[RpcFailure, str]:
        """The failure a unary call's exception becomes, and its request id. Counted before the status is sent
        (abort sends it, then raises): whoever sees the refusal and then scrapes the metrics finds it there."""
        request_id = request_id or new_request_id()
        failure = to_failure(exc, request_id)
        self._end(method, label, failure.code, started, elements, request_id, bytes_in, bytes_out)
        if spans is not None:
            spans.finish(failure.code, label, elements, None)
        return failure, request_id

    def _close(self, method: str, label: str, code: grpc.StatusCode, started: float, elements: int,
               request_id: str | None, bytes_in: int, bytes_out: int, spans: Any, response: Any) -> None:
        self._end(method, label, code, started, elements, request_id, bytes_in, bytes_out)
        if spans is not None:
            spans.finish(code, label, elements, _device_of(response))

    def _waited(self, future: futures.Future[Any], context: grpc.ServicerContext) -> Any:
        """``future``'s result; cancelled when the call ends first (a computation not yet started never runs), and
        cut off after max_deadline_seconds (its thread finishes, its answer is dropped)."""
        if not context.add_callback(future.cancel):
            future.cancel()
        try:
            return future.result(timeout=self._max_deadline_s)
        except futures.TimeoutError:
            self._metrics.reject("deadline")
            raise ComputeDeadlineError(f"the computation took longer than this server's limit of "
                                       f"{self._max_deadline_s:g} s") from None

    @contextlib.asynccontextmanager
    async def _accounted(self, method: str, loss: str, context: grpc.aio.ServicerContext) -> AsyncIterator[_Call]:
        """One streamed call's bookkeeping: in-flight counts, admission, request id, errors to statuses,
        metrics, access log (see :meth:`_serve`)."""
        call = _Call(loss, self._begin(method, context))
        if self._tracer is not None:
            call.spans = CallSpans(self._tracer, method, context.invocation_metadata())
        try:
            self.admit()
            yield call
        except asyncio.CancelledError:
            call.code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            call.request_id = call.request_id or new_request_id()
            failure = to_failure(exc, call.request_id)
            call.code = failure.code
            self._finish_call(method, call)  # before the status goes out (see _serve)
            await self._abort(context, failure, call.request_id)
        finally:
            if not call.ended:
                self._finish_call(method, call)

    def _finish_call(self, method: str, call: _Call) -> None:
        call.ended = True
        self._end(method, call.loss, call.code, call.started, call.elements, call.request_id)
        if call.spans is not None:
            call.spans.finish(call.code, call.loss, call.elements, call.device)

    def _begin(self, method: str, context: grpc.aio.ServicerContext) -> str | None:
        """Count the call in flight; return its request id, and echo it in the reply's trailing metadata.

        The id is the caller's x-request-id, or a new one when the access log will show it; otherwise none is
        made unless the call fails (refusals always carry one). Trailing metadata measured at about 5% of
        a small call's server time, spent for nobody when no one can correlate the id.
        """
        self._in_flight.enter(method)
        request_id = given_request_id(context)
        if request_id is None and self._access_log:
            request_id = new_request_id()
        if request_id is not None:
            context.set_trailing_metadata(((REQUEST_ID, request_id),))
        return request_id

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext, failure: RpcFailure, request_id: str) -> None:
        """End the call with ``failure``'s status (abort raises, so nothing after it runs). A front that is not
        gRPC gives a context with ``refuse``, which takes the whole failure (its HTTP status included)."""
        refuse = getattr(context, "refuse", None)
        if refuse is not None:
            refuse(failure, request_id)  # raises
        await context.abort(failure.code, failure.message,
                            trailing_metadata=(*failure.trailing_metadata, (REQUEST_ID, request_id)))

    def _end(self, method: str, loss: str, code: grpc.StatusCode, started: float, elements: int,
             request_id: str | None, bytes_in: int = 0, bytes_out: int = 0) -> None:
        self._in_flight.leave(method)
        now = time.perf_counter()
        self._last_call = now
        seconds = now - started
        ok = code is grpc.StatusCode.OK
        self._metrics.observe(method, loss, code, seconds, elements, bytes_in if ok else 0, bytes_out)
        if self._access_log:
            log.info("call", extra={"request_id": request_id, "method": method, "loss": loss, "code": code.name,
                                    "duration_ms": round(seconds * 1e3, 3), "elements": elements})

    def _queued(self, method: str, received: float, work: Callable[[Any], Any],
                context: grpc.aio.ServicerContext) -> Callable[[Any], Any]:
        """``work``, recording how long the call waited, and dropped if its deadline passed while it waited."""
        remaining = context.time_remaining()
        expires = None if remaining is None else time.perf_counter() + remaining

        def run(request: Any) -> Any:
            now = time.perf_counter()
            self._metrics.queued(method, now - received)
            if expires is not None and now >= expires:
                self._metrics.reject("expired")  # the caller has given up: computing would be wasted
                raise ComputeDeadlineError("the call's deadline passed before its turn came; nothing was computed")
            return work(request)
        return run

    @property
    def active(self) -> int:
        """Calls being served now."""
        return self._in_flight.total

    @property
    def last_call(self) -> float:
        """time.perf_counter() when the latest call ended (0 before the first)."""
        return self._last_call

    def begin_drain(self) -> None:
        """From now on refuse new calls (UNAVAILABLE, so clients retry elsewhere); running ones finish."""
        self._draining = True

    def admit(self) -> None:
        """Shed load at once past max_in_flight, rather than queueing without bound; refuse all while draining."""
        if self._draining:
            self._metrics.reject("shutting_down")
            raise ShuttingDownError("the server is shutting down; retry on another server")
        if self._max_in_flight and self._in_flight.total > self._max_in_flight:
            self._metrics.reject("busy")
            raise ServerBusyError(f"server busy: {self._max_in_flight} calls in flight; retry later")

    async def bounded(self, work: Awaitable[Any]) -> Any:
        """``work``, cut off after max_deadline_seconds (its thread finishes, its answer is dropped)."""
        if self._max_deadline_s is None:
            return await work
        try:
            return await asyncio.wait_for(work, self._max_deadline_s)
        except TimeoutError:
            self._metrics.reject("deadline")
            raise ComputeDeadlineError(f"the computation took longer than this server's limit of "
                                       f"{self._max_deadline_s:g} s") from None

    def _do_list(self, parsed: wire.Parsed) -> tuple[pb.ListLossesResponse, int]:
        request = parsed.message
        specs = [self._registry.get(request.name)] if request.name else list(self._registry)
        return pb.ListLossesResponse(losses=[loss_info(s) for s in specs], server=self._server_info), 0


_REPLY_SLACK = 64 * 1024


def _traced(work: Callable[[Any], Any], spans: CallSpans) -> Callable[[Any], Any]:
    """``work`` with a ``queue`` span (from the call's start to the work's) and a ``compute`` span."""
    def run(request: Any) -> Any:
        spans.child("queue", start_time=spans.started_ns).end()
        compute = spans.child("compute")
        try:
            return work(request)
        finally:
            compute.end()
    return run


def _device_of(response: Any) -> str | None:
    device = getattr(response, "device", None)
    if isinstance(device, str):
        return device or None
    message = getattr(response, "message", response)
    return getattr(message, "device", None) or None


def _reply_too_large(method: str, size: int, limit: int) -> ResourceLimitError:
    """The refusal of a unary reply over the message limit (grpc would fail it with a bare "Sent message
    larger than max"): it names the way that carries replies of any size."""
    if method.endswith("ModelInfer"):
        return ResourceLimitError(
            f"the reply holds {size} bytes of tensors, over this server's message limit of {limit}; ask for "
            f"fewer outputs or a reduced loss, or use lossd.v1's ComputeStream or GradientStream, which carry "
            f"replies of any size", [FieldViolation("outputs", f"the requested outputs ({size} bytes) do not "
                                                              f"fit one message")])
    return ResourceLimitError(
        f"the reply holds {size} bytes of tensors, over this server's unary message limit of {limit}; "
        f"send the request over {method}Stream, which carries replies of any size in chunks",
        [FieldViolation("inputs", f"the reply to these inputs ({size} bytes) does not fit one message; "
                                  f"use {method}Stream")])


def _reply_bytes(response: Any) -> int:
    """Tensor bytes of a reply, detached ones included (no serialization)."""
    measured = getattr(response, "reply_bytes", None)
    if measured is not None:
        return int(measured)
    if isinstance(response, wire.Outgoing):
        size = response.message.ByteSize()
        for d in response.detached:
            size += memoryview(d.raw).nbytes
        return size
    size = getattr(response, "ByteSize", None)
    return int(size()) if size is not None else 0  # a REST front's JSON metadata carries no tensors


def on_pool(behaviour: Callable[..., Any], pool: futures.ThreadPoolExecutor | None) -> Callable[..., Any]:
    """``behaviour`` as a handler grpc's thread-pool server runs on ``pool`` (its ``experimental_thread_pool``)
    instead of the server's own threads; ``behaviour`` itself when ``pool`` is None."""
    if pool is None:
        return behaviour

    def run(request: Any, context: grpc.ServicerContext) -> Any:
        return behaviour(request, context)

    run.experimental_thread_pool = pool  # type: ignore[attr-defined]
    return run

"""The ``lossd.v1.LossService`` implementation: decode → validate → evaluate → encode.

Each RPC is a thin wrapper around a synchronous ``_do_*`` function; ``_serve`` is the one place that
counts calls, times them, turns exceptions into statuses and decides whether a request is small
enough to compute on the event loop or is handed to the compute threads.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import Executor
from typing import Any

import grpc
import torch

from lossd.losses import (
    FieldViolation,
    LossSpec,
    Prepared,
    Registry,
    ResourceLimitError,
    Result,
    evaluate,
    validate,
)
from lossd.losses.batching import batch_key
from lossd.losses.errors import invalid
from lossd.server.batching import Batcher
from lossd.server.codec import TORCH_TO_WIRE, decode_params, decode_tensor, outgoing_tensor
from lossd.server.describe import loss_info
from lossd.server.errors import ComputeDeadlineError, to_failure
from lossd.server.logs import REQUEST_ID, request_id_of
from lossd.server.metrics import UNKNOWN_LOSS, ServerMetrics, lossd_version
from lossd.server.placement import Placement
from lossd.server.shm import SharedMemoryAccess
from lossd.server.streaming import CHUNK_BYTES, receive, reply_parts
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import loss_service_pb2_grpc as pb_grpc
from lossd.v1 import wire

log = logging.getLogger("lossd.server")
# Field numbers of the tensors the wire codec may keep out of the protobuf runtime.
_INPUTS = pb.ComputeRequest.DESCRIPTOR.fields_by_name["inputs"].number
_GRAD_OUTPUT = pb.GradientRequest.DESCRIPTOR.fields_by_name["grad_output"].number
_LOSS = pb.ComputeResponse.DESCRIPTOR.fields_by_name["loss"].number
_GRADIENTS = pb.GradientResponse.DESCRIPTOR.fields_by_name["gradients"].number


class LossServicer(pb_grpc.LossServiceServicer):
    """Serves losses from ``registry`` on ``device``."""

    def __init__(self, registry: Registry, placement: Placement, metrics: ServerMetrics, executor: Executor,
                 *, max_elements: int, inline_bytes: int, shm: SharedMemoryAccess | None = None,
                 max_stream_bytes: int = 2 << 30, batcher: Batcher | None = None, max_in_flight: int = 0,
                 max_request_elements: int = 0, max_deadline_s: float = 0.0, access_log: bool = False) -> None:
        self._registry = registry
        self._placement = placement
        self._server_info = pb.ServerInfo(
            version=lossd_version(), device=str(placement.device), gpu_min_elements=placement.gpu_min_elements,
            max_message_bytes=max_elements, shm_prefix=shm.prefix if shm else "")
        self._metrics = metrics
        self._executor = executor
        self._max_elements = max_elements
        self._inline_bytes = inline_bytes
        self._shm = shm or SharedMemoryAccess("")
        self._max_stream_bytes = max_stream_bytes
        self._batcher = batcher
        self._max_in_flight = max_in_flight
        self._max_request_elements = max_request_elements
        self._max_deadline_s = max_deadline_s or None
        self._active = 0
        self._access_log = access_log
        self._chunk_bytes = min(CHUNK_BYTES, max(1, max_elements // 2))  # max_elements: the message limit

    async def Compute(self, request: wire.Parsed, context: grpc.aio.ServicerContext) -> wire.Outgoing:
        return await self._serve("Compute", request.message.loss, request, context, self._do_compute)

    async def Gradient(self, request: wire.Parsed, context: grpc.aio.ServicerContext) -> wire.Outgoing:
        return await self._serve("Gradient", request.message.loss, request, context, self._do_gradient)

    async def ListLosses(self, request: wire.Parsed, context: grpc.aio.ServicerContext) -> pb.ListLossesResponse:
        return await self._serve("ListLosses", request.message.name or None, request, context, self._do_list)

    async def ComputeStream(self, parts: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for part in self._serve_stream("ComputeStream", parts, context, "compute", self._do_compute):
            yield part

    async def GradientStream(self, parts: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for part in self._serve_stream("GradientStream", parts, context, "gradient", self._do_gradient):
            yield part

    async def _serve_stream(self, method: str, parts: AsyncIterator[Any], context: grpc.aio.ServicerContext,
                            kind: str, work: Callable[[Any], tuple[wire.Outgoing, int]]) -> AsyncIterator[Any]:
        """Like _serve, for a streamed request and reply (the reply's streaming is timed too)."""
        started = time.perf_counter()
        label, code, elements = UNKNOWN_LOSS, grpc.StatusCode.OK, 0
        in_flight = self._metrics.in_flight_for(method)
        in_flight.inc()
        self._active += 1
        request_id = request_id_of(context)
        context.set_trailing_metadata(((REQUEST_ID, request_id),))
        try:
            self._admit()
            parsed = await receive(parts, kind, self._max_stream_bytes)
            label = self._registry.canonical(parsed.message.loss) or UNKNOWN_LOSS
            loop = asyncio.get_running_loop()
            outgoing, elements = await self._bounded(loop.run_in_executor(self._executor, work, parsed))
            for part in reply_parts(outgoing, kind, self._chunk_bytes):
                yield part
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            failure = to_failure(exc, request_id)
            code = failure.code
            await context.abort(failure.code, failure.message,
                                trailing_metadata=(*failure.trailing_metadata, (REQUEST_ID, request_id)))
        finally:
            self._active -= 1
            in_flight.dec()
            self._finished(method, label, code, started, elements, request_id)

    async def _serve(self, method: str, loss_name: str | None, request: wire.Parsed,
                     context: grpc.aio.ServicerContext,
                     work: Callable[[Any], tuple[Any, int]]) -> Any:
        label = "all" if loss_name is None else (self._registry.canonical(loss_name) or UNKNOWN_LOSS)
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        elements = 0
        in_flight = self._metrics.in_flight_for(method)
        in_flight.inc()
        self._active += 1
        request_id = request_id_of(context)
        context.set_trailing_metadata(((REQUEST_ID, request_id),))
        try:
            self._admit()
            if request.error:
                raise invalid("request", request.error)
            timed = self._queued(method, started, work)
            if request.size <= self._inline_bytes and self._batcher is not None and method != "ListLosses":
                response, elements = await self._bounded(self._do_batched(request, gradient=method == "Gradient"))
            elif request.size <= self._inline_bytes:
                response, elements = timed(request)
            else:
                loop = asyncio.get_running_loop()
                response, elements = await self._bounded(loop.run_in_executor(self._executor, timed, request))
            self._metrics.traffic(method, request.size, _reply_bytes(response))
            return response
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            failure = to_failure(exc, request_id)
            code = failure.code
            await context.abort(failure.code, failure.message,
                                trailing_metadata=(*failure.trailing_metadata, (REQUEST_ID, request_id)))
        finally:
            self._active -= 1
            in_flight.dec()
            self._finished(method, label, code, started, elements, request_id)

    def _finished(self, method: str, loss: str, code: grpc.StatusCode, started: float, elements: int,
                  request_id: str) -> None:
        seconds = time.perf_counter() - started
        self._metrics.observe(method, loss, code, seconds, elements)
        if self._access_log:
            log.info("call", extra={"request_id": request_id, "method": method, "loss": loss, "code": code.name,
                                    "duration_ms": round(seconds * 1e3, 3), "elements": elements})

    def _queued(self, method: str, received: float, work: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``work``, recording how long the call waited before it started."""
        def run(request: Any) -> Any:
            self._metrics.queue.labels(method).observe(time.perf_counter() - received)
            return work(request)
        return run

    def _admit(self) -> None:
        """Shed load at once past max_in_flight, rather than queueing without bound."""
        if self._max_in_flight and self._active > self._max_in_flight:
            self._metrics.reject("busy")
            raise ResourceLimitError(f"server busy: {self._max_in_flight} calls in flight; retry later")

    async def _bounded(self, work: Awaitable[Any]) -> Any:
        """``work``, cut off after max_deadline_seconds (its thread finishes, its answer is dropped)."""
        if self._max_deadline_s is None:
            return await work
        try:
            return await asyncio.wait_for(work, self._max_deadline_s)
        except TimeoutError:
            self._metrics.reject("deadline")
            raise ComputeDeadlineError(f"the computation took longer than this server's limit of "
                                       f"{self._max_deadline_s:g} s") from None

    def _decode_inputs(self, parsed: wire.Parsed) -> dict[str, torch.Tensor]:
        if self._max_request_elements:
            claimed = sum(math.prod(t.shape) for t in parsed.message.inputs.values())
            if claimed > self._max_request_elements:
                limit = self._max_request_elements
                raise ResourceLimitError(
                    f"the request claims {claimed} tensor elements; this server takes at most {limit}",
                    [FieldViolation("inputs", f"{claimed} elements exceeds the limit of {limit}")])
        return {name: decode_tensor(msg, f"inputs[{name}]", self._max_elements, parsed.raw.get((_INPUTS, name)),
                                    self._shm)
                for name, msg in parsed.message.inputs.items()}

    def _reply_tensor(self, request: Any, key: str, tensor: torch.Tensor, field: int, map_key: str | None,
                      detached: list[wire.Detached]) -> pb.Tensor:
        """The reply's tensor: written to the request's shared-memory region for ``key``, or sent."""
        if key in request.output_shm:
            region = request.output_shm[key]
            self._shm.write(region, f"output_shm[{key}]", tensor)
            return pb.Tensor(dtype=TORCH_TO_WIRE[tensor.dtype], shape=list(tensor.shape), shm=region)
        return outgoing_tensor(tensor, request.response_encoding, field, map_key, detached)

    @staticmethod
    def _check_output_keys(request: Any, allowed: tuple[str, ...]) -> None:
        for key in request.output_shm:
            if key not in allowed:
                raise invalid(f"output_shm[{key}]", f"not an output of this call; expected one of: "
                              f"{', '.join(allowed)}")

    def _lookup(self, name: str) -> tuple[LossSpec, Mapping[str, Any]]:
        if not name:
            raise invalid("loss", "empty; set it to a loss name or alias (ListLosses lists them)")
        return self._registry.resolve(name)

    def _prepare(self, parsed: wire.Parsed, gradient: bool) -> tuple[Prepared, dict[str, torch.Tensor]]:
        """Decode and validate: everything that can be wrong with a request is found here."""
        request = parsed.message
        spec, preset = self._lookup(request.loss)
        tensors = self._decode_inputs(parsed)
        params = decode_params(request.params)
        if not gradient:
            prepared = validate(spec, tensors, params, request.reduction, preset=preset)
            self._check_output_keys(request, ("loss",))
            return prepared, tensors
        grad_output = (decode_tensor(request.grad_output, "grad_output", self._max_elements,
                                     parsed.raw.get((_GRAD_OUTPUT, None)), self._shm)
                       if request.HasField("grad_output") else None)
        prepared = validate(spec, tensors, params, request.reduction, wrt=list(request.wrt),
                            grad_output=grad_output, preset=preset)
        self._check_output_keys(request, ("loss", *prepared.wrt))
        return prepared, tensors

    def _finish(self, parsed: wire.Parsed, prepared: Prepared, result: Result, device: torch.device,
                elements: int) -> tuple[wire.Outgoing, int]:
        """The reply: loss and gradients, sent, detached for zero-copy sending, or written to shared memory."""
        request = parsed.message
        detached: list[wire.Detached] = []
        loss = self._reply_tensor(request, "loss", result.loss, _LOSS, None, detached)
        common = {"loss": loss, "loss_name": prepared.spec.name, "reduction": prepared.reduction,
                  "device": str(device)}
        if isinstance(request, pb.ComputeRequest):
            return wire.Outgoing(pb.ComputeResponse(**common), detached), elements
        gradients = {role: self._reply_tensor(request, role, g, _GRADIENTS, role, detached)
                     for role, g in result.gradients.items()}
        return wire.Outgoing(pb.GradientResponse(gradients=gradients, **common), detached), elements

    def _do_compute(self, parsed: wire.Parsed) -> tuple[wire.Outgoing, int]:
        return self._do(parsed, gradient=False)

    def _do_gradient(self, parsed: wire.Parsed) -> tuple[wire.Outgoing, int]:
        return self._do(parsed, gradient=True)

    def _do(self, parsed: wire.Parsed, gradient: bool) -> tuple[wire.Outgoing, int]:
        prepared, tensors = self._prepare(parsed, gradient)
        result, device = self._evaluate(prepared, tensors)
        return self._finish(parsed, prepared, result, device, sum(t.numel() for t in tensors.values()))

    async def _do_batched(self, parsed: wire.Parsed, gradient: bool) -> tuple[wire.Outgoing, int]:
        """A small request: validated here, then batched with its like when it can be, else computed inline."""
        prepared, tensors = self._prepare(parsed, gradient)
        elements = sum(t.numel() for t in tensors.values())
        device = self._placement.device_for(elements)
        key = batch_key(prepared, device) if self._batcher is not None else None
        if key is None:
            result, device = self._evaluate(prepared, tensors)
        else:
            assert self._batcher is not None
            started = time.perf_counter()
            result = await self._batcher.submit(key, prepared, device)
            self._metrics.compute_seconds(str(device), time.perf_counter() - started)
        return self._finish(parsed, prepared, result, device, elements)

    def _evaluate(self, prepared: Prepared, tensors: Mapping[str, torch.Tensor]) -> tuple[Result, torch.device]:
        device = self._placement.device_for(sum(t.numel() for t in tensors.values()))
        started = time.perf_counter()
        result = evaluate(prepared, device)
        self._metrics.compute_seconds(str(device), time.perf_counter() - started)
        self._metrics.device_memory_now(device)
        return result, device

    def _do_list(self, parsed: wire.Parsed) -> tuple[pb.ListLossesResponse, int]:
        request = parsed.message
        specs = [self._registry.get(request.name)] if request.name else list(self._registry)
        return pb.ListLossesResponse(losses=[loss_info(s) for s in specs], server=self._server_info), 0


def _reply_bytes(response: Any) -> int:
    """Tensor bytes of a reply, detached ones included (no serialization)."""
    if isinstance(response, wire.Outgoing):
        return response.message.ByteSize() + sum(memoryview(d.raw).nbytes for d in response.detached)
    return int(response.ByteSize())

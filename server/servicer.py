"""The ``lossd.v1.LossService`` implementation: decode → validate → evaluate → encode.

Each RPC is a thin wrapper around a synchronous ``_do_*`` function; ``_serve`` is the one place that
counts calls, times them, turns exceptions into statuses and decides whether a request is small
enough to compute on the event loop or is handed to the compute threads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any

import grpc
import torch

from lossd.losses import LossSpec, Registry, evaluate, validate
from lossd.losses.errors import invalid
from lossd.server.codec import decode_params, decode_tensor, encode_tensor
from lossd.server.describe import loss_info
from lossd.server.errors import to_failure
from lossd.server.metrics import UNKNOWN_LOSS, ServerMetrics
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import loss_service_pb2_grpc as pb_grpc


class LossServicer(pb_grpc.LossServiceServicer):
    """Serves losses from ``registry`` on ``device``."""

    def __init__(self, registry: Registry, device: torch.device, metrics: ServerMetrics, executor: Executor,
                 *, max_elements: int, inline_bytes: int) -> None:
        self._registry = registry
        self._device = device
        self._metrics = metrics
        self._executor = executor
        self._max_elements = max_elements
        self._inline_bytes = inline_bytes

    async def Compute(self, request: pb.ComputeRequest, context: grpc.aio.ServicerContext) -> pb.ComputeResponse:
        return await self._serve("Compute", request.loss, request, context, self._do_compute)

    async def Gradient(self, request: pb.GradientRequest, context: grpc.aio.ServicerContext) -> pb.GradientResponse:
        return await self._serve("Gradient", request.loss, request, context, self._do_gradient)

    async def ListLosses(self, request: pb.ListLossesRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListLossesResponse:
        return await self._serve("ListLosses", request.name or None, request, context, self._do_list)

    async def _serve(self, method: str, loss_name: str | None, request: Any, context: grpc.aio.ServicerContext,
                     work: Callable[[Any], tuple[Any, int]]) -> Any:
        label = "all" if loss_name is None else (self._registry.canonical(loss_name) or UNKNOWN_LOSS)
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        elements = 0
        in_flight = self._metrics.in_flight.labels(method)
        in_flight.inc()
        try:
            if _payload_bytes(request) <= self._inline_bytes:
                response, elements = work(request)
            else:
                loop = asyncio.get_running_loop()
                response, elements = await loop.run_in_executor(self._executor, work, request)
            return response
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            failure = to_failure(exc)
            code = failure.code
            await context.abort(failure.code, failure.message, trailing_metadata=failure.trailing_metadata)
        finally:
            in_flight.dec()
            self._metrics.observe(method, label, code, time.perf_counter() - started, elements)

    def _decode_inputs(self, inputs: Any) -> dict[str, torch.Tensor]:
        return {name: decode_tensor(msg, f"inputs[{name}]", self._max_elements) for name, msg in inputs.items()}

    def _lookup(self, name: str) -> tuple[LossSpec, Mapping[str, Any]]:
        if not name:
            raise invalid("loss", "empty; set it to a loss name or alias (ListLosses lists them)")
        return self._registry.resolve(name)

    def _do_compute(self, request: pb.ComputeRequest) -> tuple[pb.ComputeResponse, int]:
        spec, preset = self._lookup(request.loss)
        tensors = self._decode_inputs(request.inputs)
        prepared = validate(spec, tensors, decode_params(request.params), request.reduction, preset=preset)
        result = evaluate(prepared, self._device)
        response = pb.ComputeResponse(
            loss=encode_tensor(result.loss, request.response_encoding),
            loss_name=spec.name, reduction=prepared.reduction, device=str(self._device),
        )
        return response, sum(t.numel() for t in tensors.values())

    def _do_gradient(self, request: pb.GradientRequest) -> tuple[pb.GradientResponse, int]:
        spec, preset = self._lookup(request.loss)
        tensors = self._decode_inputs(request.inputs)
        grad_output = (decode_tensor(request.grad_output, "grad_output", self._max_elements)
                       if request.HasField("grad_output") else None)
        prepared = validate(spec, tensors, decode_params(request.params), request.reduction,
                            wrt=list(request.wrt), grad_output=grad_output, preset=preset)
        result = evaluate(prepared, self._device)
        encoding = request.response_encoding
        response = pb.GradientResponse(
            loss=encode_tensor(result.loss, encoding),
            gradients={role: encode_tensor(g, encoding) for role, g in result.gradients.items()},
            loss_name=spec.name, reduction=prepared.reduction, device=str(self._device),
        )
        return response, sum(t.numel() for t in tensors.values())

    def _do_list(self, request: pb.ListLossesRequest) -> tuple[pb.ListLossesResponse, int]:
        specs = [self._registry.get(request.name)] if request.name else list(self._registry)
        return pb.ListLossesResponse(losses=[loss_info(s) for s in specs]), 0


def _payload_bytes(request: Any) -> int:
    """Roughly how many tensor bytes a request carries (cheap: no serialization)."""
    inputs = getattr(request, "inputs", None)
    if inputs is None:
        return 0
    total = 0
    for msg in inputs.values():
        total += len(msg.raw_data) + 8 * (len(msg.float_val) + len(msg.double_val) + len(msg.int64_val))
        total += len(msg.bool_val)
    return total

"""One request's way through the server, without gRPC: decode, validate, place, evaluate (or batch), reply.

The servicer (lossd.server.servicer) wraps this in RPC plumbing: metrics, limits, errors, threads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

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
from lossd.server.codec import TORCH_TO_WIRE, decode_params, decode_tensor, detached_tensor, fill_tensor
from lossd.server.metrics import ServerMetrics
from lossd.server.placement import Placement
from lossd.server.plans import Plan, Planned, Plans, run_plan
from lossd.server.shm import SharedMemoryAccess
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import wire

_CPU = torch.device("cpu")


class Outcome(NamedTuple):
    """A request validated and evaluated: what a reply is made of."""

    prepared: Prepared
    result: Result
    device: torch.device
    elements: int  # tensor elements of the request's inputs


class Pipeline:
    """Turns parsed Compute/Gradient requests into replies."""

    def __init__(self, registry: Registry, placement: Placement, metrics: ServerMetrics, *, max_elements: int,
                 shm: SharedMemoryAccess, batcher: Batcher | None, max_request_elements: int,
                 max_request_bytes: int = 0) -> None:
        self._registry = registry
        self._placement = placement
        self._metrics = metrics
        self._max_elements = max_elements
        self._shm = shm
        self._batcher = batcher
        self._max_request_elements = max_request_elements
        self._max_request_bytes = max_request_bytes
        # Small value-only requests answered from a validated plan (lossd.server.plans); not while batching, which
        # gathers small requests for the device instead.
        self.plans = Plans() if batcher is None else None

    def _decode_inputs(self, parsed: wire.Parsed) -> dict[str, torch.Tensor]:
        if self._max_request_elements:
            claimed = sum(math.prod(t.shape) for t in parsed.message.inputs.values())
            if claimed > self._max_request_elements:
                limit = self._max_request_elements
                raise ResourceLimitError(
                    f"the request claims {claimed} tensor elements; this server takes at most {limit}",
                    [FieldViolation("inputs", f"{claimed} elements exceeds the limit of {limit}")])
        return {name: decode_tensor(msg, f"inputs[{name}]", self._max_elements, parsed.raw.get((wire.INPUTS, name)),
                                    self._shm)
                for name, msg in parsed.message.inputs.items()}

    def _reply_tensor(self, request: Any, key: str, tensor: torch.Tensor, reply: Any, field: int,
                      map_key: str | None, detached: list[wire.Detached], encoding: int | None = None) -> None:
        """Put the reply tensor for ``key``: written to the request's shared-memory region for it, appended to
        the reply without a copy (``detached``, and then absent from ``reply``), or filled into ``reply``.
        ``request`` None (with ``encoding``): a tensor that never goes to shared memory."""
        if request is None:
            large = detached_tensor(tensor, encoding, field, map_key)
            if large is not None:
                detached.append(large)
            else:
                fill_tensor(_slot(reply, map_key, field), tensor, encoding)
            return
        if request.output_shm and key in request.output_shm:
            region = request.output_shm[key]
            self._shm.write(region, f"output_shm[{key}]", tensor)
            _slot(reply, map_key).CopyFrom(pb.Tensor(dtype=TORCH_TO_WIRE[tensor.dtype], shape=list(tensor.shape),
                                                     shm=region))
            return
        large = detached_tensor(tensor, request.response_encoding, field, map_key)
        if large is not None:
            detached.append(large)
        else:
            fill_tensor(_slot(reply, map_key), tensor, request.response_encoding)

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
                                     parsed.raw.get((wire.GRAD_OUTPUT, None)), self._shm)
                       if request.HasField("grad_output") else None)
        prepared = validate(spec, tensors, params, request.reduction, wrt=list(request.wrt),
                            grad_output=grad_output, preset=preset, hessian=request.hessian)
        self._check_output_keys(request, ("loss", *prepared.wrt))
        return prepared, tensors

    def _finish(self, parsed: wire.Parsed, outcome: Outcome) -> tuple[wire.Outgoing, int]:
        """The reply: loss and gradients, sent, detached for zero-copy sending, or written to shared memory."""
        request = parsed.message
        prepared, result, device, elements = outcome
        detached: list[wire.Detached] = []
        gradient = not isinstance(request, pb.ComputeRequest)
        reply = (pb.GradientResponse if gradient else pb.ComputeResponse)(
            loss_name=prepared.spec.name, reduction=prepared.reduction, device=str(device))
        self._reply_tensor(request, "loss", result.loss, reply, wire.LOSS, None, detached)
        for role, g in result.gradients.items():
            self._reply_tensor(request, role, g, reply, wire.GRADIENTS, role, detached)
        for role, h in result.hessians.items():  # always in the reply (output_shm names loss and gradients)
            self._reply_tensor(None, role, h, reply, wire.HESSIANS, role, detached, request.response_encoding)
        return wire.Outgoing(reply, detached), elements

    def do(self, parsed: wire.Parsed, gradient: bool) -> tuple[wire.Outgoing | wire.Encoded, int]:
        """A Compute (``gradient`` False) or Gradient request's reply and its tensor element count."""
        if gradient or self.plans is None:
            return self._finish(parsed, self.run(parsed, gradient))
        hit = parsed.planned if isinstance(parsed, Planned) else self.plans.lookup(parsed)
        if hit is not None:
            return self._planned(parsed, *hit)
        outcome = self.run(parsed, gradient)
        self.plans.learn(parsed, outcome.prepared, outcome.device)
        return self._finish(parsed, outcome)

    def _planned(self, parsed: wire.Parsed, plan: Plan, arrays: dict[str, Any]
                 ) -> tuple[wire.Outgoing | wire.Encoded, int]:
        """The reply to a request with a plan: :meth:`_finish`'s, byte for byte, from the plan's kernel over its
        bytes."""
        value, seconds = run_plan(plan, arrays)
        self._metrics.computed(_CPU, seconds)
        if value.ndim == 0:  # a reduced loss: nearly every reply, assembled from the plan's encoded parts
            before, after = plan.reply
            return wire.Encoded(b"".join((before, value.tobytes(), after)), pb.ComputeResponse), plan.elements
        reply = pb.ComputeResponse(loss_name=plan.loss_name, reduction=plan.reduction, device="cpu")
        detached: list[wire.Detached] = []
        self._reply_tensor(parsed.message, "loss", torch.from_numpy(value), reply, wire.LOSS, None, detached)
        return wire.Outgoing(reply, detached), plan.elements

    async def do_batched(self, parsed: wire.Parsed, gradient: bool) -> tuple[wire.Outgoing, int]:
        """A small request: validated here, then batched with its like when it can be, else computed inline."""
        return self._finish(parsed, await self.run_batched(parsed, gradient))

    def run(self, parsed: wire.Parsed, gradient: bool) -> Outcome:
        """Validate and evaluate a Compute or Gradient request; its result as tensors (for fronts that
        encode replies their own way, as the Open Inference Protocol's do)."""
        prepared, tensors = self._prepare(parsed, gradient)
        elements = sum([t.numel() for t in tensors.values()])
        result, device = self._evaluate(prepared, elements)
        return Outcome(prepared, result, device, elements)

    async def run_batched(self, parsed: wire.Parsed, gradient: bool) -> Outcome:
        """:meth:`run` for a small request, batched with its like when it can be."""
        prepared, tensors = self._prepare(parsed, gradient)
        elements = sum([t.numel() for t in tensors.values()])
        device = self._placement.device_for(elements)
        key = batch_key(prepared, device) if self._batcher is not None else None
        if key is None:
            result, device = self._evaluate(prepared, elements)
        else:
            assert self._batcher is not None
            started = time.perf_counter()
            result = await self._batcher.submit(key, prepared, device)
            self._metrics.computed(device, time.perf_counter() - started)
        return Outcome(prepared, result, device, elements)

    def _check_memory(self, prepared: Prepared, device: torch.device) -> None:
        """Refuse a request whose working memory (about 4x its tensors: inputs, intermediates, gradients,
        reply) would pass the per-request cap, before allocating any of it."""
        estimate = 4 * sum(t.numel() * max(t.element_size(), 4) for t in prepared.tensors.values())
        if estimate > self._max_request_bytes:
            self._metrics.reject("memory_cap")
            raise ResourceLimitError(
                f"this request needs about {estimate >> 20} MiB of working memory; the limit per request is "
                f"{self._max_request_bytes >> 20} MiB", [FieldViolation("inputs", "too large for the memory cap")])

    def _evaluate(self, prepared: Prepared, elements: int) -> tuple[Result, torch.device]:
        device = self._placement.device_for(elements)
        if self._max_request_bytes:
            self._check_memory(prepared, device)
        started = time.perf_counter()
        try:
            result = evaluate(prepared, device)
        except (torch.OutOfMemoryError, MemoryError):
            if device.type == "cuda":
                torch.cuda.empty_cache()  # hand the failed request's blocks back before the next one
            self._metrics.reject("out_of_memory")
            raise ResourceLimitError(f"out of memory on {device} for this request; send a smaller batch") from None
        self._metrics.computed(device, time.perf_counter() - started)
        return result, device


def _slot(reply: Any, map_key: str | None, field: int = wire.GRADIENTS) -> pb.Tensor:
    """The reply's tensor field: ``loss``, or ``gradients[map_key]`` (``hessians`` for that field), created by
    this access."""
    if map_key is None:
        return reply.loss
    return (reply.hessians if field == wire.HESSIANS else reply.gradients)[map_key]

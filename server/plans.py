"""Plans for small value-only requests: a request shaped like one already validated skips decoding and validation.

Everything validation can refuse in a Compute request is decided by its structure — loss name, reduction,
parameters, response encoding, each input's role, dtype and shape — for the losses whose checks read shapes only:
those with a small kernel (lossd.losses.small). The first request of a structure goes the whole way (decode,
validate, evaluate). When that succeeds on the CPU with a small kernel, its plan is kept: the full parameters, the
reduction and each input's layout. A later request of the same structure whose inputs are raw bytes of the
expected lengths is then answered from numpy views of its bytes, by the kernel the engine itself runs for it: the
same numbers, without torch tensors, the registry or validation. Any other request (other lengths, typed lists,
shared memory, output regions) takes the whole way, which refuses or serves it as it always has.

For 1K-element MSE calls this is most of a call's Python (``Pipeline.do``: 47 us in a tight loop, 9 us from a
plan); under load every microsecond of it costs several of server CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from lossd.losses import Prepared
from lossd.losses.small import NUMPY_FLOATS, small_arrays
from lossd.server.codec import TORCH_TO_WIRE
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import wire

# Structures kept at once; past that the cache starts afresh (callers send a handful of structures, not thousands).
CAPACITY = 1024
_PER_HEAD = 4  # structures kept per head (loss, reduction, parameters, roles): a caller's few shapes
_RAW_ENCODINGS = (pb.ENCODING_UNSPECIFIED, pb.ENCODING_RAW)
_CPU = torch.device("cpu")


class Input(NamedTuple):
    """One input's layout in a plan."""

    role: str
    dtype: int  # the wire dtype
    shape: list[int]
    nbytes: int
    flat: bool  # one dimension: numpy's view needs no reshape


class Plan(NamedTuple):
    """What a request of one structure needs once validated."""

    kernel: Callable[..., Any]
    params: dict[str, Any]
    reduction: str
    loss_name: str
    dtype: np.dtype
    wire_dtype: int
    inputs: tuple[Input, ...]
    elements: int
    # The request's encoded size as parsed. With the head, dtypes, shapes and raw lengths equal, anything more in
    # a request (a typed list, a shared region, an unknown field) would make it larger: equal sizes rule them out.
    size: int


def head(request: pb.ComputeRequest) -> tuple[Any, ...]:
    """The part of a Compute request's structure read without walking its tensors: loss name, reduction, response
    encoding, parameters and the roles sent. The tensors' dtypes and shapes are compared with a plan's one by one."""
    params = request.params
    return (request.loss, request.reduction, request.response_encoding, tuple(request.inputs),
            tuple([(name, value.SerializeToString()) for name, value in params.items()]) if params else ())


class Plans:
    """The plans of the structures seen (at most :data:`CAPACITY`); ``hits`` counts requests served from one."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._plans: dict[tuple[Any, ...], tuple[Plan, ...]] = {}
        self._capacity = capacity
        self._size = 0
        self.hits = 0

    def __len__(self) -> int:
        return self._size

    def clear(self) -> None:
        """Forget every plan, and the count of hits."""
        self._plans.clear()
        self._size = self.hits = 0

    def lookup(self, parsed: wire.Parsed) -> tuple[Plan, dict[str, np.ndarray]] | None:
        """The plan for a Compute request and numpy views of its inputs, or None: then it takes the whole way."""
        request = parsed.message
        if request.output_shm:
            return None
        plans = self._plans.get(head(request))
        if plans is None:
            return None
        size = request.ByteSize()
        for plan in plans:
            arrays = _views(plan, request.inputs, parsed.raw) if plan.size == size else None
            if arrays is not None:
                self.hits += 1
                return plan, arrays
        return None  # the whole way says what is wrong with it, or learns this shape

    def learn(self, parsed: wire.Parsed, prepared: Prepared, device: torch.device) -> None:
        """Keep the plan of a request that passed validation and ran on ``device``, if it qualifies."""
        request = parsed.message
        spec = prepared.spec
        if (spec.small_value is None or device != _CPU or request.output_shm
                or request.response_encoding not in _RAW_ENCODINGS or small_arrays(prepared.tensors) is None):
            return
        layout = []
        for role, t in request.inputs.items():
            if t.float_val or t.double_val or t.int64_val or t.bool_val or t.HasField("shm"):
                return  # typed lists and shared memory take the whole way
            tensor = prepared.tensors[role]
            layout.append(Input(role, t.dtype, list(t.shape), tensor.numel() * tensor.element_size(),
                                len(t.shape) == 1))
        dtype = prepared.output_dtype
        plan = Plan(spec.small_value, dict(prepared.params), prepared.reduction, spec.name, NUMPY_FLOATS[dtype],
                    TORCH_TO_WIRE[dtype], tuple(layout), sum(t.numel() for t in prepared.tensors.values()),
                    request.ByteSize())
        if self._size >= self._capacity:
            self._plans.clear()
            self._size = 0  # (hits go on counting)
        key = head(request)
        kept = self._plans.get(key, ())
        self._plans[key] = (plan, *kept[:_PER_HEAD - 1])
        self._size += 1 if len(kept) < _PER_HEAD else 0


def _views(plan: Plan, inputs: Any, raw: dict[tuple[int, str | None], memoryview]) -> dict[str, np.ndarray] | None:
    """Numpy views of the inputs' raw bytes, when each tensor message has the plan's dtype, shape and raw length;
    else None."""
    arrays = {}
    for spec in plan.inputs:
        t = inputs[spec.role]  # present: the head names every role sent
        if t.dtype != spec.dtype or t.shape != spec.shape:
            return None
        data = raw.get((wire.INPUTS, spec.role))
        if data is None:
            data = t.raw_data
        if len(data) != spec.nbytes:
            return None
        view = np.frombuffer(data, plan.dtype)
        arrays[spec.role] = view if spec.flat else view.reshape(spec.shape)
    return arrays


def run_plan(plan: Plan, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
    """The plan's loss over ``arrays`` (a numpy scalar or array in the request's dtype) and the seconds it took."""
    started = time.perf_counter()
    value = plan.kernel(arrays, plan.params, plan.reduction)
    return value, time.perf_counter() - started

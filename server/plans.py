"""Plans for small value-only requests: a request shaped like one already validated skips decoding and validation.

Everything validation can refuse in a Compute request is decided by its structure — loss name, reduction,
parameters, response encoding, each input's role, dtype and shape — for the losses whose checks read shapes only:
those with a small kernel (lossd.losses.small). The first request of a structure goes the whole way (decode,
validate, evaluate). When that succeeds on the CPU with a small kernel, its plan is kept: the full parameters, the
reduction and each input's layout. A later request of the same structure whose inputs are raw bytes of the
expected lengths is then answered from numpy views of its bytes, by the kernel the engine itself runs for it: the
same numbers, without torch tensors, the registry or validation. Any other request (other lengths, typed lists,
shared memory, output regions) takes the whole way, which refuses or serves it as it always has.

A plan is found two ways. A Compute call's bytes are matched first (:meth:`Plans.parse`, the server's deserializer):
a client that encodes requests of one structure the same way every time (lossd's does: cached framing, then the
tensors' bytes) repeats every byte but the tensors' own, so a request whose length and non-tensor bytes equal those
of a request already planned differs from it only in its tensors' contents, and is answered without being parsed
at all. Anything else is parsed, and its message compared with the plans (:meth:`Plans.lookup`; the Pipeline
stream's items, which arrive parsed, are found this way).

For 1K-element MSE calls this is most of a call's Python (decoding and ``Pipeline.do``: 55 us in a tight loop, 9 us
from a plan found by its bytes); under load every microsecond of it costs several of server CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
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
    inputs: tuple[Input, ...]
    elements: int
    # The request's encoded size as parsed. With the head, dtypes, shapes and raw lengths equal, anything more in
    # a request (a typed list, a shared region, an unknown field) would make it larger: equal sizes rule them out.
    size: int
    # A reduced loss's reply, encoded but for the loss's bytes: (before, after). As protobuf encodes it: the loss
    # (dtype, raw_data) first, then loss_name, reduction and device.
    reply: tuple[bytes, bytes]


class Template(NamedTuple):
    """A plan's request as bytes: what every request of the plan repeats, and where its tensors' bytes lie."""

    plan: Plan
    constant: tuple[tuple[int, bytes], ...]  # (offset, bytes): everything between the tensors' bytes
    slots: tuple[tuple[str, int, int, tuple[int, ...] | None], ...]  # role, offset, elements, shape (None: flat)
    message: pb.ComputeRequest  # the request without its tensors: the loss name the servicer labels the call with

    def match(self, data: bytes) -> dict[str, np.ndarray] | None:
        """Numpy views of the tensors in ``data`` (of this template's length), when the rest of it is the
        template's; else None."""
        for offset, part in self.constant:
            if not data.startswith(part, offset):
                return None
        dtype = self.plan.dtype
        arrays = {}
        for role, offset, count, shape in self.slots:
            view = np.frombuffer(data, dtype, count, offset)
            arrays[role] = view if shape is None else view.reshape(shape)
        return arrays


@dataclass
class Planned(wire.Parsed):
    """A Compute request matched to a plan by its bytes: its ``message`` holds the loss name only, ``planned`` the
    plan and the views of the request's tensors."""

    planned: tuple[Plan, dict[str, np.ndarray]] | None = None


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
        self._templates: dict[int, tuple[Template, ...]] = {}  # by the encoding's length
        self._templated: set[int] = set()  # the plans (by id) a template was sought for: once each
        self._capacity = capacity
        self.hits = 0

    def __len__(self) -> int:
        return sum(len(kept) for kept in self._plans.values())

    @property
    def templates(self) -> int:
        """The byte templates held (at most one per plan)."""
        return sum(len(kept) for kept in self._templates.values())

    def clear(self) -> None:
        """Forget every plan, and the count of hits."""
        self._plans.clear()
        self._templates.clear()
        self._templated.clear()
        self.hits = 0

    def parse(self, data: bytes) -> wire.Parsed:
        """A gRPC deserializer for Compute requests: a request matching a plan's template is not parsed (a
        :class:`Planned`), any other is (lossd.v1.wire's parser), and keeps its bytes for :meth:`learn`."""
        templates = self._templates.get(len(data))
        if templates is not None:
            for template in templates:
                arrays = template.match(data)
                if arrays is not None:
                    self.hits += 1
                    return Planned(template.message, size=len(data), planned=(template.plan, arrays))
        return wire.parse_compute_request(data, keep=True)

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
                if parsed.data is not None and id(plan) not in self._templated:
                    self._add_template(plan, parsed)  # a client encoding it otherwise than the request learned from
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
                    tuple(layout), sum(t.numel() for t in prepared.tensors.values()), request.ByteSize(),
                    _reply_parts(spec.name, prepared.reduction, TORCH_TO_WIRE[dtype], NUMPY_FLOATS[dtype].itemsize))
        if len(self) >= self._capacity:
            self._plans.clear()
            self._templates.clear()
            self._templated.clear()  # (hits go on counting)
        key = head(request)
        self._plans[key] = (plan, *self._plans.get(key, ())[:_PER_HEAD - 1])
        if parsed.data is not None:
            self._add_template(plan, parsed)

    def _add_template(self, plan: Plan, parsed: wire.Parsed) -> None:
        """Keep the template of ``plan`` in ``parsed``'s encoding, if it has one (once per plan)."""
        self._templated.add(id(plan))
        template = _template(plan, parsed)
        if template is not None:
            length = len(parsed.data or b"")
            self._templates[length] = (template, *self._templates.get(length, ())[:_PER_HEAD - 1])


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


def _reply_parts(loss_name: str, reduction: str, wire_dtype: int, itemsize: int) -> tuple[bytes, bytes]:
    """A reduced loss's ComputeResponse encoded before and after the loss's ``itemsize`` bytes."""
    loss = pb.ComputeResponse(loss=pb.Tensor(dtype=wire_dtype, raw_data=bytes(itemsize))).SerializeToString()
    rest = pb.ComputeResponse(loss_name=loss_name, reduction=reduction, device=str(_CPU)).SerializeToString()
    return loss[:-itemsize], rest


def _template(plan: Plan, parsed: wire.Parsed) -> Template | None:
    """The template of a planned request's encoding, when each input's raw bytes occur in it once, as the one
    raw_data of the one map entry for its role (protobuf's merging of repeated occurrences is left to the parser)."""
    data = parsed.data
    assert data is not None
    buf = memoryview(data)
    found: dict[str, tuple[int, int]] = {}
    for number, kind, _, payload, end in wire.fields(buf):
        if number != wire.INPUTS:
            continue
        if kind != wire.LEN:
            return None
        role = None
        raws = []
        entry = buf[payload:end]
        for n, k, _, p, e in wire.fields(entry):
            if n == 1 and k == wire.LEN:
                role = bytes(entry[p:e]).decode("utf-8", "replace")
            elif n == 2 and k == wire.LEN:
                tensor = entry[p:e]
                raws += [(payload + p + tp, te - tp) for tn, _, _, tp, te in wire.fields(tensor) if tn == wire.RAW_DATA]
        if role is None or role in found or len(raws) != 1:
            return None
        found[role] = raws[0]
    layout = {i.role: i for i in plan.inputs}
    if sorted(found) != sorted(layout):
        return None
    slots = []
    constant = []
    position = 0
    for role, (offset, nbytes) in sorted(found.items(), key=lambda item: item[1][0]):
        spec = layout[role]
        if nbytes != spec.nbytes:
            return None
        constant.append((position, data[position:offset]))
        slots.append((role, offset, nbytes // plan.dtype.itemsize, None if spec.flat else tuple(spec.shape)))
        position = offset + nbytes
    constant.append((position, data[position:]))
    message = pb.ComputeRequest(loss=parsed.message.loss)
    return Template(plan, tuple((o, part) for o, part in constant if part), tuple(slots), message)


def run_plan(plan: Plan, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
    """The plan's loss over ``arrays`` (a numpy scalar or array in the request's dtype) and the seconds it took."""
    started = time.perf_counter()
    value = plan.kernel(arrays, plan.params, plan.reduction)
    return value, time.perf_counter() - started

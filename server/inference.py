"""The Open Inference Protocol (KServe V2) in lossd's terms, for its gRPC and REST fronts alike.

Every registered loss is a model (its aliases resolve too); its roles are the model's inputs, and its
outputs are ``loss`` and ``grad_<role>`` for each differentiable role. An inference request becomes a
lossd.v1 Compute or Gradient request (:meth:`InferenceModels.to_parsed`) and goes through the one
pipeline that validates and evaluates every request; the result's tensors come back as V2 outputs,
their bytes never copied on the way (:meth:`InferenceModels.reply`).

Which work a request asks for is read off its requested outputs: ``loss`` alone (or no outputs) computes
the loss; any ``grad_<role>`` computes gradients, with respect to the requested roles unless the ``wrt``
parameter names them. Exactly the requested outputs come back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lossd.losses import FieldViolation, InvalidRequestError, LossSpec, ParamType, Registry, UnknownLossError
from lossd.losses.errors import invalid
from lossd.server.describe import param_value
from lossd.server.metrics import lossd_version
from lossd.server.model_metadata import (
    GRAD_PREFIX,
    HESS_PREFIX,
    LOSS_OUTPUT,
    TORCH_DATATYPES,
    VERSION,
    ModelMetadata,
    model_metadata,
)
from lossd.server.pipeline import Outcome, Pipeline
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import wire

SERVER_NAME = "lossd"
EXTENSIONS = ("binary_tensor_data", "parameters")
GRAD_OUTPUT = "grad_output"  # the input that carries a Gradient call's upstream gradient

# V2 datatype names <-> lossd's wire dtypes; the others (INT8, INT16, UINT16..64, BYTES) have no lossd dtype.
DATATYPES: dict[str, int] = {
    "BOOL": pb.DTYPE_BOOL, "UINT8": pb.DTYPE_UINT8, "INT32": pb.DTYPE_INT32, "INT64": pb.DTYPE_INT64,
    "FP16": pb.DTYPE_FLOAT16, "BF16": pb.DTYPE_BFLOAT16, "FP32": pb.DTYPE_FLOAT32, "FP64": pb.DTYPE_FLOAT64,
}
# numpy dtypes of typed values (JSON data, gRPC contents); BF16 goes through float32 and torch.
NUMPY_DTYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
    "BF16": np.float32, "FP32": np.float32, "FP64": np.float64,
}
# Request parameters of Triton's and KServe's clients that mean nothing to a loss: accepted, ignored.
IGNORED_PARAMETERS = frozenset({
    "binary_data_output", "binary_data", "binary_data_size", "classification", "priority", "timeout",
    "sequence_id", "sequence_start", "sequence_end", "headers", "shared_memory_region",
    "shared_memory_byte_size", "shared_memory_offset", "triton_enable_empty_final_response",
})
RESERVED_PARAMETERS = ("reduction", "wrt")


@dataclass
class InferInput:
    """One input tensor of a request: raw little-endian bytes, or typed values (a flat sequence)."""

    name: str
    datatype: str
    shape: Sequence[int]
    raw: Any = None  # a buffer (memoryview, bytes)
    values: Any = None  # typed values: a sequence, or a numpy array


@dataclass
class InferRequest:
    """A V2 inference request, however it arrived (gRPC message, JSON, JSON with binary tensors)."""

    model: str
    version: str = ""
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)  # bool, int, float or str values
    inputs: list[InferInput] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # requested output names; empty: the loss
    size: int = 0  # bytes received
    error: str | None = None  # set when the bytes were not a valid request
    error_field: str = "request"  # the field that ``error`` is about
    typed_outputs: bool = False  # gRPC: reply with typed contents rather than raw bytes


@dataclass(frozen=True)
class InferOutput:
    """One output tensor: V2 datatype, shape and its bytes (a CPU tensor, not copied)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    tensor: torch.Tensor

    @property
    def data(self) -> np.ndarray:
        """The little-endian row-major bytes, as a uint8 array over the tensor's own memory."""
        t = self.tensor.detach() if self.tensor.requires_grad else self.tensor
        t = t if t.is_contiguous() else t.contiguous()
        if t.dtype is torch.bfloat16:  # numpy has no bfloat16: its bits travel through a uint8 view
            return t.reshape(-1).view(torch.uint8).numpy()
        # Reshaped and viewed on numpy's side: a torch operator costs microseconds per call on a small reply,
        # numpy's view of the same memory a fraction of one.
        return t.numpy().reshape(-1).view(np.uint8)

    def values(self) -> list[Any]:
        """The elements as JSON numbers or booleans, row-major."""
        t = self.tensor.detach()
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.to(torch.float32)
        return t.reshape(-1).tolist()


@dataclass(frozen=True)
class InferReply:
    """A V2 inference reply: the outputs in the order they were asked for."""

    model: str
    id: str
    outputs: tuple[InferOutput, ...]
    reduction: str
    device: str

    @property
    def version(self) -> str:
        """The model version that answered."""
        return VERSION

    @property
    def reply_bytes(self) -> int:
        """Tensor bytes of the reply (the servicer checks them against the message limit)."""
        return sum(o.tensor.numel() * o.tensor.element_size() for o in self.outputs)

    @property
    def parameters(self) -> dict[str, str]:
        """What lossd.v1 replies carry besides the tensors."""
        return {"loss_name": self.model, "reduction": self.reduction, "device": self.device}


class InferenceModels:
    """The registry's losses as V2 models, and V2 requests as lossd requests through the shared pipeline."""

    def __init__(self, registry: Registry, pipeline: Pipeline) -> None:
        self._registry = registry
        self._pipeline = pipeline

    @property
    def server_version(self) -> str:
        """lossd's version, as ServerMetadata reports it."""
        return lossd_version()

    def spec(self, name: str, version: str = "") -> LossSpec:
        """The loss a model name (or alias) and version stand for; UnknownLossError (NOT_FOUND) otherwise."""
        if not name:
            raise invalid("model_name", "empty; set it to a loss name or alias (GET /v2/models/{name} or "
                                        "ModelMetadata describes one)")
        spec = self._registry.get(name)
        if version not in ("", VERSION):
            raise UnknownLossError(f"{name} version {version[:40]}", ())
        return spec

    def ready(self, name: str, version: str = "") -> bool:
        """Whether ``name`` at ``version`` is a loss lossd computes."""
        try:
            self.spec(name, version)
        except (UnknownLossError, InvalidRequestError):
            return False
        return True

    def metadata(self, name: str, version: str = "") -> ModelMetadata:
        """``name``'s inputs and outputs (see lossd.server.model_metadata.role_shape for the shapes)."""
        return model_metadata(self.spec(name, version))

    def to_parsed(self, request: InferRequest) -> tuple[wire.Parsed, bool, list[str]]:
        """The lossd.v1 request ``request`` stands for, whether it is a Gradient, and the outputs to return.

        The tensors' bytes are not copied: raw inputs are handed to the pipeline as they arrived.
        """
        if request.error:
            raise invalid(request.error_field, request.error)
        spec = self.spec(request.model, request.version)
        outputs = list(request.outputs) or [LOSS_OUTPUT]
        grads, hessian = _requested_gradients(spec, outputs)
        gradient = bool(grads)
        params, reduction, wrt = _parameters(spec, request.parameters)
        message: Any = pb.GradientRequest(hessian=hessian) if gradient else pb.ComputeRequest()
        message.loss = request.model
        message.reduction = reduction
        for name, value in params.items():
            message.params[name].CopyFrom(param_value(value))
        raw: dict[tuple[int, str | None], memoryview] = {}
        problems: list[FieldViolation] = []
        for tensor in request.inputs:
            where = f"inputs[{tensor.name}]"
            decoded = _input_bytes(tensor, where, problems)
            if decoded is None:
                continue
            dtype, data = decoded
            if tensor.name == GRAD_OUTPUT and gradient:
                slot, key = message.grad_output, (wire.GRAD_OUTPUT, None)
            elif tensor.name in message.inputs:
                problems.append(FieldViolation(where, "given twice; send each input once"))
                continue
            else:
                slot, key = message.inputs[tensor.name], (wire.INPUTS, tensor.name)
            slot.dtype = dtype  # filled in place: building a Tensor and copying it in costs twice as much
            slot.shape.extend(tensor.shape)
            raw[key] = data
        if problems:
            raise InvalidRequestError(problems)
        if gradient:
            message.wrt.extend(wrt if wrt is not None else grads)
            asked = set(message.wrt)
            missing = [g for g in grads if g not in asked]
            if missing:
                raise invalid("parameters[wrt]", f"does not name {', '.join(missing)}, whose gradients the "
                                                 f"outputs ask for; add them or leave wrt out")
        return wire.Parsed(message, raw, size=request.size), gradient, outputs

    def reply(self, request: InferRequest, outputs: Sequence[str], outcome: Outcome) -> InferReply:
        """The requested outputs of an evaluated request, in the order asked."""
        result = outcome.result
        chosen = []
        for name in outputs:
            if name == LOSS_OUTPUT:
                tensor = result.loss
            else:  # grad_<role> or hess_<role> (the prefixes are as long)
                kind = result.hessians if name.startswith(HESS_PREFIX) else result.gradients
                tensor = kind[name[len(GRAD_PREFIX):]]
            tensor = tensor.detach()
            chosen.append(InferOutput(name, TORCH_DATATYPES[tensor.dtype], tuple(tensor.shape), tensor))
        return InferReply(outcome.prepared.spec.name, request.id, tuple(chosen), outcome.prepared.reduction,
                          str(outcome.device))

    def infer(self, request: InferRequest) -> tuple[InferReply, int]:
        """Compute ``request`` (on the calling thread); the reply and the request's tensor element count."""
        parsed, gradient, outputs = self.to_parsed(request)
        outcome = self._pipeline.run(parsed, gradient)
        return self.reply(request, outputs, outcome), outcome.elements

    async def infer_batched(self, request: InferRequest) -> tuple[InferReply, int]:
        """:meth:`infer` for a small request, batched with its like when batching is on."""
        parsed, gradient, outputs = self.to_parsed(request)
        outcome = await self._pipeline.run_batched(parsed, gradient)
        return self.reply(request, outputs, outcome), outcome.elements


def _requested_gradients(spec: LossSpec, outputs: Sequence[str]) -> tuple[list[str], bool]:
    """The roles whose gradients (or Hessian diagonals) the outputs ask for, and whether any diagonal is; refuses
    names that are no output of ``spec``."""
    differentiable = [r.name for r in spec.roles if r.differentiable]
    allowed = [LOSS_OUTPUT, *(GRAD_PREFIX + r for r in differentiable),
               *(HESS_PREFIX + r for r in spec.hessian_roles_offered)]
    grads: list[str] = []
    problems = []
    for i, name in enumerate(outputs):
        if name not in allowed:
            problems.append(FieldViolation(f"outputs[{i}].name", f"{name[:80]!r} is not an output of "
                                                                 f"{spec.name}; expected one of: {', '.join(allowed)}"))
        elif name != LOSS_OUTPUT and name[len(GRAD_PREFIX):] not in grads:
            grads.append(name[len(GRAD_PREFIX):])
    if len(set(outputs)) != len(outputs):
        problems.append(FieldViolation("outputs", "an output is asked for twice; ask for each once"))
    if problems:
        raise InvalidRequestError(problems)
    return grads, any(name.startswith(HESS_PREFIX) for name in outputs)


def _parameters(spec: LossSpec, given: dict[str, Any]) -> tuple[dict[str, Any], str, list[str] | None]:
    """(loss parameters, reduction, wrt or None) from a request's parameters; lists arrive as JSON strings."""
    params: dict[str, Any] = {}
    reduction = ""
    wrt: list[str] | None = None
    problems = []
    for name, value in given.items():
        if name in IGNORED_PARAMETERS:
            continue
        where = f"parameters[{name[:80]}]"
        if name == "reduction":
            if not isinstance(value, str):
                problems.append(FieldViolation(where, f"expected a string, one of: {', '.join(spec.reductions)}"))
            else:
                reduction = value
        elif name == "wrt":
            roles = _json_list(value) if isinstance(value, str) and value.lstrip().startswith("[") else value
            if isinstance(roles, str):
                roles = [roles]
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                problems.append(FieldViolation(where, 'expected a role name or a JSON list of them, e.g. '
                                                      '"[\\"input\\", \\"target\\"]"'))
            else:
                wrt = roles
        else:
            param = next((p for p in spec.params if p.name == name), None)
            listed = param is not None and param.type in (ParamType.FLOAT_LIST, ParamType.STRING_LIST)
            if listed and isinstance(value, str):
                decoded = _json_list(value)
                if decoded is None:
                    problems.append(FieldViolation(where, f"expected a JSON list, e.g. \"[0.1, 0.9]\"; got "
                                                          f"{value[:40]!r}"))
                    continue
                value = decoded
            elif param is not None and param.nullable and value == "null":
                value = None
            params[name] = value  # unknown names and wrong types are refused by validate, as on lossd.v1
    if problems:
        raise InvalidRequestError(problems)
    return params, reduction, wrt


def _json_list(text: str) -> list[Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def _input_bytes(tensor: InferInput, where: str, problems: list[FieldViolation]) -> tuple[int, Any] | None:
    """(wire dtype, bytes) of an input; problems are appended, and None returned, when it cannot be read."""
    dtype = DATATYPES.get(tensor.datatype)
    if dtype is None:
        problems.append(FieldViolation(f"{where}.datatype", f"{tensor.datatype[:20]!r} is not a datatype lossd "
                                                            f"takes; expected one of: {', '.join(DATATYPES)}"))
        return None
    if any(not isinstance(d, int) or d < 0 for d in tensor.shape):
        problems.append(FieldViolation(f"{where}.shape", "expected non-negative integer dimensions"))
        return None
    if tensor.raw is not None:
        return dtype, memoryview(tensor.raw).cast("B")
    if tensor.values is None:
        problems.append(FieldViolation(where, "no data: send its bytes (raw_input_contents, or binary data "
                                              "over HTTP) or its values (contents, or JSON data)"))
        return None
    count = math.prod(tensor.shape)
    try:
        values = np.asarray(tensor.values, dtype=NUMPY_DTYPES[tensor.datatype]).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        problems.append(FieldViolation(where, f"the values are not all {tensor.datatype} numbers"))
        return None
    if values.size != count:
        problems.append(FieldViolation(where, f"{values.size} values for shape {list(tensor.shape)}, which holds "
                                              f"{count}"))
        return None
    if tensor.datatype == "BF16":  # numpy has no bfloat16: round through torch, keep the bits
        return dtype, torch.from_numpy(values).to(torch.bfloat16).view(torch.uint8).numpy().data
    return dtype, memoryview(values).cast("B")



"""The Open Inference Protocol's gRPC service, ``inference.GRPCInferenceService``, on lossd's gRPC port.

Its calls go through the loss servicer's one path (admission, limits, errors as statuses with BadRequest
details, metrics, tracing, request ids), with the translation of lossd.server.inference around the shared
pipeline. Tensor bytes are not copied on the way: ``raw_input_contents`` stay in the received buffer, and
``raw_output_contents`` are appended to the reply straight from the result tensors.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from lossd.oip import grpc_predict_v2_pb2 as v2
from lossd.server.inference import (
    EXTENSIONS,
    SERVER_NAME,
    VERSION,
    InferenceModels,
    InferInput,
    InferReply,
    InferRequest,
)
from lossd.server.servicer import LossServicer, on_pool
from lossd.v1 import wire

SERVICE_NAME = v2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
_RAW_INPUTS = v2.ModelInferRequest.DESCRIPTOR.fields_by_name["raw_input_contents"].number
_RAW_OUTPUTS = v2.ModelInferResponse.DESCRIPTOR.fields_by_name["raw_output_contents"].number
_ID = v2.ModelInferResponse.DESCRIPTOR.fields_by_name["id"].number
_LEN = 2


@dataclass
class _Received:
    """A received request message, with ``raw_input_contents`` left in the wire buffer (``raws``)."""

    message: Any
    raws: list[memoryview] = field(default_factory=list)
    size: int = 0
    error: str | None = None


def parse_infer_request(data: bytes) -> _Received:
    """A gRPC deserializer for ModelInferRequest that leaves the raw input bytes where they arrived."""
    try:
        if len(data) < wire.DETACH_BYTES:
            message = v2.ModelInferRequest.FromString(data)
            return _Received(message, [memoryview(r) for r in message.raw_input_contents], len(data))
        buf = memoryview(data).toreadonly()
        rest: list[memoryview] = []
        raws: list[memoryview] = []
        for number, wire_type, start, payload, end in wire.fields(buf):
            if number == _RAW_INPUTS and wire_type == _LEN:
                raws.append(buf[payload:end])
            else:
                rest.append(buf[start:end])
        return _Received(v2.ModelInferRequest.FromString(b"".join(rest)), raws, len(data))
    except (DecodeError, UnicodeDecodeError) as exc:
        return _Received(v2.ModelInferRequest(), error=f"not a valid inference.ModelInferRequest encoding ({exc})",
                         size=len(data))


def _parser(cls: type) -> Any:
    def parse(data: bytes) -> _Received:
        try:
            return _Received(cls.FromString(data), size=len(data))
        except (DecodeError, UnicodeDecodeError) as exc:
            return _Received(cls(), error=f"not a valid {cls.DESCRIPTOR.full_name} encoding ({exc})", size=len(data))
    return parse


@dataclass(frozen=True)
class _Reply:
    """A ModelInferResponse's encoding without its tensors (``head``), and the output bytes to append to it as
    ``raw_output_contents``."""

    head: bytes
    raws: tuple[Any, ...]
    device: str
    reply_bytes: int


def serialize_infer_reply(reply: _Reply | Any) -> bytes:
    """A gRPC serializer: the head, then each output's bytes as one more raw_output_contents entry (in order;
    the head holds none), copied once, into the result."""
    if not isinstance(reply, _Reply):
        return reply.SerializeToString()
    parts: list[Any] = [reply.head]
    for raw in reply.raws:
        view = memoryview(raw).cast("B") if memoryview(raw).nbytes else b""
        parts += [wire.varint(_RAW_OUTPUTS << 3 | _LEN) + wire.varint(len(view)), view]
    return b"".join(parts)


def infer_request(received: _Received) -> InferRequest:
    """A ModelInferRequest in the fronts' common terms."""
    message = received.message
    request = InferRequest(model=message.model_name, version=message.model_version, id=message.id,
                           parameters={k: _parameter(v) for k, v in message.parameters.items()},
                           outputs=[o.name for o in message.outputs], size=received.size, error=received.error)
    # Typed contents instead of raw bytes, when asked as Triton's HTTP clients ask for JSON: binary_data false on
    # the outputs, or binary_data_output false on the request.
    request.typed_outputs = request.parameters.get("binary_data_output") is False or any(
        _parameter(o.parameters["binary_data"]) is False for o in message.outputs if "binary_data" in o.parameters)
    raws = received.raws
    if raws and len(raws) != len(message.inputs):
        request.error_field = "raw_input_contents"
        request.error = (f"holds {len(raws)} entries for {len(message.inputs)} inputs; send "
                         f"one for each input, in order, or none (and contents)")
    for i, tensor in enumerate(message.inputs):
        values = _contents(tensor) if not raws and tensor.HasField("contents") else None
        request.inputs.append(InferInput(tensor.name, tensor.datatype, list(tensor.shape),
                                         raws[i] if raws and i < len(raws) else None, values))
    return request


def _parameter(value: v2.InferParameter) -> Any:
    kind = value.WhichOneof("parameter_choice")
    return None if kind is None else getattr(value, kind)


# Which typed-contents field carries each datatype (FP16 and BF16 travel raw only).
_CONTENTS = {"BOOL": "bool_contents", "UINT8": "uint_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents"}


def _contents(tensor: Any) -> Any:
    name = _CONTENTS.get(tensor.datatype)
    return getattr(tensor.contents, name) if name is not None else None


def _response(reply: InferReply, typed: bool = False) -> _Reply | v2.ModelInferResponse:
    if typed and all(o.datatype in _CONTENTS for o in reply.outputs):  # (FP16 and BF16 travel raw only)
        return _typed_response(reply)
    shapes = tuple((o.name, o.datatype, o.shape) for o in reply.outputs)
    head = _head(reply.model, reply.reduction, reply.device, shapes)
    if reply.id:  # appended as one more field: the cached part is the same for every id
        name = reply.id.encode()
        head += wire.varint(_ID << 3 | _LEN) + wire.varint(len(name)) + name
    return _Reply(head, tuple(o.data for o in reply.outputs), reply.device, reply.reply_bytes)


def _typed_response(reply: InferReply) -> v2.ModelInferResponse:
    """The reply with each output's values in its typed contents field, and no raw_output_contents."""
    message = v2.ModelInferResponse(model_name=reply.model, model_version=reply.version, id=reply.id)
    for key, text in reply.parameters.items():
        message.parameters[key].string_param = text
    for out in reply.outputs:
        tensor = message.outputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
        getattr(tensor.contents, _CONTENTS[out.datatype]).extend(out.values())
    return message


@functools.lru_cache(maxsize=1024)
def _head(model: str, reduction: str, device: str, outputs: tuple[tuple[str, str, tuple[int, ...]], ...]) -> bytes:
    """A reply's encoding but for its id and tensor bytes, built once for each loss, reduction, device and
    output shapes (a small call's reply measured 27 µs to build as a message, a third of lossd's own time)."""
    message = v2.ModelInferResponse(model_name=model, model_version=VERSION)
    for key, text in (("loss_name", model), ("reduction", reduction), ("device", device)):
        message.parameters[key].string_param = text
    for name, datatype, shape in outputs:
        message.outputs.add(name=name, datatype=datatype, shape=shape)
    return message.SerializeToString()


class InferenceServicer:
    """``inference.GRPCInferenceService``: the six calls of the Open Inference Protocol that lossd serves."""

    def __init__(self, servicer: LossServicer, models: InferenceModels) -> None:
        self._servicer = servicer
        self._models = models

    def ServerLive(self, request: _Received, context: grpc.ServicerContext) -> v2.ServerLiveResponse:
        return v2.ServerLiveResponse(live=True)

    def ServerReady(self, request: _Received, context: grpc.ServicerContext) -> v2.ServerReadyResponse:
        return v2.ServerReadyResponse(ready=not self._servicer.draining)

    def ModelReady(self, request: _Received, context: grpc.ServicerContext) -> v2.ModelReadyResponse:
        # As Triton answers: ready false (not an error) for a name that is no model.
        message = request.message
        return v2.ModelReadyResponse(ready=not request.error and not self._servicer.draining
                                     and self._models.ready(message.name, message.version))

    def ServerMetadata(self, request: _Received, context: grpc.ServicerContext) -> v2.ServerMetadataResponse:
        def work(received: _Received) -> tuple[v2.ServerMetadataResponse, int]:
            return v2.ServerMetadataResponse(name=SERVER_NAME, version=self._models.server_version,
                                             extensions=EXTENSIONS), 0
        return self._servicer.serve_sync("ServerMetadata", None, request, context, work, service=SERVICE_NAME)

    def ModelMetadata(self, request: _Received, context: grpc.ServicerContext) -> v2.ModelMetadataResponse:
        def work(received: _Received) -> tuple[v2.ModelMetadataResponse, int]:
            meta = self._models.metadata(received.message.name, received.message.version)
            reply = v2.ModelMetadataResponse(name=meta.name, versions=meta.versions, platform=meta.platform)
            for t in meta.inputs:
                reply.inputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
            for t in meta.outputs:
                reply.outputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
            return reply, 0
        return self._servicer.serve_sync("ModelMetadata", request.message.name, request, context, work,
                                         service=SERVICE_NAME)

    def ModelInfer(self, request: _Received, context: grpc.ServicerContext) -> _Reply:
        return self._servicer.serve_sync("ModelInfer", request.message.model_name, request, context, self._infer,
                                         self._infer_batched, service=SERVICE_NAME)

    def _infer(self, received: _Received) -> tuple[Any, int]:
        request = infer_request(received)
        reply, elements = self._models.infer(request)
        return _response(reply, request.typed_outputs), elements

    async def _infer_batched(self, received: _Received) -> tuple[Any, int]:
        request = infer_request(received)
        reply, elements = await self._models.infer_batched(request)
        return _response(reply, request.typed_outputs), elements


def add_inference_service(servicer: InferenceServicer, server: grpc.Server, small_calls: Any = None) -> None:
    """Register the service with generic handlers (one dict lookup a call) and the zero-copy codec; ModelInfer on
    the server's pool for small calls (``small_calls``, see lossd.server.app), when given."""
    def unary(method: Any, request: type) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(method, request_deserializer=_parser(request),
                                                   response_serializer=serialize_infer_reply)
    handlers = {
        "ServerLive": unary(servicer.ServerLive, v2.ServerLiveRequest),
        "ServerReady": unary(servicer.ServerReady, v2.ServerReadyRequest),
        "ModelReady": unary(servicer.ModelReady, v2.ModelReadyRequest),
        "ServerMetadata": unary(servicer.ServerMetadata, v2.ServerMetadataRequest),
        "ModelMetadata": unary(servicer.ModelMetadata, v2.ModelMetadataRequest),
        "ModelInfer": grpc.unary_unary_rpc_method_handler(on_pool(servicer.ModelInfer, small_calls),
                                                          request_deserializer=parse_infer_request,
                                                          response_serializer=serialize_infer_reply),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))

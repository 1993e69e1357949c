"""What the sync and asyncio clients share: options, and requests built without I/O.

A request is encoded on one of two paths. The common one — plain numpy arrays, no shared memory, under
``stream_mb`` — is framed with cached headers and copied once (:meth:`RequestBuilder._plain_request`); the
general one handles torch tensors, other byte orders and layouts, shared memory and streaming
(:meth:`RequestBuilder._fill`). Only the sending differs between the clients.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np

from lossd.client._codec import (
    append_plain,
    decode_array,
    encode_param,
    is_tensor_like,
    reply_bound,
    split_arguments,
    tensor_parts,
    wire_dtype,
)
from lossd.client._shm import SharedArrays
from lossd.client._stream import CHUNK_BYTES
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import wire

Value = float | np.ndarray


def channel_options(max_message_mb: float, channels: int, options: Sequence[tuple[str, Any]]) -> list[Any]:
    """gRPC channel options: message limits both ways, round-robin balancing with retries, and (for several
    channels) a subchannel pool of their own, so that identical channels do not share one connection."""
    if channels < 1:
        raise ValueError("channels must be >= 1")
    limit = int(max_message_mb * 1024 * 1024)
    # A lost connection is retried after 0.1 s, not grpc's 1 s: the retries below (about 0.75 s in all) then find
    # the server's other workers (or targets) instead of a channel still waiting to reconnect.
    out = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
           ("grpc.service_config", SERVICE_CONFIG), ("grpc.initial_reconnect_backoff_ms", 100),
           ("grpc.min_reconnect_backoff_ms", 100), *options]
    if channels > 1:
        out.append(("grpc.use_local_subchannel_pool", 1))
    return out


def channel_credentials(tls: bool, root_certificates: bytes | None, client_certificate: bytes | None,
                        client_key: bytes | None,
                        credentials: grpc.ChannelCredentials | None) -> grpc.ChannelCredentials | None:
    """The channel's credentials: as given, TLS when asked for or when any certificate is given, else None."""
    if credentials is None and (tls or root_certificates or client_certificate or client_key):
        credentials = grpc.ssl_channel_credentials(root_certificates, client_key, client_certificate)
    return credentials


def target_of(target: str | Sequence[str]) -> str:
    """One gRPC target for ``host:port``, a ``dns:///`` name, or a list of ``host:port`` targets."""
    return target if isinstance(target, str) else _target_list(target)


@dataclass(frozen=True)
class Call:
    """A request ready to send: ``payload`` for a unary call, else ``request`` and its ``detached`` tensors
    for the streaming RPC."""

    payload: bytes | None
    request: Any = None
    detached: list[wire.Detached] = field(default_factory=list)


class RequestBuilder:
    """Request encoding and reply decoding, shared by :class:`~lossd.client.LossClient` and
    :class:`~lossd.client.AsyncLossClient`."""

    def _setup(self, *, max_message_mb: float, stream_mb: float, shared_memory: bool, shm_prefix: str,
               token: str | None, tracing: bool = False) -> None:
        self._tracer: Any = None
        if tracing:  # OpenTelemetry only when asked for: a client without it imports nothing of it
            from opentelemetry import trace

            self._tracer = trace.get_tracer("lossd.client")
        limit = int(max_message_mb * 1024 * 1024)
        self._max_message_bytes = limit
        self._stream_bytes = int(stream_mb * 1024 * 1024)
        self._chunk_bytes = min(CHUNK_BYTES, limit // 2)  # chunks stay well inside the message limit
        self._shm = SharedArrays(shm_prefix) if shared_memory else None
        self._default_wrt: dict[str, list[str]] = {}
        self._heads: dict[tuple[Any, ...], bytes] = {}  # serialized request headers without parameters
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()

    def _compute_call(self, loss: str, reduction: str, inputs: Mapping[str, Any] | None,
                      params: Mapping[str, Any] | None, arguments: Mapping[str, Any]) -> Call:
        """How to send a Compute: its encoded bytes (unary), or its request and tensors (streamed)."""
        payload = self._plain_request(pb.ComputeRequest, loss, reduction, (), inputs, params, arguments, None)
        if payload is not None:
            return Call(payload)
        request = pb.ComputeRequest(loss=loss, reduction=reduction)
        detached = self._fill(request, inputs, params, arguments)
        if self._too_large(request, detached, gradient=False):
            return Call(None, request, detached)
        return Call(wire.serialize(request, detached))

    def _gradient_call(self, loss: str, reduction: str, wrt: tuple[str, ...], roles: Sequence[str],
                       grad_output: Any, out: Mapping[str, np.ndarray] | None, inputs: Mapping[str, Any] | None,
                       params: Mapping[str, Any] | None, arguments: Mapping[str, Any],
                       hessian: bool = False) -> tuple[Call, dict]:
        """How to send a Gradient (``hessian``: asking for Hessian diagonals too), and the shared arrays its
        gradients will land in (``roles``: the roles differentiated, needed with shared memory only)."""
        if not out:
            payload = self._plain_request(pb.GradientRequest, loss, reduction, wrt, inputs, params, arguments,
                                          grad_output, hessian)
            if payload is not None:
                return Call(payload), {}
        request = pb.GradientRequest(loss=loss, reduction=reduction, wrt=wrt, hessian=hessian)
        detached = self._fill(request, inputs, params, arguments)
        if grad_output is not None:
            meta, data = tensor_parts(grad_output)
            detached.append(wire.Detached(wire.GRAD_OUTPUT, None, meta, data))
        outputs = self._shared_outputs(request, roles, {**(inputs or {}), **arguments}, out or {})
        if self._too_large(request, detached, gradient=True):
            return Call(None, request, detached), outputs
        return Call(wire.serialize(request, detached)), outputs

    def _span(self, method: str) -> Any:
        """A client span for ``method`` (current while the call runs), or None when tracing is off."""
        if self._tracer is None:
            return None
        from opentelemetry import trace

        return self._tracer.start_as_current_span(f"lossd.v1.LossService/{method}", kind=trace.SpanKind.CLIENT,
                                                  attributes={"rpc.system": "grpc", "rpc.method": method})

    def _traced_metadata(self) -> tuple[tuple[str, str], ...]:
        """The call's metadata with the current trace context (W3C traceparent) added."""
        from opentelemetry import propagate

        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return (*self._metadata, *carrier.items())

    def shared_array(self, shape: Any, dtype: Any = np.float32) -> np.ndarray:
        """A zero-filled array in shared memory: sent as an input, it travels by name (no copy)."""
        if self._shm is None:
            raise RuntimeError("shared_array needs shared_memory=True")
        return self._shm.array(shape, dtype)

    def _shared_outputs(self, request: pb.GradientRequest, roles: Sequence[str], given: Mapping[str, Any],
                        out: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Shared-memory arrays for the gradients of large inputs (of ``roles``, the roles differentiated),
        named in ``request.output_shm``."""
        if self._shm is None:  # (the clients refuse out= without shared memory before building the call)
            return {}
        outputs = {}
        for role, array in out.items():
            region = self._shm.region_of(array)
            if region is None:
                raise ValueError(f"out[{role!r}] must be an array made by shared_array()")
            request.output_shm[role].CopyFrom(region)
            outputs[role] = array
        for role in roles:
            value = given.get(role)
            if role in outputs:
                continue
            if isinstance(value, np.ndarray) and value.nbytes >= wire.DETACH_BYTES and value.dtype.kind == "f":
                out = self._shm.array(value.shape, value.dtype.newbyteorder("="))
                request.output_shm[role].CopyFrom(self._shm.region_of(out))
                outputs[role] = out
        return outputs

    def _plain_request(self, cls: type[Any], loss: str, reduction: str, wrt: tuple[str, ...],
                       inputs: Mapping[str, Any] | None, params: Mapping[str, Any] | None,
                       arguments: Mapping[str, Any], grad_output: Any, hessian: bool = False) -> bytes | None:
        """The serialized request when every tensor is a plain numpy array and it fits one message: the
        common case, encoded with cached framing and one copy of the tensor bytes. None otherwise (torch
        tensors, other byte orders or layouts, shared memory, streaming), for the general path."""
        if self._shm is not None:
            return None
        if inputs is None and params is None:  # compute("mse", input=x, target=y): one pass over the arguments
            tensors, given = _split_plain(arguments)
            if tensors is None:
                return None  # a torch tensor: the general path converts it
        else:
            kw_inputs, kw_params = split_arguments(arguments)
            tensors = {**(inputs or {}), **kw_inputs}
            given = {**(params or {}), **kw_params}
        key = (cls, loss, reduction, wrt, hessian)
        head = None if given else self._heads.get(key)
        if head is None:
            message = cls(loss=loss, reduction=reduction, **({"wrt": wrt} if wrt else {}),
                          **({"hessian": True} if hessian else {}))
            for name, value in given.items():
                message.params[name].CopyFrom(encode_param(name, value))
            head = message.SerializeToString()
            if not given and len(self._heads) < 1024:  # bounded: loss names come from the caller
                self._heads[key] = head
        parts: list[Any] = [head]
        total = append_plain(parts, wire.INPUTS, tensors)
        if total >= 0 and grad_output is not None:
            more = append_plain(parts, wire.GRAD_OUTPUT, {None: grad_output})
            total = -1 if more < 0 else total + more
        if total < 0 or total > self._stream_bytes:
            return None
        # Every element is a byte at least, so the reply's bound needs working out only for large requests.
        if total * 8 + 8 > self._stream_bytes and reply_bound(
                ((wire_dtype(a), a.shape) for a in tensors.values()), cls is pb.GradientRequest,
                reduction, hessian) > self._stream_bytes:
            return None
        return b"".join(parts)

    def _too_large(self, request: Any, detached: list[wire.Detached], gradient: bool) -> bool:
        """Whether a request, or the reply it may get, is over ``stream_mb``: then it goes over the streams."""
        if _payload(detached) > self._stream_bytes:
            return True
        tensors = [(t.dtype, tuple(t.shape)) for t in request.inputs.values()]
        tensors += [(d.meta.dtype, tuple(d.meta.shape)) for d in detached if d.field == wire.INPUTS]
        hessian = gradient and request.hessian
        return reply_bound(tensors, gradient, request.reduction, hessian) > self._stream_bytes

    def _fill(self, request: Any, inputs: Mapping[str, Any] | None, params: Mapping[str, Any] | None,
              arguments: Mapping[str, Any]) -> list[wire.Detached]:
        """Parameters go into ``request``; tensors are returned, to be appended without a copy."""
        kw_inputs, kw_params = split_arguments(arguments)
        detached = []
        for role, value in {**(inputs or {}), **kw_inputs}.items():
            region = self._shm.region_of(value) if self._shm is not None else None
            if region is not None:  # already in shared memory: send its name only (no copy is made here)
                meta, _ = tensor_parts(value)
                meta.shm.CopyFrom(region)
                request.inputs[role].CopyFrom(meta)
                continue
            meta, data = tensor_parts(value)
            if self._shm is not None and data.nbytes >= wire.DETACH_BYTES:
                meta.shm.CopyFrom(self._shm.staged(role, data))
                request.inputs[role].CopyFrom(meta)
            elif data.nbytes < wire.DETACH_BYTES:
                # Small: protobuf's own (C) serializer beats appending in Python.
                slot = request.inputs[role]
                slot.dtype = meta.dtype
                slot.shape.extend(meta.shape)
                slot.raw_data = data.tobytes()
            else:
                detached.append(wire.Detached(wire.INPUTS, role, meta, data))
        for name, value in {**(params or {}), **kw_params}.items():
            request.params[name].CopyFrom(encode_param(name, value))
        return detached

# round_robin spreads calls over every address a target resolves to; UNAVAILABLE is retried, with backoff,
# because a loss is a pure function: computing it twice is harmless. So is CANCELLED as the server sends it
# for calls it had not started when it began shutting down (a cancel by this client is never retried).
SERVICE_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{
        "name": [{"service": "lossd.v1.LossService"}],
        "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.05s", "maxBackoff": "1s",
                        "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"]},
    }],
})


def _split_plain(arguments: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Keyword arguments as (numpy inputs, parameters), as :func:`split_arguments` splits them; (None, ...) when one
    is a torch tensor."""
    tensors: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for name, value in arguments.items():
        if type(value) is np.ndarray:
            tensors[name] = value
        elif is_tensor_like(value):
            return None, params
        else:
            params[name] = value
    return tensors, params


def _target_list(targets: Sequence[str]) -> str:
    """Several ``host:port`` targets as one gRPC target (the ipv4:/ipv6: schemes take comma lists)."""
    if not targets:
        raise ValueError("target: give at least one host:port")
    scheme = "ipv6" if any(t.startswith("[") for t in targets) else "ipv4"
    return f"{scheme}:{','.join(targets)}"


def gradients_of(parsed: wire.Parsed, outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A Gradient reply's gradients: arrays over the reply's bytes, or the shared arrays they were written to."""
    return {role: outputs[role] if t.HasField("shm") and role in outputs
            else decode_array(t, parsed.raw.get((wire.GRADIENTS, role)))
            for role, t in parsed.message.gradients.items()}


def hessians_of(parsed: wire.Parsed) -> dict[str, np.ndarray]:
    """A Gradient reply's Hessian diagonals: arrays over the reply's bytes."""
    return {role: decode_array(t, parsed.raw.get((wire.HESSIANS, role)))
            for role, t in parsed.message.hessians.items()}


def loss_of(parsed: wire.Parsed) -> Value:
    """A reply's loss (see :func:`_value`)."""
    response = parsed.message
    return _value(response.loss, parsed.raw.get((wire.LOSS, None)), response.reduction)


def _payload(detached: list[wire.Detached]) -> int:
    return sum(memoryview(d.raw).nbytes for d in detached)


def _value(loss: pb.Tensor, raw: memoryview | None, reduction: str) -> Value:
    """The reply's loss: an array for reduction "none", else a float (read without numpy when it can be)."""
    if reduction != "none" and not raw:
        unpack = _SCALAR.get(loss.dtype)
        data = loss.raw_data
        if unpack is not None and len(data) == unpack.size:
            return float(unpack.unpack(data)[0])
    array = decode_array(loss, raw)
    return array if reduction == "none" else float(array)


_SCALAR = {pb.DTYPE_FLOAT32: struct.Struct("<f"), pb.DTYPE_FLOAT64: struct.Struct("<d"),
           pb.DTYPE_FLOAT16: struct.Struct("<e")}

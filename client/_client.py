"""The synchronous lossd client."""

from __future__ import annotations

import itertools
import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc
import numpy as np

from lossd.client._codec import (
    append_plain,
    decode_array,
    encode_param,
    reply_bound,
    split_arguments,
    tensor_parts,
    wire_dtype,
)
from lossd.client._errors import from_rpc_error
from lossd.client._shm import SharedArrays
from lossd.client._stream import CHUNK_BYTES, stream_call
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import loss_service_pb2_grpc as pb_grpc
from lossd.v1 import wire

Value = float | np.ndarray


class LossClient:
    """A connection to a lossd server.

    Keyword arguments of :meth:`compute` and :meth:`gradient` that are numpy arrays or torch tensors
    are sent as inputs (by role name); Python numbers, bools, strings and lists are parameters.
    Arrays come back read-only (views of the reply's bytes); ``.copy()`` one to write to it.

    >>> with LossClient("localhost:50051") as c:  # doctest: +SKIP
    ...     c.compute("huber", input=pred, target=y, delta=1.0)
    """

    def __init__(
        self,
        target: str | Sequence[str] = "localhost:50051",
        *,
        timeout: float | None = 30.0,
        tls: bool = False,
        root_certificates: bytes | None = None,
        client_certificate: bytes | None = None,
        client_key: bytes | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        max_message_mb: float = 64.0,
        channels: int = 1,
        stream_mb: float = 48.0,
        shared_memory: bool = False,
        shm_prefix: str = "lossd-",
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        """Open a channel to ``target``: ``host:port``, a ``dns:///name:port`` that lists several servers, or a
        list of ``host:port`` targets; several servers are balanced call by call with gRPC's round_robin, and a
        call that finds its server gone (UNAVAILABLE) is retried on another (losses are pure functions).

        ``timeout`` is the default per-call deadline in seconds (None: wait forever). TLS is used when
        ``tls`` is true or any certificate is given (``root_certificates`` to trust a private CA,
        ``client_certificate``/``client_key`` for mutual TLS), or pass ready ``credentials``. ``token``
        is sent as ``authorization: Bearer <token>`` on every call. ``channels`` > 1 opens that many
        connections and spreads calls over them in turn (a server started with ``--workers N`` gets one
        worker per connection, so this is what puts every worker to use). Requests whose tensors add up to
        more than ``stream_mb`` MiB, or whose reply may (an unreduced loss, gradients), go in chunks over
        the streaming RPCs (and so may exceed the message limit); the answer is the same. ``shared_memory`` uses the
        same-host path of a server started with ``--shm-prefix`` (``shm_prefix`` must match): large
        tensors travel through POSIX shared memory, and :meth:`shared_array` makes arrays that need
        no copy at all.
        """
        if channels < 1:
            raise ValueError("channels must be >= 1")
        limit = int(max_message_mb * 1024 * 1024)
        if not isinstance(target, str):
            target = _target_list(target)
        channel_options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
                           ("grpc.service_config", _SERVICE_CONFIG), *options]
        if credentials is None and (tls or root_certificates or client_certificate or client_key):
            credentials = grpc.ssl_channel_credentials(root_certificates, client_key, client_certificate)
        if channels > 1:
            # Without a local subchannel pool, grpc would share one connection among identical channels.
            channel_options.append(("grpc.use_local_subchannel_pool", 1))
        self._channels = [
            grpc.secure_channel(target, credentials, options=channel_options) if credentials is not None
            else grpc.insecure_channel(target, options=channel_options)
            for _ in range(channels)
        ]
        self._channel = self._channels[0]
        self._stub = pb_grpc.LossServiceStub(self._channel)
        # Compute and Gradient carry tensors: sent and received through the zero-copy wire codec.
        self._computes = itertools.cycle([
            ch.unary_unary("/lossd.v1.LossService/Compute", response_deserializer=wire.parse_compute_response)
            for ch in self._channels])
        self._streams = {
            kind: itertools.cycle([ch.stream_stream(f"/lossd.v1.LossService/{method}",
                                                    response_deserializer=wire.parse_stream_response)
                                   for ch in self._channels])
            for kind, method in (("compute", "ComputeStream"), ("gradient", "GradientStream"))
        }
        self._stream_bytes = int(stream_mb * 1024 * 1024)
        self._chunk_bytes = min(CHUNK_BYTES, limit // 2)  # chunks stay well inside the message limit
        self._gradients = itertools.cycle([
            ch.unary_unary("/lossd.v1.LossService/Gradient", response_deserializer=wire.parse_gradient_response)
            for ch in self._channels])
        self._timeout = timeout
        self._shm = SharedArrays(shm_prefix) if shared_memory else None
        self._default_wrt: dict[str, list[str]] = {}
        self._heads: dict[tuple[Any, ...], bytes] = {}  # serialized request headers without parameters
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()

    def compute(
        self,
        loss: str,
        /,
        *,
        inputs: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        reduction: str = "",
        timeout: float | None = None,
        **arguments: Any,
    ) -> Value:
        """The loss: a float for reductions to a scalar ("mean", "sum"), an array for "none".

        Raises a :class:`LossError` subclass when the server refuses or the call fails.
        """
        payload = self._plain_request(pb.ComputeRequest, loss, reduction, (), inputs, params, arguments, None)
        if payload is not None:
            parsed = self._call(next(self._computes), payload, timeout)
        else:
            request = pb.ComputeRequest(loss=loss, reduction=reduction)
            detached = self._fill(request, inputs, params, arguments)
            if self._too_large(request, detached, gradient=False):
                parsed = self._stream("compute", request, detached, timeout)
            else:
                parsed = self._call(next(self._computes), wire.serialize(request, detached), timeout)
        response = parsed.message
        return _value(response.loss, parsed.raw.get((wire.LOSS, None)), response.reduction)

    def gradient(
        self,
        loss: str,
        /,
        *,
        wrt: Iterable[str] = (),
        grad_output: Any = None,
        out: Mapping[str, np.ndarray] | None = None,
        inputs: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        reduction: str = "",
        timeout: float | None = None,
        **arguments: Any,
    ) -> tuple[Value, dict[str, np.ndarray]]:
        """The loss and its gradients: ``(value, {role: d loss / d role})``.

        ``wrt`` names the roles to differentiate (default: the loss's prediction, ``input``).
        ``grad_output`` (shaped like the loss) makes it a vector-Jacobian product; ones by default.
        With ``shared_memory``, ``out`` maps roles to :meth:`shared_array` arrays that receive those
        gradients in place (no new region per call); other large gradients get new shared arrays.
        """
        wrt = tuple(wrt)
        payload = None if out else self._plain_request(pb.GradientRequest, loss, reduction, wrt, inputs, params,
                                                       arguments, grad_output)
        outputs: dict[str, Any] = {}
        if payload is not None:
            parsed = self._call(next(self._gradients), payload, timeout)
        else:
            request = pb.GradientRequest(loss=loss, reduction=reduction, wrt=wrt)
            detached = self._fill(request, inputs, params, arguments)
            if grad_output is not None:
                meta, data = tensor_parts(grad_output)
                detached.append(wire.Detached(wire.GRAD_OUTPUT, None, meta, data))
            outputs = self._shared_outputs(request, loss, {**(inputs or {}), **arguments}, out or {})
            if self._too_large(request, detached, gradient=True):
                parsed = self._stream("gradient", request, detached, timeout)
            else:
                parsed = self._call(next(self._gradients), wire.serialize(request, detached), timeout)
        response = parsed.message
        grads = {role: outputs[role] if t.HasField("shm") and role in outputs
                 else decode_array(t, parsed.raw.get((wire.GRADIENTS, role))) for role, t in response.gradients.items()}
        return _value(response.loss, parsed.raw.get((wire.LOSS, None)), response.reduction), grads

    def shared_array(self, shape: Any, dtype: Any = np.float32) -> np.ndarray:
        """A zero-filled array in shared memory: sent as an input, it travels by name (no copy)."""
        if self._shm is None:
            raise RuntimeError("shared_array needs LossClient(..., shared_memory=True)")
        return self._shm.array(shape, dtype)

    def _shared_outputs(self, request: pb.GradientRequest, loss: str, given: Mapping[str, Any],
                        out: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Shared-memory arrays for the gradients of large inputs, named in ``request.output_shm``."""
        if self._shm is None:
            if out:
                raise RuntimeError("out= needs LossClient(..., shared_memory=True)")
            return {}
        outputs = {}
        for role, array in out.items():
            region = self._shm.region_of(array)
            if region is None:
                raise ValueError(f"out[{role!r}] must be an array made by shared_array()")
            request.output_shm[role].CopyFrom(region)
            outputs[role] = array
        roles = list(request.wrt) or self._default_wrt.get(loss)
        if roles is None:
            roles = self._default_wrt[loss] = list(self.describe(loss).default_wrt)
        for role in roles:
            value = given.get(role)
            if role in outputs:
                continue
            if isinstance(value, np.ndarray) and value.nbytes >= wire.DETACH_BYTES and value.dtype.kind == "f":
                out = self._shm.array(value.shape, value.dtype.newbyteorder("="))
                request.output_shm[role].CopyFrom(self._shm.region_of(out))
                outputs[role] = out
        return outputs

    def list_losses(self, *, timeout: float | None = None) -> list[pb.LossInfo]:
        """Every loss the server offers, with roles, parameters and reductions."""
        return list(self._call(self._stub.ListLosses, pb.ListLossesRequest(), timeout).losses)

    def describe(self, loss: str, *, timeout: float | None = None) -> pb.LossInfo:
        """The description of one loss, by any of its names."""
        return self._call(self._stub.ListLosses, pb.ListLossesRequest(name=loss), timeout).losses[0]

    def close(self) -> None:
        """Close the channels; calls in progress are cancelled."""
        for channel in self._channels:
            channel.close()
        if self._shm is not None:
            self._shm.close()

    def __enter__(self) -> LossClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _plain_request(self, cls: type[Any], loss: str, reduction: str, wrt: tuple[str, ...],
                       inputs: Mapping[str, Any] | None, params: Mapping[str, Any] | None,
                       arguments: Mapping[str, Any], grad_output: Any) -> bytes | None:
        """The serialized request when every tensor is a plain numpy array and it fits one message: the
        common case, encoded with cached framing and one copy of the tensor bytes. None otherwise (torch
        tensors, other byte orders or layouts, shared memory, streaming), for the general path."""
        if self._shm is not None:
            return None
        kw_inputs, kw_params = split_arguments(arguments)
        tensors = {**(inputs or {}), **kw_inputs}
        given = {**(params or {}), **kw_params}
        key = (cls, loss, reduction, wrt)
        head = None if given else self._heads.get(key)
        if head is None:
            message = cls(loss=loss, reduction=reduction, **({"wrt": wrt} if wrt else {}))
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
                reduction) > self._stream_bytes:
            return None
        return b"".join(parts)

    def _too_large(self, request: Any, detached: list[wire.Detached], gradient: bool) -> bool:
        """Whether a request, or the reply it may get, is over ``stream_mb``: then it goes over the streams."""
        if _payload(detached) > self._stream_bytes:
            return True
        tensors = [(t.dtype, tuple(t.shape)) for t in request.inputs.values()]
        tensors += [(d.meta.dtype, tuple(d.meta.shape)) for d in detached if d.field == wire.INPUTS]
        return reply_bound(tensors, gradient, request.reduction) > self._stream_bytes

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

    def _stream(self, kind: str, request: Any, detached: list[wire.Detached], timeout: float | None) -> wire.Parsed:
        """One call over ComputeStream/GradientStream (see lossd.client._stream)."""
        try:  # the reply is read lazily: its errors surface while iterating, not at the call
            return stream_call(lambda parts: self._call(next(self._streams[kind]), parts, timeout), kind, request,
                               detached, self._chunk_bytes)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return method(request, timeout=timeout if timeout is not None else self._timeout,
                          metadata=self._metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None


# round_robin spreads calls over every address a target resolves to; UNAVAILABLE is retried, with backoff,
# because a loss is a pure function: computing it twice is harmless. So is CANCELLED as the server sends it
# for calls it had not started when it began shutting down (a cancel by this client is never retried).
_SERVICE_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{
        "name": [{"service": "lossd.v1.LossService"}],
        "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.05s", "maxBackoff": "1s",
                        "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"]},
    }],
})


def _target_list(targets: Sequence[str]) -> str:
    """Several ``host:port`` targets as one gRPC target (the ipv4:/ipv6: schemes take comma lists)."""
    if not targets:
        raise ValueError("target: give at least one host:port")
    scheme = "ipv6" if any(t.startswith("[") for t in targets) else "ipv4"
    return f"{scheme}:{','.join(targets)}"


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

"""The synchronous lossd client."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc
import numpy as np

from lossd.client._codec import decode_array, encode_param, split_arguments, tensor_parts
from lossd.client._errors import from_rpc_error
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import loss_service_pb2_grpc as pb_grpc
from lossd.v1 import wire

_INPUTS = pb.ComputeRequest.DESCRIPTOR.fields_by_name["inputs"].number
_GRAD_OUTPUT = pb.GradientRequest.DESCRIPTOR.fields_by_name["grad_output"].number
_LOSS = pb.ComputeResponse.DESCRIPTOR.fields_by_name["loss"].number
_GRADIENTS = pb.GradientResponse.DESCRIPTOR.fields_by_name["gradients"].number

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
        target: str = "localhost:50051",
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
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        """Open a channel to ``target`` (``host:port``).

        ``timeout`` is the default per-call deadline in seconds (None: wait forever). TLS is used when
        ``tls`` is true or any certificate is given (``root_certificates`` to trust a private CA,
        ``client_certificate``/``client_key`` for mutual TLS), or pass ready ``credentials``. ``token``
        is sent as ``authorization: Bearer <token>`` on every call. ``channels`` > 1 opens that many
        connections and spreads calls over them in turn (a server started with ``--workers N`` gets one
        worker per connection, so this is what puts every worker to use).
        """
        if channels < 1:
            raise ValueError("channels must be >= 1")
        limit = int(max_message_mb * 1024 * 1024)
        channel_options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
                           *options]
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
        self._gradients = itertools.cycle([
            ch.unary_unary("/lossd.v1.LossService/Gradient", response_deserializer=wire.parse_gradient_response)
            for ch in self._channels])
        self._timeout = timeout
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
        request = pb.ComputeRequest(loss=loss, reduction=reduction)
        detached = self._fill(request, inputs, params, arguments)
        parsed = self._call(next(self._computes), wire.serialize(request, detached), timeout)
        response = parsed.message
        return _value(decode_array(response.loss, parsed.raw.get((_LOSS, None))), response.reduction)

    def gradient(
        self,
        loss: str,
        /,
        *,
        wrt: Iterable[str] = (),
        grad_output: Any = None,
        inputs: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        reduction: str = "",
        timeout: float | None = None,
        **arguments: Any,
    ) -> tuple[Value, dict[str, np.ndarray]]:
        """The loss and its gradients: ``(value, {role: d loss / d role})``.

        ``wrt`` names the roles to differentiate (default: the loss's prediction, ``input``).
        ``grad_output`` (shaped like the loss) makes it a vector-Jacobian product; ones by default.
        """
        request = pb.GradientRequest(loss=loss, reduction=reduction, wrt=list(wrt))
        detached = self._fill(request, inputs, params, arguments)
        if grad_output is not None:
            meta, data = tensor_parts(grad_output)
            detached.append(wire.Detached(_GRAD_OUTPUT, None, meta, data))
        parsed = self._call(next(self._gradients), wire.serialize(request, detached), timeout)
        response = parsed.message
        grads = {role: decode_array(t, parsed.raw.get((_GRADIENTS, role))) for role, t in response.gradients.items()}
        return _value(decode_array(response.loss, parsed.raw.get((_LOSS, None))), response.reduction), grads

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

    def __enter__(self) -> LossClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _fill(self, request: Any, inputs: Mapping[str, Any] | None, params: Mapping[str, Any] | None,
              arguments: Mapping[str, Any]) -> list[wire.Detached]:
        """Parameters go into ``request``; tensors are returned, to be appended without a copy."""
        kw_inputs, kw_params = split_arguments(arguments)
        detached = []
        for role, value in {**(inputs or {}), **kw_inputs}.items():
            meta, data = tensor_parts(value)
            if data.nbytes < wire.DETACH_BYTES:
                # Small: protobuf's own (C) serializer beats appending in Python.
                slot = request.inputs[role]
                slot.dtype = meta.dtype
                slot.shape.extend(meta.shape)
                slot.raw_data = data.tobytes()
            else:
                detached.append(wire.Detached(_INPUTS, role, meta, data))
        for name, value in {**(params or {}), **kw_params}.items():
            request.params[name].CopyFrom(encode_param(name, value))
        return detached

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return method(request, timeout=timeout if timeout is not None else self._timeout,
                          metadata=self._metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None


def _value(array: np.ndarray, reduction: str) -> Value:
    return array if reduction == "none" else float(array)

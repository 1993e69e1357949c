"""The synchronous lossd client."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc
import numpy as np

from lossd.client._errors import LossError, from_rpc_error
from lossd.client._pipeline import METHOD as PIPELINE
from lossd.client._pipeline import Encoder, run_sync
from lossd.client._requests import (
    Call,
    RequestBuilder,
    Value,
    channel_credentials,
    channel_options,
    gradients_of,
    hessians_of,
    loss_of,
    target_of,
)
from lossd.client._stream import stream_call
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import loss_service_pb2_grpc as pb_grpc
from lossd.v1 import wire


class LossClient(RequestBuilder):
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
        tracing: bool = False,
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
        the streaming RPCs (and so may exceed the message limit); the answer is the same. ``shared_memory``
        uses the same-host path of a server started with ``--shm-prefix`` (``shm_prefix`` must match): large
        tensors travel through POSIX shared memory, and :meth:`shared_array` makes arrays that need
        no copy at all. ``tracing`` wraps each Compute and Gradient in an OpenTelemetry client span and sends
        its W3C trace context, which a server with tracing on continues (needs ``lossd[tracing]``).
        """
        channel_options_ = channel_options(max_message_mb, channels, options)
        credentials = channel_credentials(tls, root_certificates, client_certificate, client_key, credentials)
        target = target_of(target)
        self._channels = [
            grpc.secure_channel(target, credentials, options=channel_options_) if credentials is not None
            else grpc.insecure_channel(target, options=channel_options_)
            for _ in range(channels)
        ]
        self._stub = pb_grpc.LossServiceStub(self._channels[0])
        # Compute and Gradient carry tensors: sent and received through the zero-copy wire codec.
        self._computes = itertools.cycle([
            ch.unary_unary("/lossd.v1.LossService/Compute", response_deserializer=wire.parse_compute_response)
            for ch in self._channels])
        self._gradients = itertools.cycle([
            ch.unary_unary("/lossd.v1.LossService/Gradient", response_deserializer=wire.parse_gradient_response)
            for ch in self._channels])
        self._streams = {
            kind: itertools.cycle([ch.stream_stream(f"/lossd.v1.LossService/{method}",
                                                    response_deserializer=wire.parse_stream_response)
                                   for ch in self._channels])
            for kind, method in (("compute", "ComputeStream"), ("gradient", "GradientStream"))
        }
        self._pipelines = itertools.cycle([
            ch.stream_stream(PIPELINE, response_deserializer=pb.PipelineResponse.FromString)
            for ch in self._channels])
        self._timeout = timeout
        self._setup(max_message_mb=max_message_mb, stream_mb=stream_mb, shared_memory=shared_memory,
                    shm_prefix=shm_prefix, token=token, tracing=tracing)

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
        if self._tracer is None:  # the common case, without a Call to carry the request through
            payload = self._plain_request(pb.ComputeRequest, loss, reduction, (), inputs, params, arguments, None)
            if payload is not None:
                return loss_of(self._call(next(self._computes), payload, timeout))
        call = self._compute_call(loss, reduction, inputs, params, arguments)
        parsed = self._send(call, self._computes, "compute", timeout)
        return loss_of(parsed)

    def pipeline(
        self,
        loss: str,
        requests: Iterable[Mapping[str, Any]],
        /,
        *,
        depth: int = 16,
        return_errors: bool = False,
        reduction: str = "",
        timeout: float | None = None,
        **params: Any,
    ) -> Iterator[Value | LossError]:
        """Many Compute calls over one stream: an iterator of results in the order of ``requests``.

        ``requests`` is an iterable of role→array mappings (``{"input": x, "target": y}``), pulled as the
        window allows: at most ``depth`` are sent before the first result is taken. Each result is what
        :meth:`compute` would return for that request with ``params`` and ``reduction``. A refused request
        raises its :class:`LossError` at its position (ending the stream), or, with ``return_errors``, is
        yielded there as the error object and the rest go on. ``timeout`` (seconds) bounds each request
        from its arrival at the server; the stream itself has no deadline. Closing the iterator early
        cancels what is still in flight.

        >>> for value in client.pipeline("mse", ({"input": x, "target": y} for x, y in batches)):  # doctest: +SKIP
        ...     print(value)
        """
        encoder = Encoder(self, loss, reduction, params, timeout, depth, self._max_message_bytes)
        return run_sync(next(self._pipelines), encoder, requests, return_errors, self._metadata)

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
        if self._shm is None and out:
            raise RuntimeError("out= needs LossClient(..., shared_memory=True)")
        roles = list(wrt) or (self._default_roles(loss) if self._shm is not None else [])
        call, outputs = self._gradient_call(loss, reduction, wrt, roles, grad_output, out, inputs, params,
                                            arguments)
        parsed = self._send(call, self._gradients, "gradient", timeout)
        return loss_of(parsed), gradients_of(parsed, outputs)

    def hessian(
        self,
        loss: str,
        /,
        *,
        wrt: Sequence[str] | None = None,
        grad_output: Any = None,
        reduction: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        **arguments: Any,
    ) -> tuple[Value, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The loss, its gradients and the diagonals of its Hessian: ``(value, {role: gradient}, {role: diagonal})``.

        Each diagonal is that of d²(sum(grad_output * loss))/d(role)² (``grad_output`` ones by default), shaped
        like the role: exact, for the losses whose ``describe(loss).hessian`` is true (INVALID_ARGUMENT for the
        others, whose rows are coupled). Where the second derivative is zero almost everywhere (mae, hinge,
        quantile) the diagonals are zeros. ``wrt`` and ``reduction`` default to the loss's own.
        """
        call, _ = self._gradient_call(loss, reduction or "", tuple(wrt or ()), [], grad_output, None, inputs, params,
                                      arguments, hessian=True)
        parsed = self._send(call, self._gradients, "gradient", timeout)
        return loss_of(parsed), gradients_of(parsed, {}), hessians_of(parsed)

    def _default_roles(self, loss: str) -> list[str]:
        roles = self._default_wrt.get(loss)
        if roles is None:
            roles = self._default_wrt[loss] = list(self.describe(loss).default_wrt)
        return roles

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

    def _send(self, call: Call, unary: Any, kind: str, timeout: float | None) -> wire.Parsed:
        span = self._span(("Compute" if kind == "compute" else "Gradient")
                          + ("" if call.payload is not None else "Stream"))
        if span is None:
            return self._send_now(call, unary, kind, timeout)
        with span:
            metadata, self._metadata = self._metadata, self._traced_metadata()
            try:
                return self._send_now(call, unary, kind, timeout)
            finally:
                self._metadata = metadata

    def _send_now(self, call: Call, unary: Any, kind: str, timeout: float | None) -> wire.Parsed:
        if call.payload is not None:
            return self._call(next(unary), call.payload, timeout)
        return self._stream(kind, call.request, call.detached, timeout)

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

"""The asyncio lossd client (grpc.aio): :class:`LossClient`'s API with ``await``."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc
import numpy as np

from lossd.client._errors import LossError, from_rpc_error
from lossd.client._pipeline import METHOD as PIPELINE
from lossd.client._pipeline import Encoder, run_async
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
from lossd.client._stream import stream_call_async
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import wire


class AsyncLossClient(RequestBuilder):
    """A connection to lossd servers for asyncio programs (FastAPI and the like).

    It takes the same arguments as :class:`~lossd.client.LossClient` and offers the same methods as
    coroutines: balancing over several servers, retries on UNAVAILABLE, streaming past ``stream_mb``, shared
    memory, TLS, tokens and the same errors. Make it inside the event loop that uses it.

    >>> async with AsyncLossClient("localhost:50051") as c:  # doctest: +SKIP
    ...     value = await c.compute("huber", input=pred, target=y, delta=1.0)
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
        """Open the channel(s); the arguments are :class:`~lossd.client.LossClient`'s."""
        channel_options_ = channel_options(max_message_mb, channels, options)
        credentials = channel_credentials(tls, root_certificates, client_certificate, client_key, credentials)
        target = target_of(target)
        self._channels = [
            grpc.aio.secure_channel(target, credentials, options=channel_options_) if credentials is not None
            else grpc.aio.insecure_channel(target, options=channel_options_)
            for _ in range(channels)
        ]
        self._computes = itertools.cycle([
            ch.unary_unary("/lossd.v1.LossService/Compute", response_deserializer=wire.parse_compute_response)
            for ch in self._channels])
        self._gradients = itertools.cycle([
            ch.unary_unary("/lossd.v1.LossService/Gradient", response_deserializer=wire.parse_gradient_response)
            for ch in self._channels])
        self._list = self._channels[0].unary_unary(
            "/lossd.v1.LossService/ListLosses", request_serializer=pb.ListLossesRequest.SerializeToString,
            response_deserializer=pb.ListLossesResponse.FromString)
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

    def pipeline(
        self,
        loss: str,
        requests: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
        /,
        *,
        depth: int = 16,
        return_errors: bool = False,
        reduction: str = "",
        timeout: float | None = None,
        **params: Any,
    ) -> AsyncIterator[Value | LossError]:
        """:meth:`LossClient.pipeline <lossd.client.LossClient.pipeline>` as an async iterator; ``requests``
        may be an iterable or an async iterable.

        >>> async for value in client.pipeline("mse", requests):  # doctest: +SKIP
        ...     print(value)
        """
        encoder = Encoder(self, loss, reduction, params, timeout, depth, self._max_message_bytes)
        return run_async(next(self._pipelines), encoder, requests, return_errors, self._metadata)

    async def compute(
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
        """The loss: a float for reductions to a scalar ("mean", "sum"), an array for "none"."""
        if self._tracer is None:  # the common case, without a Call to carry the request through
            payload = self._plain_request(pb.ComputeRequest, loss, reduction, (), inputs, params, arguments, None)
            if payload is not None:
                return loss_of(await self._call(next(self._computes), payload, timeout))
        call = self._compute_call(loss, reduction, inputs, params, arguments)
        parsed = await self._send(call, self._computes, "compute", timeout)
        return loss_of(parsed)

    async def gradient(
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
        """The loss and its gradients: ``(value, {role: d loss / d role})`` (see LossClient.gradient)."""
        wrt = tuple(wrt)
        if self._shm is None and out:
            raise RuntimeError("out= needs AsyncLossClient(..., shared_memory=True)")
        roles = list(wrt) or (await self._default_roles(loss) if self._shm is not None else [])
        call, outputs = self._gradient_call(loss, reduction, wrt, roles, grad_output, out, inputs, params,
                                            arguments)
        parsed = await self._send(call, self._gradients, "gradient", timeout)
        return loss_of(parsed), gradients_of(parsed, outputs)

    async def hessian(
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
        parsed = await self._send(call, self._gradients, "gradient", timeout)
        return loss_of(parsed), gradients_of(parsed, {}), hessians_of(parsed)

    async def _default_roles(self, loss: str) -> list[str]:
        roles = self._default_wrt.get(loss)
        if roles is None:
            roles = self._default_wrt[loss] = list((await self.describe(loss)).default_wrt)
        return roles

    async def list_losses(self, *, timeout: float | None = None) -> list[pb.LossInfo]:
        """Every loss the server offers, with roles, parameters and reductions."""
        return list((await self._call(self._list, pb.ListLossesRequest(), timeout)).losses)

    async def describe(self, loss: str, *, timeout: float | None = None) -> pb.LossInfo:
        """The description of one loss, by any of its names."""
        return (await self._call(self._list, pb.ListLossesRequest(name=loss), timeout)).losses[0]

    async def close(self) -> None:
        """Close the channels; calls in progress are cancelled."""
        for channel in self._channels:
            await channel.close()
        if self._shm is not None:
            self._shm.close()

    async def __aenter__(self) -> AsyncLossClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def _send(self, call: Call, unary: Any, kind: str, timeout: float | None) -> wire.Parsed:
        span = self._span(("Compute" if kind == "compute" else "Gradient")
                          + ("" if call.payload is not None else "Stream"))
        if span is None:
            return await self._send_now(call, unary, kind, timeout)
        with span:
            metadata, self._metadata = self._metadata, self._traced_metadata()
            try:
                return await self._send_now(call, unary, kind, timeout)
            finally:
                self._metadata = metadata

    async def _send_now(self, call: Call, unary: Any, kind: str, timeout: float | None) -> wire.Parsed:
        if call.payload is not None:
            return await self._call(next(unary), call.payload, timeout)
        return await self._stream(kind, call.request, call.detached, timeout)

    async def _stream(self, kind: str, request: Any, detached: list[wire.Detached],
                      timeout: float | None) -> wire.Parsed:
        method = next(self._streams[kind])

        def call(parts: Any) -> Any:
            return method(parts, timeout=timeout if timeout is not None else self._timeout, metadata=self._metadata)
        try:
            return await stream_call_async(call, kind, request, detached, self._chunk_bytes)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    async def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return await method(request, timeout=timeout if timeout is not None else self._timeout,
                                metadata=self._metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

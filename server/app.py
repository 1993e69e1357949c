"""Assembles and runs a lossd server: the loss service, health, reflection and the metrics endpoint."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

import grpc
import torch
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from lossd.losses import REGISTRY, Registry
from lossd.server import loops
from lossd.server.batching import Batcher
from lossd.server.bridge import stream_stream
from lossd.server.device import resolve_device
from lossd.server.inference import InferenceModels
from lossd.server.memory import retain_heap, trim_heap
from lossd.server.metrics import MetricsEndpoint, ServerMetrics, lossd_version
from lossd.server.pipeline import Pipeline
from lossd.server.placement import placement_for
from lossd.server.security import TokenAuthInterceptor, load_token_digests, server_credentials
from lossd.server.servicer import LossServicer, on_pool
from lossd.server.settings import ServerSettings
from lossd.server.shm import SharedMemoryAccess
from lossd.server.tracing import tracer_for
from lossd.server.v2_grpc import SERVICE_NAME as INFERENCE_SERVICE
from lossd.server.v2_grpc import InferenceServicer, add_inference_service
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import wire

log = logging.getLogger("lossd.server")

_LINGER_S = 0.5
_IDLE_TRIM_S = 1.0
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["LossService"].full_name
# Elements per tensor are bounded by what fits in one message; the smallest dtype is one byte.
_BYTES_PER_ELEMENT_FLOOR = 1


class LossServer:
    """One lossd server. ``await start()``, then ``await stop()``; ``address`` is known after start."""

    def __init__(self, settings: ServerSettings | None = None, registry: Registry = REGISTRY) -> None:
        self.settings = settings or ServerSettings()
        self.registry = registry
        self.device = resolve_device(self.settings.device)
        self.metrics = ServerMetrics(str(self.device))
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.http_port: int | None = None
        self._rest: Any = None  # lossd.server.rest.RestFront, when --http-port turns it on
        self._server: grpc.Server | None = None
        self._health = health.HealthServicer()
        self._pools: list[ThreadPoolExecutor] = []  # the gRPC server's threads (see start)
        self._metrics_endpoint: MetricsEndpoint | None = None
        self._trimmer: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=self.settings.compute_threads or os.cpu_count() or 1, thread_name_prefix="lossd-compute"
        )

    @property
    def address(self) -> str:
        """``host:port`` clients can dial (the bound port, also when 0 was asked for)."""
        host = self.settings.host
        if host in ("0.0.0.0", "::", "[::]"):
            host = "127.0.0.1"
        return f"{host}:{self.port}"

    @property
    def http_address(self) -> str | None:
        """``host:port`` of the REST front, or None when it is off."""
        if self.http_port is None:
            return None
        return self.address.rsplit(":", 1)[0] + f":{self.http_port}"

    @property
    def pipeline(self) -> Pipeline:
        """The validation and evaluation every front shares (after start)."""
        return self._servicer.pipeline

    async def start(self) -> None:
        """Bind, start serving, and report SERVING on the health service."""
        s = self.settings
        retain_heap(s.heap_reuse_mb * 1024 * 1024)
        limit = s.max_message_bytes
        interceptors = []
        digests = load_token_digests(s.auth_tokens_file) if s.auth_tokens_file is not None else None
        if digests is not None:
            interceptors.append(TokenAuthInterceptor(digests, s.auth_exempt_health, self.metrics.reject))
        # grpc's thread-pool server: it hands a small call to Python with fewer wake-ups than grpc.aio. Unary calls
        # that carry tensors run on a few threads of their own (more only add contention for the GIL; large ones
        # wait there for the compute threads); streams, probes and the rest on the server's own threads, each
        # stream with a thread reading its requests for its asyncio handler (lossd.server.bridge).
        small_calls = ThreadPoolExecutor(max_workers=_small_call_threads(s), thread_name_prefix="lossd-call")
        others = ThreadPoolExecutor(max_workers=_STREAM_THREADS, thread_name_prefix="lossd-rpc")
        readers = ThreadPoolExecutor(max_workers=_STREAM_THREADS, thread_name_prefix="lossd-stream")
        self._pools = [small_calls, others, readers]
        server = grpc.server(others, interceptors=interceptors, options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 1),  # lets --workers processes share the port
        ])
        self.placement = placement_for(self.device, s.gpu_min_elements)
        self.metrics.gpu_min_elements.set(self.placement.gpu_min_elements)
        batching = s.batching == "on" or (s.batching == "auto" and self.device.type == "cuda")
        batcher = Batcher(self._executor, s.batch_max, s.batch_delay_us / 1e6,
                          self.metrics.batch_size.observe) if batching else None
        servicer = LossServicer(self.registry, self.placement, self.metrics, self._executor,
                                max_elements=limit // _BYTES_PER_ELEMENT_FLOOR, inline_bytes=s.inline_bytes,
                                shm=SharedMemoryAccess(s.shm_prefix), max_stream_bytes=s.max_stream_mb << 20,
                                batcher=batcher, max_in_flight=s.max_in_flight,
                                max_request_elements=s.max_request_elements, max_deadline_s=s.max_deadline_seconds,
                                access_log=s.access_log, max_request_memory_bytes=s.max_request_memory_mb << 20,
                                tracer=tracer_for(s.tracing), loop=asyncio.get_running_loop())
        self._servicer = servicer
        _add_loss_service(servicer, server, small_calls, readers)  # first: the generic handlers are asked in order
        models = InferenceModels(self.registry, servicer.pipeline)
        add_inference_service(InferenceServicer(servicer, models), server, small_calls)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, _GenericOnly(server))
        names = (SERVICE_NAME, INFERENCE_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflection.ReflectionServicer(names),
                                                                   _GenericOnly(server))
        address = f"{s.host}:{s.port}"
        if s.tls_cert is not None and s.tls_key is not None:
            self.port = server.add_secure_port(address, server_credentials(s.tls_cert, s.tls_key, s.tls_client_ca))
        else:
            self.port = server.add_insecure_port(address)
        server.start()
        self._server = server
        if s.http_port is not None:
            from lossd.server.rest import RestFront, tls_context  # aiohttp is loaded only for the REST front

            self._rest = RestFront(servicer, models, max_body_bytes=limit, token_digests=digests,
                                   exempt_health=s.auth_exempt_health, on_reject=self.metrics.reject)
            tls = tls_context(s.tls_cert, s.tls_key, s.tls_client_ca) if s.tls_cert and s.tls_key else None
            self.http_port = await self._rest.start(s.host, s.http_port, tls)
        if s.metrics_port:
            self.serve_metrics(s.metrics_host, s.metrics_port)
        for service in ("", SERVICE_NAME):
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        if s.heap_reuse_mb:
            self._trimmer = asyncio.get_running_loop().create_task(self._trim_when_idle())
        metrics_at = f"{s.metrics_host}:{self.metrics_port}" if self.metrics_port else "off"
        http_at = f"{s.host}:{self.http_port}" if self.http_port is not None else "off"
        log.info("lossd %s serving on %s:%d device=%s torch=%s losses=%d metrics=%s http=%s loop=%s",
                 lossd_version(), s.host, self.port, self.device, torch.__version__, len(self.registry), metrics_at,
                 http_at, _loop_name())

    async def _trim_when_idle(self) -> None:
        """Once calls stop for a second, hand the retained heap back (it is kept only while busy)."""
        trimmed_after = 0.0
        while True:
            await asyncio.sleep(_IDLE_TRIM_S / 2)
            last = self._servicer.last_call
            if last > trimmed_after and not self._servicer.active and time.perf_counter() - last >= _IDLE_TRIM_S:
                trim_heap()
                trimmed_after = last

    def serve_metrics(self, host: str, port: int) -> int:
        """Start the Prometheus endpoint on ``host:port`` (0 = any free port); returns the bound port.

        ``start`` calls this when ``metrics_port`` is set; call it yourself for an endpoint on a free port.
        """
        if self._metrics_endpoint is None:
            self._metrics_endpoint = MetricsEndpoint(self.metrics.registry, host, port)
            self.metrics_port = self._metrics_endpoint.port
        return self._metrics_endpoint.port

    async def stop(self, grace: float | None = None) -> None:
        """Health turns NOT_SERVING, new calls are refused, in-flight calls get ``grace`` seconds."""
        if self._server is None:
            return
        if self._trimmer is not None:
            self._trimmer.cancel()
        grace = self.settings.grace_seconds if grace is None else grace
        log.info("lossd stopping: health NOT_SERVING, finishing in-flight calls (grace %.1fs)", grace)
        self._health.enter_graceful_shutdown()
        # Drain first, with the server still taking calls: new ones are refused with UNAVAILABLE (clients
        # retry elsewhere) instead of hanging unanswered in gRPC's core until the grace period runs out.
        self._servicer.begin_drain()
        deadline = time.monotonic() + grace
        while self._servicer.active and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        # Keep refusing a moment longer: calls already on the wire get UNAVAILABLE rather than CANCELLED.
        await asyncio.sleep(max(0.0, min(_LINGER_S, deadline - time.monotonic())))
        stopped = self._server.stop(0)
        await asyncio.get_running_loop().run_in_executor(None, stopped.wait)
        self._server = None
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)
        if self._rest is not None:
            await self._rest.stop()
            self._rest = None
        if self._metrics_endpoint is not None:
            self._metrics_endpoint.close()
            self._metrics_endpoint = None
        self._executor.shutdown(wait=False, cancel_futures=True)
        log.info("lossd stopped")


def _add_loss_service(servicer: LossServicer, server: grpc.Server, small_calls: ThreadPoolExecutor,
                      readers: ThreadPoolExecutor) -> None:
    """Like the generated add_LossServiceServicer_to_server, with the zero-copy wire codec for tensors: Compute and
    Gradient on the pool for small calls, the streams on the event loop (lossd.server.bridge)."""
    plans = servicer.pipeline.plans
    loop = asyncio.get_running_loop()

    def stream(handler: Any) -> Any:
        return stream_stream(handler, loop, readers)

    handlers = {
        "Compute": grpc.unary_unary_rpc_method_handler(  # the plans' parser matches planned requests unparsed
            on_pool(servicer.Compute, small_calls),
            request_deserializer=plans.parse if plans is not None else wire.parse_compute_request,
            response_serializer=wire.serialize_message),
        "Gradient": grpc.unary_unary_rpc_method_handler(
            on_pool(servicer.Gradient, small_calls), request_deserializer=wire.parse_gradient_request,
            response_serializer=wire.serialize_message),
        "ComputeStream": grpc.stream_stream_rpc_method_handler(
            stream(servicer.ComputeStream), request_deserializer=wire.parse_stream_request,
            response_serializer=wire.serialize_stream_part),
        "GradientStream": grpc.stream_stream_rpc_method_handler(
            stream(servicer.GradientStream), request_deserializer=wire.parse_stream_request,
            response_serializer=wire.serialize_stream_part),
        "Pipeline": grpc.stream_stream_rpc_method_handler(
            stream(servicer.Pipeline), request_deserializer=pb.PipelineRequest.FromString,
            response_serializer=pb.PipelineResponse.SerializeToString),
        "ListLosses": grpc.unary_unary_rpc_method_handler(
            servicer.ListLosses, request_deserializer=wire.parse_list_request,
            response_serializer=pb.ListLossesResponse.SerializeToString),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))


class _GenericOnly:
    """A server as generated ``add_*_to_server`` functions see it, taking their handlers as generic ones only:
    found by one dict lookup each, after lossd's own."""

    def __init__(self, server: grpc.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: tuple[grpc.GenericRpcHandler, ...]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        """Ignored: the same handlers arrive through add_generic_rpc_handlers."""


# Threads for streams, probes and the other calls, and for reading the streams' requests: one each per stream open.
_STREAM_THREADS = 64
_MAX_SMALL_CALL_THREADS = 256


def _small_call_threads(settings: ServerSettings) -> int:
    """Threads for the unary calls that carry tensors: two (on two cores, with 1K-element MSE calls from 16
    callers, one thread served 1,607 calls a second, two 2,247 and four 1,977, in one run), or enough for every
    call max_in_flight admits to reach Python, so that the next is shed at once, not queued."""
    threads = settings.unary_threads or 2
    if settings.max_in_flight:
        threads = max(threads, min(settings.max_in_flight + 1, _MAX_SMALL_CALL_THREADS))
    return threads


def _loop_name() -> str:
    """The running loop's kind, for the start line: uvloop or asyncio."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"


async def serve(settings: ServerSettings) -> None:
    """Run a server until SIGTERM or SIGINT, then shut it down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Handlers first: a signal that arrives right after the start line must still stop gracefully.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = LossServer(settings)
    await server.start()
    await stop.wait()
    await server.stop()


class BackgroundServer:
    """A :class:`LossServer` on its own event loop in a daemon thread, for tests and embedding.

    >>> with BackgroundServer(ServerSettings(port=0, metrics_port=0)) as srv:  # doctest: +SKIP
    ...     client = LossClient(srv.address)
    """

    def __init__(self, settings: ServerSettings | None = None, registry: Registry = REGISTRY) -> None:
        self.server = LossServer(settings, registry)
        self._loop = loops.loop_factory(self.server.settings.event_loop)()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lossd-server", daemon=True)

    @property
    def address(self) -> str:
        """Where clients dial."""
        return self.server.address

    @property
    def http_address(self) -> str | None:
        """Where REST clients connect (None when the REST front is off)."""
        return self.server.http_address

    def start(self) -> BackgroundServer:
        """Start the loop thread and the server; returns once it is serving."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=60)
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop the server, then the loop and its thread."""
        asyncio.run_coroutine_threadsafe(self.server.stop(grace), self._loop).result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

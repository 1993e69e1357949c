"""Prometheus metrics of one server, in a registry of its own (so several servers can share a process).

Every label value comes from a fixed set: methods are the RPC names, losses are canonical names
or "unknown" (a client's raw string never becomes a label), codes are gRPC status names.
"""

from __future__ import annotations

import threading
from importlib.metadata import PackageNotFoundError, version
from wsgiref.simple_server import WSGIServer

import grpc
import torch
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server

from lossd.server.series import CounterCell, CounterFamily, HistogramCell, HistogramFamily

UNKNOWN_LOSS = "unknown"

# Loss calls range from ~100 µs (tiny, CPU) to seconds (huge batches); seconds, as Prometheus advises.
_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0, 30.0)


def lossd_version() -> str:
    """The installed distribution's version ("unknown" when running from an uninstalled tree)."""
    try:
        return version("lossd")
    except PackageNotFoundError:
        return "unknown"


class ServerMetrics:
    """The metrics lossd exports, registered in ``self.registry``."""

    def __init__(self, device: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # The series every call touches: plain numbers under one lock (lossd.server.series), so that a call's
        # count, latency, elements and bytes change together and cost a few additions.
        self._calls_lock = threading.Lock()
        calls = self._calls_lock
        self.requests = CounterFamily("lossd_requests", "Calls answered, by method, loss and gRPC status code.",
                                      ["method", "loss", "code"], r, calls)
        self.duration = HistogramFamily("lossd_request_duration_seconds", "Time from receiving a call to "
                                        "answering it.", ["method", "loss"], _LATENCY_BUCKETS, r, calls)
        self.elements = CounterFamily("lossd_elements", "Tensor elements received in successful calls.",
                                      ["method", "loss"], r, calls)
        self.in_flight = Gauge("lossd_requests_in_flight", "Calls being processed now.", ["method"], registry=r)
        self.compute = HistogramFamily("lossd_compute_duration_seconds", "Time spent computing (after "
                                       "validation), by device.", ["device"], _LATENCY_BUCKETS, r)
        self.tensor_bytes = CounterFamily("lossd_tensor_bytes", "Bytes of calls: received (in) and of tensors "
                                          "answered (out).", ["method", "direction"], r, calls)
        self.queue = HistogramFamily("lossd_queue_duration_seconds", "Time from receiving a call to starting its "
                                     "computation (waiting for a thread or a batch).", ["method"],
                                     _LATENCY_BUCKETS, r)
        self.device_memory = Gauge("lossd_device_memory_bytes", "CUDA memory held by tensors: in use now, and the "
                                   "peak since start.", ["device", "kind"], registry=r)
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_open_fds, ...
        self.rejected = Counter("lossd_rejected", "Calls refused before any work, by reason.", ["reason"],
                                registry=r)
        self.batch_size = Histogram("lossd_batch_size", "Requests per dynamically batched launch.",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.gpu_min_elements = Gauge("lossd_gpu_min_elements", "Requests with fewer tensor elements run on the CPU "
                                      "(CUDA servers; 0 otherwise).", registry=r)
        self.build_info = Gauge("lossd_build_info", "Always 1; the labels describe this build.",
                                ["version", "torch", "cuda", "device"], registry=r)
        self.build_info.labels(lossd_version(), torch.__version__, torch.version.cuda or "none", device).set(1)
        # Label values are bounded (methods, canonical loss names, codes), so these caches are too.
        self._children: dict[tuple[str, str, grpc.StatusCode],
                             tuple[CounterCell, HistogramCell, CounterCell, CounterCell, CounterCell]] = {}
        self._compute_children: dict[torch.device, HistogramCell] = {}
        self._queue_children: dict[str, HistogramCell] = {}
        self.calls_in_flight = InFlight(self.in_flight)

    def observe(self, method: str, loss: str, code: grpc.StatusCode, seconds: float, elements: int,
                bytes_in: int = 0, bytes_out: int = 0) -> None:
        """Record one answered call (with its bytes received and its reply's tensor bytes, when answered)."""
        children = self._children.get((method, loss, code))
        if children is None:  # resolve each series once
            children = self._children[(method, loss, code)] = (
                self.requests.cell(method, loss, code.name), self.duration.cell(method, loss),
                self.elements.cell(method, loss), self.tensor_bytes.cell(method, "in"),
                self.tensor_bytes.cell(method, "out"))
        calls, duration, counted, received, sent = children
        with self._calls_lock:
            calls.value += 1
            duration.observe(seconds)
            if code is grpc.StatusCode.OK:
                counted.value += elements
            received.value += bytes_in
            sent.value += bytes_out

    def queued(self, method: str, seconds: float) -> None:
        """Record how long a call waited for a thread or a batch."""
        child = self._queue_children.get(method)
        if child is None:
            child = self._queue_children[method] = self.queue.cell(method)
        with self.queue.lock:
            child.observe(seconds)

    def computed(self, device: torch.device, seconds: float) -> None:
        """Record one computation on ``device`` (and, on CUDA, the memory it leaves held)."""
        child = self._compute_children.get(device)
        if child is None:
            child = self._compute_children[device] = self.compute.cell(str(device))
        with self.compute.lock:
            child.observe(seconds)
        if device.type == "cuda":
            self.device_memory.labels(str(device), "in_use").set(torch.cuda.memory_allocated(device))
            self.device_memory.labels(str(device), "peak").set(torch.cuda.max_memory_allocated(device))

    def reject(self, reason: str) -> None:
        """Count a call refused for ``reason`` (a fixed word: unauthenticated, busy, ...)."""
        self.rejected.labels(reason).inc()



class InFlight:
    """Calls in flight, by method and in all, kept without a lock: a list per method whose length is the count
    (``append`` and ``pop`` are atomic under the GIL, so the server's threads and the event loop count at once
    without taking a lock twice per call). Each method's gauge reads its list's length when scraped."""

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge
        self._calls: dict[str, list[None]] = {}
        self._all: list[None] = []

    def enter(self, method: str) -> None:
        """One more ``method`` call in flight."""
        calls = self._calls.get(method)
        if calls is None:
            calls = self._calls.setdefault(method, [])
            self._gauge.labels(method).set_function(lambda: len(calls))
        calls.append(None)
        self._all.append(None)

    def leave(self, method: str) -> None:
        """One ``method`` call fewer."""
        self._calls[method].pop()
        self._all.pop()

    def now(self, method: str) -> int:
        """``method`` calls in flight."""
        return len(self._calls.get(method, ()))

    @property
    def total(self) -> int:
        """Calls in flight, all methods."""
        return len(self._all)


class MetricsEndpoint:
    """The HTTP endpoint Prometheus scrapes (text exposition format at any path, e.g. /metrics)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        server, thread = start_http_server(port, addr=host, registry=registry)
        self._server: WSGIServer = server
        self._thread = thread
        self.port: int = server.server_port

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

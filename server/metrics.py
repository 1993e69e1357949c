"""Prometheus metrics of one server, in a registry of its own (so several servers can share a process).

Every label value comes from a fixed set: methods are the RPC names, losses are canonical names
or "unknown" (a client's raw string never becomes a label), codes are gRPC status names.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from wsgiref.simple_server import WSGIServer

import grpc
import torch
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

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
        self.requests = Counter("lossd_requests", "Calls answered, by method, loss and gRPC status code.",
                                ["method", "loss", "code"], registry=r)
        self.duration = Histogram("lossd_request_duration_seconds", "Time from receiving a call to answering it.",
                                  ["method", "loss"], buckets=_LATENCY_BUCKETS, registry=r)
        self.elements = Counter("lossd_elements", "Tensor elements received in successful calls.",
                                ["method", "loss"], registry=r)
        self.in_flight = Gauge("lossd_requests_in_flight", "Calls being processed now.", ["method"], registry=r)
        self.build_info = Gauge("lossd_build_info", "Always 1; the labels describe this build.",
                                ["version", "torch", "cuda", "device"], registry=r)
        self.build_info.labels(lossd_version(), torch.__version__, torch.version.cuda or "none", device).set(1)

    def observe(self, method: str, loss: str, code: grpc.StatusCode, seconds: float, elements: int) -> None:
        """Record one answered call."""
        self.requests.labels(method, loss, code.name).inc()
        self.duration.labels(method, loss).observe(seconds)
        if code is grpc.StatusCode.OK:
            self.elements.labels(method, loss).inc(elements)


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

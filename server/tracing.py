"""OpenTelemetry tracing of calls, opt-in: a server span per call that continues the caller's W3C
``traceparent`` (from gRPC metadata or HTTP headers), with ``queue`` and ``compute`` child spans.

It is switched on the standard way, ``OTEL_TRACES_EXPORTER=otlp`` (with ``OTEL_EXPORTER_OTLP_ENDPOINT``;
OTLP over gRPC), or by ``--tracing`` / ``LOSSD_TRACING`` with a tracer provider the embedding program has
configured. Off, nothing of OpenTelemetry is imported and a call pays one attribute test.
"""

from __future__ import annotations

import os
import time
from typing import Any


def tracer_for(enabled: bool) -> Any:
    """The tracer for server spans, or None when tracing is off (it then costs nothing)."""
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not enabled and exporter in ("", "none"):
        return None
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise RuntimeError("tracing needs OpenTelemetry: pip install 'lossd[tracing]'") from exc
    if "otlp" in exporter.split(","):
        _install_otlp(trace)
    return trace.get_tracer("lossd.server")


def _install_otlp(trace: Any) -> None:
    """A tracer provider exporting over OTLP/gRPC (the exporter reads OTEL_EXPORTER_OTLP_* itself), unless the
    program already set one."""
    from opentelemetry.sdk.trace import TracerProvider

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME",
                                                                                       "lossd")}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


class CallSpans:
    """The spans of one traced call: the server span, and its children opened from any thread."""

    def __init__(self, tracer: Any, method: str, metadata: Any, service: str = "lossd.v1.LossService") -> None:
        from opentelemetry import propagate, trace

        self._trace = trace
        carrier = {key: value for key, value in metadata or () if isinstance(value, str)}
        # The REST front's calls are named like the gRPC methods they mirror, under rpc.system "http".
        system = "http" if service.endswith(".http") else "grpc"
        self.span = tracer.start_span(f"{service}/{method}", context=propagate.extract(carrier),
                                      kind=trace.SpanKind.SERVER,
                                      attributes={"rpc.system": system, "rpc.service": service,
                                                  "rpc.method": method})
        self._tracer = tracer
        self._parent = trace.set_span_in_context(self.span)
        self.started_ns = time.time_ns()

    def child(self, name: str, start_time: int | None = None) -> Any:
        """A child span of the call's (the executor threads do not inherit the loop's context)."""
        return self._tracer.start_span(name, context=self._parent, start_time=start_time)

    def finish(self, code: Any, loss: str, elements: int, device: str | None) -> None:
        """End the call's span with its outcome."""
        span = self.span
        span.set_attribute("lossd.loss", loss)
        span.set_attribute("lossd.elements", elements)
        if device:
            span.set_attribute("lossd.device", device)
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code.name != "OK":
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, code.name))
        span.end()

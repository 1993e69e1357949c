"""OpenTelemetry tracing: client and server spans share one trace, carry the call's facts, mark refusals as
errors; a real OTLP exporter reaches a receiver the test runs; tracing off makes no spans."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import numpy as np
import pytest

trace = pytest.importorskip("opentelemetry.trace", reason="tracing is an extra: pip install 'lossd[tracing]'")
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from lossd.client import InvalidArgumentError, LossClient  # noqa: E402
from lossd.server import BackgroundServer, ServerSettings  # noqa: E402

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def traced_server() -> Iterator[BackgroundServer]:
    """A server with tracing on, in this process, whose spans (and the client's) go to EXPORTER."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    with BackgroundServer(ServerSettings(port=0, metrics_port=0, http_port=0, device="cpu", tracing=True)) as srv:
        yield srv


def _spans(name: str) -> list:
    return [s for s in EXPORTER.get_finished_spans() if s.name == name or s.name in ("queue", "compute")]


def test_client_and_server_spans_share_one_trace(traced_server: BackgroundServer) -> None:
    """The server span continues the client's traceparent and records loss, elements, device and status;
    queue and compute are its children."""
    EXPORTER.clear()
    with LossClient(traced_server.address, tracing=True) as c:
        c.compute("MSELoss", input=np.ones(4, np.float32), target=np.zeros(4, np.float32))
    spans = {(s.name, s.kind): s for s in EXPORTER.get_finished_spans()}
    client = spans[("lossd.v1.LossService/Compute", trace.SpanKind.CLIENT)]
    server = spans[("lossd.v1.LossService/Compute", trace.SpanKind.SERVER)]
    assert server.context.trace_id == client.context.trace_id
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert {k: server.attributes[k] for k in ("rpc.method", "lossd.loss", "lossd.elements", "lossd.device",
                                              "rpc.grpc.status_code")} == {
        "rpc.method": "Compute", "lossd.loss": "mse", "lossd.elements": 8, "lossd.device": "cpu",
        "rpc.grpc.status_code": 0}
    for child in ("queue", "compute"):
        assert spans[(child, trace.SpanKind.INTERNAL)].parent.span_id == server.context.span_id


def test_a_refusal_marks_the_server_span_as_an_error(traced_server: BackgroundServer) -> None:
    """INVALID_ARGUMENT: the span's status is ERROR and its gRPC code 3."""
    EXPORTER.clear()
    with LossClient(traced_server.address, tracing=True) as c, pytest.raises(InvalidArgumentError):
        c.compute("huber", input=np.ones(2), target=np.ones(2), delta=-1.0)
    [server] = [s for s in EXPORTER.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    assert server.status.status_code == trace.StatusCode.ERROR and server.attributes["rpc.grpc.status_code"] == 3


def test_streamed_calls_are_traced_too(traced_server: BackgroundServer) -> None:
    """A call over GradientStream gets its own server span, with the loss and elements."""
    EXPORTER.clear()
    x = np.ones(50_000, np.float32)
    with LossClient(traced_server.address, tracing=True, stream_mb=0.01) as c:
        c.gradient("mae", input=x, target=x * 0)
    [server] = [s for s in EXPORTER.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    assert server.name == "lossd.v1.LossService/GradientStream"
    assert server.attributes["lossd.loss"] == "mae" and server.attributes["lossd.elements"] == 100_000


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def test_a_v2_grpc_call_continues_the_callers_traceparent(traced_server: BackgroundServer) -> None:
    """ModelInfer with a traceparent in its metadata: the server span is in that trace, under that parent."""
    from lossd.oip import grpc_predict_v2_pb2 as v2
    from lossd.oip import grpc_predict_v2_pb2_grpc as v2_grpc

    EXPORTER.clear()
    request = v2.ModelInferRequest(model_name="MSELoss")
    for name in ("input", "target"):
        request.inputs.add(name=name, datatype="FP32", shape=[2])
        request.raw_input_contents.append(np.ones(2, np.float32).tobytes())
    with grpc.insecure_channel(traced_server.address) as channel:
        v2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10,
                                                             metadata=(("traceparent", TRACEPARENT),))
    [server] = [s for s in EXPORTER.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    assert server.name == "inference.GRPCInferenceService/ModelInfer"
    assert f"{server.context.trace_id:032x}" == TRACE_ID and f"{server.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert (server.attributes["rpc.method"], server.attributes["lossd.loss"]) == ("ModelInfer", "mse")


@pytest.mark.parametrize(("body", "error"), [(b'{"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", '
                                              b'"data": [1]}, {"name": "target", "shape": [1], "datatype": "FP32", '
                                              b'"data": [0]}]}', False), (b"{not json", True)])
def test_a_rest_call_continues_the_traceparent_header(traced_server: BackgroundServer, body: bytes,
                                                      error: bool) -> None:
    """A REST infer with a traceparent header joins that trace; a refusal marks its span as an error."""
    import urllib.error
    import urllib.request

    EXPORTER.clear()
    url = f"http://{traced_server.http_address}/v2/models/mae/infer"
    try:
        urllib.request.urlopen(urllib.request.Request(url, data=body, headers={"traceparent": TRACEPARENT}),
                               timeout=10).read()
    except urllib.error.HTTPError as exc:
        assert exc.code == 400
    [server] = [s for s in EXPORTER.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    assert server.name == "inference.http/HttpModelInfer" and server.attributes["rpc.system"] == "http"
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert (server.status.status_code == trace.StatusCode.ERROR) is error


def test_tracing_off_makes_no_spans(traced_server: BackgroundServer, server: BackgroundServer) -> None:
    """A server and client with tracing off (the defaults) record nothing, even with a provider installed."""
    EXPORTER.clear()
    with LossClient(server.address) as c:
        c.compute("mse", input=np.ones(2), target=np.zeros(2))
    assert EXPORTER.get_finished_spans() == ()


class _Receiver:
    """An OTLP/gRPC trace receiver on loopback that keeps what it is sent."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        self.spans: list = []
        receiver = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # type: ignore[no-untyped-def]
                receiver.spans += [s for r in request.resource_spans for ss in r.scope_spans for s in ss.spans]
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()


def test_otlp_exporter_sends_the_server_spans_to_a_receiver(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``OTEL_TRACES_EXPORTER=otlp`` with an endpoint: a served call's span reaches the OTLP receiver."""
    receiver = _Receiver()
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:"
           f"{receiver.port}", "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    proc = subprocess.Popen([sys.executable, "-m", "lossd.server", "--port", "0", "--metrics-port", "0", "--device",
                             "cpu"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        port = None
        for line in proc.stdout:  # bounded: the server prints where it serves, or exits
            if "serving on" in line:
                port = int(line.rsplit(":", 1)[1].split()[0])
                break
        assert port is not None
        with LossClient(f"127.0.0.1:{port}") as c:
            c.compute("mse", input=np.ones(3), target=np.zeros(3))
        deadline = time.monotonic() + 20
        while not receiver.spans and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        receiver.server.stop(0)
    names = {s.name for s in receiver.spans}
    assert "lossd.v1.LossService/Compute" in names

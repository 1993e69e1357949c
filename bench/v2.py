"""The Open Inference Protocol's fronts against their ceilings, side by side in one run: V2 gRPC ModelInfer
against the raw-bytes gRPC echo, and REST (binary tensor extension, and JSON) against an HTTP echo on the
same stack. Each echo moves as many bytes each way as lossd does and parses nothing."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import torch.nn.functional as F

from lossd.bench.measure import paired_latency
from lossd.bench.processes import ServerProcess
from lossd.oip import grpc_predict_v2_pb2 as v2
from lossd.v1 import wire

MiB = 1 << 20
_RAW_INPUT = wire.varint(7 << 3 | 2)  # ModelInferRequest.raw_input_contents
_DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}


def _head(model: str, arrays: dict[str, np.ndarray], outputs: tuple[str, ...]) -> bytes:
    request = v2.ModelInferRequest(model_name=model)
    for name, a in arrays.items():
        request.inputs.add(name=name, datatype=_DATATYPES[a.dtype], shape=a.shape)
    for name in outputs:
        request.outputs.add(name=name)
    return request.SerializeToString()


def grpc_request(model: str, arrays: dict[str, np.ndarray], outputs: tuple[str, ...] = ()) -> Callable[[], bytes]:
    """A ModelInferRequest built as a V2 client at its fastest builds one: the message without the tensors,
    then each tensor's bytes as a raw_input_contents entry, copied once into the request."""
    head = _head(model, arrays, outputs)
    parts: list[Any] = [head]
    for a in arrays.values():
        parts += [_RAW_INPUT + wire.varint(a.nbytes), memoryview(a).cast("B")]
    return lambda: b"".join(parts)


def http_request(arrays: dict[str, np.ndarray], outputs: tuple[str, ...] = ()) -> tuple[Callable[[], bytes], int]:
    """An infer body with Triton's binary tensor extension (the JSON header, then the tensors' bytes, copied
    once into the body), and the header's length."""
    header = {"inputs": [{"name": n, "shape": list(a.shape), "datatype": _DATATYPES[a.dtype],
                          "parameters": {"binary_data_size": a.nbytes}} for n, a in arrays.items()],
              "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in outputs]}
    head = json.dumps(header).encode()
    views = [memoryview(a).cast("B") for a in arrays.values()]
    return lambda: b"".join([head, *views]), len(head)


class Http:
    """One kept-alive HTTP/1.1 connection."""

    def __init__(self, port: int) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        self._conn.request("POST", path, body=body, headers=headers)
        response = self._conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status}: {data[:300]!r}")
        return data

    def close(self) -> None:
        self._conn.close()


def run_v2(lossd: ServerProcess, echo_call: grpc.UnaryUnaryMultiCallable, http_echo: ServerProcess, quick: bool,
           row: Callable[..., Any]) -> list[Any]:
    """The rows: V2 gRPC and REST binary for small and large calls, REST JSON for a small one."""
    rng = np.random.default_rng(0)
    small = {"input": rng.random(1024, np.float32), "target": rng.random(1024, np.float32)}
    large = {"input": rng.random(4 * MiB, np.float32), "target": rng.random(4 * MiB, np.float32)}
    rows = []
    with grpc.insecure_channel(lossd.address, options=[("grpc.max_receive_message_length", 1 << 30),
                                                        ("grpc.max_send_message_length", 1 << 30)]) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")  # bytes both ways
        few, many = ((150, 5.0), (8, 10.0)) if quick else ((600, 20.0), (30, 60.0))
        for name, arrays, outputs, (n, budget) in (
                ("V2 gRPC MSE 1K floats, c=1", small, (), few),
                ("V2 gRPC MSE 4M floats value+grad", large, ("loss", "grad_input"), many)):
            build = grpc_request("mse", arrays, outputs)
            reply = len(infer(build(), timeout=120))
            metadata = (("reply-bytes", str(reply)),)
            floor = ((lambda a=arrays: F.mse_loss(*(torch_from(a))).item()) if not outputs else
                     _floor_grad(arrays))
            ours, echo, floor_s = (lat.median for lat in paired_latency([
                lambda b=build: infer(b(), timeout=120),
                lambda b=build, m=metadata: echo_call(b(), metadata=m, timeout=120),
                floor,
            ], n, budget))
            rows.append(row(name, "ms", ours * 1e3, echo * 1e3, floor_s * 1e3, ours / echo, "<= 1.5x echo",
                            ours / echo <= 1.5))
    lossd_http, echo_http = Http(lossd.http_port), Http(http_echo.port)
    try:
        body, header_length = http_request(large, ("loss", "grad_input"))
        headers = {"Inference-Header-Content-Length": str(header_length)}
        path = "/v2/models/mse/infer"
        reply = len(lossd_http.post(path, body(), headers))
        n, budget = (8, 10.0) if quick else (30, 60.0)
        ours, echo = (lat.median for lat in paired_latency([
            lambda: lossd_http.post(path, body(), headers),
            lambda: echo_http.post("/echo", body(), {"reply-bytes": str(reply)}),
        ], n, budget))
        rows.append(row("REST binary MSE 4M floats value+grad", "ms", ours * 1e3, echo * 1e3, None, ours / echo,
                        "<= 1.5x echo", ours / echo <= 1.5))

        def json_body() -> bytes:  # the caller's encoding, paid alike by both calls
            return json.dumps({"inputs": [{"name": k, "shape": [1024], "datatype": "FP32", "data": a.tolist()}
                                          for k, a in small.items()]}).encode()
        reply = len(lossd_http.post(path, json_body(), {}))
        n, budget = (150, 5.0) if quick else (600, 20.0)
        ours, echo = (lat.median for lat in paired_latency([
            lambda: lossd_http.post(path, json_body(), {}),
            lambda: echo_http.post("/echo", json_body(), {"reply-bytes": str(reply)}),
        ], n, budget))
        rows.append(row("REST JSON MSE 1K floats, c=1", "ms", ours * 1e3, echo * 1e3, None, ours / echo,
                        "<= 1.5x echo", ours / echo <= 1.5))
    finally:
        lossd_http.close()
        echo_http.close()
    return rows


def torch_from(arrays: dict[str, np.ndarray]) -> list[Any]:
    import torch

    return [torch.from_numpy(a) for a in arrays.values()]


def _floor_grad(arrays: dict[str, np.ndarray]) -> Callable[[], object]:
    import torch

    def run() -> object:
        x, y = torch_from(arrays)
        x.requires_grad_(True)
        value = F.mse_loss(x, y)
        (grad,) = torch.autograd.grad(value, [x])
        return value.item(), grad.numpy()
    return run

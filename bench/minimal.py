"""The same work without lossd: a minimal service that answers lossd.v1 Compute calls with MSE and nothing else.

The echo (lossd.bench.echo) measures the transport alone; this measures the transport plus the computation, done
the fastest way found for a Python gRPC service: parse the request with protobuf, view both tensors with
``np.frombuffer``, take the mean of squares with the kernels lossd itself uses for small requests (numpy's
subtract and dot, lossd.losses.small), answer a ComputeResponse. It has none of lossd's machinery: no validation,
limits, metrics, request ids, placement or streaming; it ignores the loss name and reduction and assumes float32
``input`` and ``target`` sent as raw bytes. What lossd costs above it is what those features cost per call.

It runs on grpc's thread-pool server with two threads: with 1K-element calls from 16 callers on two cores that
answered about 0.8x the echo's rate, where sixteen threads lost a quarter of that to contention for the GIL and
grpc.aio (with uvloop) reached about 0.7x. ``python -m lossd.bench.minimal`` prints ``port=N`` once serving.
"""

from __future__ import annotations

import argparse
import struct

import grpc
import numpy as np

from lossd.bench.echo import serve_threads
from lossd.v1 import loss_service_pb2 as pb

THREADS = 2
_FLOAT = struct.Struct("<f")


def mse_reply(request: bytes, context: grpc.ServicerContext | None = None) -> bytes:
    """A serialized ComputeResponse holding mean((input - target)^2) of a serialized ComputeRequest's float32
    ``input`` and ``target`` (1-D views of their raw bytes)."""
    inputs = pb.ComputeRequest.FromString(request).inputs
    x = np.frombuffer(inputs["input"].raw_data, np.float32)
    y = np.frombuffer(inputs["target"].raw_data, np.float32)
    diff = x - y
    value = float(np.dot(diff, diff)) / diff.size
    reply = pb.ComputeResponse(loss_name="mse", reduction="mean", device="cpu")
    reply.loss.dtype = pb.DTYPE_FLOAT32
    reply.loss.raw_data = _FLOAT.pack(value)
    return reply.SerializeToString()


def main() -> None:
    """Serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description="a minimal MSE service: lossd's work without lossd's features")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    handler = grpc.method_handlers_generic_handler("lossd.v1.LossService", {
        "Compute": grpc.unary_unary_rpc_method_handler(mse_reply),  # raw bytes in and out: parsed in the handler
    })
    serve_threads(args.host, args.port, handler, THREADS)


if __name__ == "__main__":
    main()

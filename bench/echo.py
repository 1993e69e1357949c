"""The ceiling: a gRPC server that does nothing but receive bytes and answer a reply of a given size.

It treats requests as opaque bytes (no protobuf parsing), with lossd's message limits, so it measures the
transport alone. The client asks for the reply size in the ``reply-bytes`` metadata, so an echo of a
value+gradient call answers as many bytes as lossd's reply does. It runs on grpc.aio, as lossd does (on the
same event loop: uvloop when installed, see lossd.server.loops), or with ``--sync`` on grpc's thread-pool
server: which of the two is faster depends on the machine and the
concurrency (the sync server usually answers one call at a time sooner), so the benchmark measures both
and holds lossd to the faster. ``python -m lossd.bench.echo`` prints ``port=N`` once serving.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
from concurrent import futures

import grpc

from lossd.server import loops

METHOD = "/lossd.bench.Echo/Echo"
_LIMIT = 1 << 30
_OPTIONS = [("grpc.max_receive_message_length", _LIMIT), ("grpc.max_send_message_length", _LIMIT)]
# The sync server's threads: one per concurrent call of the benchmark's busiest scenario (c=16).
SYNC_THREADS = 16
_replies: dict[int, bytes] = {}


def _reply(context: grpc.ServicerContext) -> bytes:
    size = int(dict(context.invocation_metadata()).get("reply-bytes", "0"))
    reply = _replies.get(size)
    if reply is None:  # one buffer per size: the ceiling pays no allocation per call
        reply = _replies[size] = bytes(size)
    return reply


def _handler(behaviour: object) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler("lossd.bench.Echo", {
        "Echo": grpc.unary_unary_rpc_method_handler(behaviour),  # no (de)serializers: raw bytes both ways
    })


def serve_threads(host: str, port: int, handler: grpc.GenericRpcHandler, threads: int = SYNC_THREADS) -> None:
    """Serve ``handler`` on grpc's thread-pool server with lossd's message limits until SIGTERM/SIGINT, printing
    ``port=N`` once serving (lossd.bench.processes waits for that line)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads), options=_OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"port={bound}", flush=True)
    stop.wait()
    server.stop(1)


async def _serve(host: str, port: int) -> None:
    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return _reply(context)

    server = grpc.aio.server(options=_OPTIONS)
    server.add_generic_rpc_handlers((_handler(echo),))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print(f"port={bound}", flush=True)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    """Serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description="raw-bytes gRPC echo (lossd's benchmark ceiling)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sync", action="store_true", help="grpc's thread-pool server instead of grpc.aio")
    parser.add_argument("--event-loop", default="auto", choices=loops.KINDS,
                        help="grpc.aio's loop, as lossd serve's --event-loop (default auto)")
    args = parser.parse_args()
    if args.sync:
        serve_threads(args.host, args.port, _handler(lambda request, context: _reply(context)))
    else:
        loops.run(_serve(args.host, args.port), args.event_loop)


if __name__ == "__main__":
    main()

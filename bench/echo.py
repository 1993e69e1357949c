"""The ceiling: a gRPC server that does nothing but receive bytes and answer a reply of a given size.

It runs on the same grpc.aio server as lossd, with the same message limits, and treats requests
as opaque bytes (no protobuf parsing), so it measures the transport alone. The client asks for the
reply size in the ``reply-bytes`` metadata, so an echo of a value+gradient call answers as many bytes
as lossd's reply does. ``python -m lossd.bench.echo`` prints ``port=N`` once serving.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc

METHOD = "/lossd.bench.Echo/Echo"
_LIMIT = 1 << 30


async def _serve(host: str, port: int) -> None:
    replies: dict[int, bytes] = {}

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        size = int(dict(context.invocation_metadata()).get("reply-bytes", "0"))
        reply = replies.get(size)
        if reply is None:  # one buffer per size: the ceiling pays no allocation per call
            reply = replies[size] = bytes(size)
        return reply

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", _LIMIT),
                                      ("grpc.max_send_message_length", _LIMIT)])
    handler = grpc.method_handlers_generic_handler("lossd.bench.Echo", {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),  # no (de)serializers: raw bytes both ways
    })
    server.add_generic_rpc_handlers((handler,))
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
    args = parser.parse_args()
    asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()

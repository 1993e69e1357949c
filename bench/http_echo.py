"""The REST ceiling: an HTTP server on the same stack as lossd's REST front (aiohttp, on the loop lossd serves on:
uvloop when installed) that
reads the body the same way (one copy, lossd.server.rest_codec.read_body) and answers as many bytes as asked for
in ``reply-bytes``, parsing nothing. ``python -m lossd.bench.http_echo`` prints ``port=N`` once serving."""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web

from lossd.server import loops
from lossd.server.rest_codec import read_body


async def _serve(host: str, port: int) -> None:
    replies: dict[int, bytes] = {}

    async def echo(request: web.Request) -> web.Response:
        await read_body(request)
        size = int(request.headers.get("reply-bytes", "0"))
        reply = replies.get(size)
        if reply is None:  # one buffer per size: the ceiling pays no allocation per call
            reply = replies[size] = bytes(size)
        return web.Response(body=reply, content_type="application/octet-stream")

    app = web.Application(client_max_size=1 << 30)
    app.add_routes([web.post("/echo", echo)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    print(f"port={runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    """Serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description="raw-bytes HTTP echo (the REST front's benchmark ceiling)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--event-loop", default="auto", choices=loops.KINDS, help="as lossd serve's --event-loop")
    args = parser.parse_args()
    loops.run(_serve(args.host, args.port), args.event_loop)


if __name__ == "__main__":
    main()

"""Which asynchronous HTTP stack the REST front runs on: the candidates side by side, in one run.

Each stack serves the same handler in a process of its own on loopback: read the body, parse the JSON (a
small infer request), answer a small JSON reply; and a 4 MiB binary body (Triton's binary tensor extension)
read whole and answered with its length. aiohttp runs twice: reading the body with ``request.read()``, and
into one buffer of the declared length as lossd.server.rest_codec does; uvicorn on asyncio's own loop and
on uvloop (grpc.aio and the REST front share one loop: uvloop when installed, see lossd.server.loops). One
client process sends the requests one after another over a kept-alive connection (http.client), so the
figure is each stack's own cost per request. Run with the candidates installed (``pip install aiohttp
uvicorn[standard] starlette``): ``python bench/http_stacks.py``. Stacks that are not installed are skipped.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time

SMALL = json.dumps({"inputs": [{"name": "input", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]},
                               {"name": "target", "shape": [4], "datatype": "FP32", "data": [0, 0, 0, 0]}]}).encode()
LARGE = b"\0" * (4 << 20)
REPLY = {"model_name": "mse", "outputs": [{"name": "loss", "datatype": "FP32", "shape": [], "data": [7.5]}]}

SERVERS = {
    "aiohttp": """
import json, sys
from aiohttp import web
async def small(request):
    json.loads(await request.read())
    return web.json_response(REPLY)
async def large(request):
    return web.json_response({"bytes": len(await request.read())})
app = web.Application(client_max_size=64 << 20)
app.add_routes([web.post("/small", small), web.post("/large", large)])
web.run_app(app, host="127.0.0.1", port=PORT, access_log=None, print=None)
""",
    "aiohttp, body read into one buffer": """
import json, sys
from aiohttp import web
async def read(request):
    # One copy: the chunks go straight into a buffer of the declared length (request.read() joins them into a
    # growing bytearray, then copies that into bytes).
    body = bytearray(request.content_length or 0)
    view, at = memoryview(body), 0
    while chunk := await request.content.readany():
        view[at:at + len(chunk)] = chunk
        at += len(chunk)
    return body
async def small(request):
    json.loads(await read(request))
    return web.json_response(REPLY)
async def large(request):
    return web.json_response({"bytes": len(await read(request))})
app = web.Application(client_max_size=64 << 20)
app.add_routes([web.post("/small", small), web.post("/large", large)])
web.run_app(app, host="127.0.0.1", port=PORT, access_log=None, print=None)
""",
    "uvicorn+starlette": """
import json
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
async def small(request):
    json.loads(await request.body())
    return JSONResponse(REPLY)
async def large(request):
    return JSONResponse({"bytes": len(await request.body())})
app = Starlette(routes=[Route("/small", small, methods=["POST"]), Route("/large", large, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=PORT, access_log=False, log_level="warning", loop=LOOP)
""",
}
# uvicorn picks uvloop when it is installed, as lossd serve does (--event-loop auto); the REST front shares
# grpc.aio's loop, so each variant compares with lossd on the same loop.
SERVERS["uvicorn+starlette, asyncio loop"] = "LOOP = 'asyncio'\n" + SERVERS["uvicorn+starlette"]
SERVERS["uvicorn+starlette, uvloop"] = "LOOP = 'uvloop'\n" + SERVERS.pop("uvicorn+starlette")
NEEDS = {"aiohttp": ["aiohttp"], "aiohttp, body read into one buffer": ["aiohttp"],
         "uvicorn+starlette, asyncio loop": ["uvicorn", "starlette", "httptools"],
         "uvicorn+starlette, uvloop": ["uvicorn", "starlette", "httptools", "uvloop"]}

CLIENT = """
import http.client, sys, time
port, path, count, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
body = SMALL if size == 0 else b"\\0" * size
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
for _ in range(20):  # warm up
    conn.request("POST", path, body=body); conn.getresponse().read()
started = time.perf_counter()
for _ in range(count):
    conn.request("POST", path, body=body)
    response = conn.getresponse(); response.read()
    assert response.status == 200
print(time.perf_counter() - started)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _installed(modules: list[str]) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)


def _wait(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no server on port {port}")


def measure(stack: str, count: int) -> tuple[float, float]:
    """(µs per small JSON request, MiB/s of 4 MiB bodies) for ``stack``."""
    port = _free_port()
    code = f"REPLY = {REPLY!r}\nPORT = {port}\n" + SERVERS[stack]
    server = subprocess.Popen([sys.executable, "-c", code])
    try:
        _wait(port, time.monotonic() + 30)
        client = f"SMALL = {SMALL!r}\n" + CLIENT
        small = float(subprocess.run([sys.executable, "-c", client, str(port), "/small", str(count), "0"],
                                     capture_output=True, text=True, check=True, timeout=600).stdout)
        large_count = max(1, count // 50)
        large = float(subprocess.run([sys.executable, "-c", client, str(port), "/large", str(large_count),
                                      str(len(LARGE))], capture_output=True, text=True, check=True,
                                     timeout=600).stdout)
        return small / count * 1e6, large_count * len(LARGE) / (1 << 20) / large
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="small requests per stack (default 3000)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, stacks alternating (default 2)")
    args = parser.parse_args()
    stacks = [s for s in SERVERS if _installed(NEEDS[s])]
    print(f"{'stack':<32} {'round':>5} {'small JSON, µs/request':>24} {'4 MiB bodies, MiB/s':>20}")
    for round_ in range(1, args.rounds + 1):
        for stack in stacks:
            per_request, throughput = measure(stack, args.requests)
            print(f"{stack:<32} {round_:>5} {per_request:>24.0f} {throughput:>20.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

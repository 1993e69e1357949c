"""The event loop lossd serves on: uvloop where it is installed (the server extra brings it on Linux and
macOS), else asyncio's own.

The loop runs the streaming RPCs (lossd.server.bridge), the REST front (aiohttp) and the batcher; unary gRPC calls
run on the server's threads. uvloop's wake-ups cost less: when unary calls ran on grpc.aio, a small call's server
CPU measured about 10% lower at one call at a time and 5% lower at 16.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
KINDS = ("auto", "uvloop", "asyncio")


def chosen(kind: str) -> str:
    """The loop ``kind`` (auto, uvloop, asyncio) means here: auto is uvloop when it can be imported."""
    if kind not in KINDS:
        raise ValueError(f"event_loop: {kind!r}; expected one of: {', '.join(KINDS)}")
    if kind == "auto":
        return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    if kind == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise ValueError("event_loop: uvloop is not installed (pip install uvloop, or 'lossd[server]' on "
                         "Linux and macOS); use auto or asyncio")
    return kind


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A function making a new loop of ``kind`` (see :func:`chosen`)."""
    if chosen(kind) == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], kind: str) -> T:
    """``asyncio.run(main)`` on a loop of ``kind``."""
    if chosen(kind) == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)

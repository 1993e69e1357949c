"""Streaming handlers written for asyncio, served by grpc's thread-pool server.

Unary calls run on the server's threads (lossd.server.servicer.LossServicer.serve_sync); the streaming RPCs keep
their asyncio implementations (ComputeStream, GradientStream, Pipeline), run on lossd's event loop. For each such
call :func:`stream_stream` gives the server a handler that reads the request stream on a thread of its own,
hands each message to the loop, and yields what the asyncio handler yields or writes, as it comes. The handler
sees a context with grpc.aio's methods (``abort`` and ``write`` awaitable); when the call ends early (the caller
cancels, the deadline passes, the server stops) the coroutine is cancelled, as grpc.aio would cancel it.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from typing import Any

import grpc

_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Requests:
    """The call's request iterator as an async iterator on the loop, read by a thread of ``readers``."""

    def __init__(self, requests: Iterator[Any], loop: asyncio.AbstractEventLoop, readers: futures.Executor) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._loop = loop
        readers.submit(self._read, requests)

    def _read(self, requests: Iterator[Any]) -> None:
        put = self._queue.put_nowait
        try:
            for message in requests:
                self._loop.call_soon_threadsafe(put, message)
            self._loop.call_soon_threadsafe(put, _END)
        except Exception as exc:  # the call ended while reading (grpc raises from the iterator)
            self._loop.call_soon_threadsafe(put, _Failed(exc))

    def __aiter__(self) -> _Requests:
        return self

    async def __anext__(self) -> Any:
        message = await self._queue.get()
        if message is _END:
            self._queue.put_nowait(_END)  # read again after the end: still the end
            raise StopAsyncIteration
        if isinstance(message, _Failed):
            raise asyncio.CancelledError  # the call is over: nothing more will come, nothing can be sent
        return message


class AioContext:
    """A grpc.aio-style context over a thread-pool server's ``context``, for a handler running on the loop."""

    def __init__(self, context: grpc.ServicerContext, replies: queue.SimpleQueue[Any]) -> None:
        self._context = context
        self._replies = replies

    async def abort(self, code: grpc.StatusCode, details: str = "",
                    trailing_metadata: tuple[tuple[str, str | bytes], ...] = ()) -> None:
        """End the call with ``code`` (raises, as grpc.aio's abort does)."""
        if trailing_metadata:
            self._context.set_trailing_metadata(trailing_metadata)
        self._context.abort(code, details)

    async def write(self, message: Any) -> None:
        """Send ``message`` on the stream."""
        self._replies.put(message)

    def __getattr__(self, name: str) -> Any:  # invocation_metadata, set_trailing_metadata, time_remaining, peer...
        return getattr(self._context, name)


def stream_stream(handler: Callable[[AsyncIterator[Any], AioContext], Any], loop: asyncio.AbstractEventLoop,
                  readers: futures.Executor) -> Callable[[Iterator[Any], grpc.ServicerContext], Iterator[Any]]:
    """A thread-pool server's stream-stream handler for ``handler``: an async generator (what it yields is sent)
    or a coroutine (what it writes is sent), run on ``loop``; ``readers`` are the threads that read requests."""
    def serve(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        replies: queue.SimpleQueue[Any] = queue.SimpleQueue()

        async def drive() -> None:
            try:
                produced = handler(_Requests(requests, loop, readers), AioContext(context, replies))
                if hasattr(produced, "__aiter__"):
                    async for reply in produced:
                        replies.put(reply)
                else:
                    await produced
                replies.put(_END)
            except BaseException as exc:
                replies.put(_Failed(exc))

        running = asyncio.run_coroutine_threadsafe(drive(), loop)
        # Cancelled before it started, drive() never runs: end the wait for its replies all the same.
        running.add_done_callback(lambda done: replies.put(_END) if done.cancelled() else None)
        if not context.add_callback(running.cancel):
            running.cancel()
        while True:
            reply = replies.get()
            if reply is _END:
                return
            if isinstance(reply, _Failed):
                if isinstance(reply.error, asyncio.CancelledError):
                    return  # the call ended early: nothing more to send
                raise reply.error
            yield reply

    return serve

"""Pipelined requests: many small Compute calls over one Pipeline stream, results in request order.

The caller's requests are encoded as they are pulled (at most ``depth`` ahead of the results taken), packed
several to a message when several may go, and answered by the server as they complete; results are handed
back in request order. Items are framed by hand (an id, the encoded ComputeRequest, a deadline), the
tensors' bytes copied once, as in a unary call. The sync and asyncio clients share all but the I/O.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any

import grpc

from lossd.client._errors import LossError, ResourceExhaustedError, from_rpc_error, from_status
from lossd.client._requests import Value, loss_of
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import wire

METHOD = "/lossd.v1.LossService/Pipeline"
# A message carries at most this many bytes of items (far inside any message limit) ...
_MESSAGE_BYTES = 1 << 20
# ... and at most half the window, so that one message is computed while the next travels.
_HALF = 2
_END = object()  # the end of the caller's requests, for a coroutine (which must not raise StopIteration)


def frame(item_id: int, payload: bytes, timeout_ms: int) -> bytes:
    """``PipelineRequest.items`` entry for one encoded ComputeRequest (fields 1, 2 and 4 of PipelineItem)."""
    body = b"".join((b"\x08", wire._varint(item_id), b"\x12", wire._varint(len(payload)), payload,
                     b"\x20" + wire._varint(timeout_ms) if timeout_ms else b""))
    return b"".join((b"\x0a", wire._varint(len(body)), body))


def check_depth(depth: int) -> int:
    """The window: how many requests may be sent before the first result is taken."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    return depth


def timeout_ms(timeout: float | None) -> int:
    """A per-request timeout in seconds as PipelineItem.timeout_ms (0: none)."""
    if timeout is None:
        return 0
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    return max(1, min(2**32 - 1, math.ceil(timeout * 1e3)))


class Encoder:
    """Turns the caller's role→array mappings into framed items, and results back into values or errors."""

    def __init__(self, client: Any, loss: str, reduction: str, params: Mapping[str, Any], timeout: float | None,
                 depth: int, max_message_bytes: int) -> None:
        self._client = client
        self._loss = loss
        self._reduction = reduction
        self._params = dict(params)
        self._timeout_ms = timeout_ms(timeout)
        self.depth = check_depth(depth)
        self.per_message = max(1, depth // _HALF)
        self.budget = min(_MESSAGE_BYTES, max_message_bytes // 2)
        self._limit = max_message_bytes

    def item(self, item_id: int, request: Mapping[str, Any]) -> bytes | LossError:
        """The framed item for ``request``, or the error that refuses it here (a request too large for one
        message; it belongs to ``compute``, which streams large tensors)."""
        if not isinstance(request, Mapping):
            raise TypeError(f"each request must be a mapping of role names to arrays, got {type(request).__name__}")
        call = self._client._compute_call(self._loss, self._reduction, request, self._params, {})
        if call.payload is None or len(call.payload) > self._limit - 64:
            return ResourceExhaustedError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request {item_id} is too large for one pipeline message (limit {self._limit} bytes); "
                "send it with compute(), which streams large tensors")
        return frame(item_id, call.payload, self._timeout_ms)


def outcome(result: pb.PipelineResult) -> Value | LossError:
    """What ``compute`` would have returned for this item, or its error."""
    kind = result.WhichOneof("outcome")
    if kind == "compute":
        return loss_of(wire.Parsed(result.compute))
    if kind == "error":
        return from_status(result.error, result.request_id)
    return LossError(grpc.StatusCode.INTERNAL, f"the server answered item {result.id} with no outcome")


def missing(count: int, answered: int) -> LossError:
    """The error for a stream that ended before every item was answered."""
    return LossError(grpc.StatusCode.INTERNAL, f"the pipeline ended after {answered} of {count} results")


class _Window:
    """What both clients track: items sent, results waiting to be taken in order, the caller's own failure."""

    def __init__(self, return_errors: bool) -> None:
        self.return_errors = return_errors
        self.sent = 0  # ids handed out (sent, or refused here)
        self.taken = 0  # results handed back
        self.results: dict[int, Any] = {}  # id -> PipelineResult from the server, or a LossError from here
        self.failure: tuple[int, BaseException] | None = None  # the caller's iterator (or a request) raised
        self.done = False  # the caller's requests are exhausted (or failed)

    def ready(self) -> Any:
        """The next result in order, if it is here: (value or error, whether it held server credit)."""
        if self.taken in self.results:
            found = self.results.pop(self.taken)
            self.taken += 1
            if isinstance(found, LossError):
                return found, False
            return outcome(found), True
        return None

    def fail(self, exc: BaseException) -> None:
        """The caller's iterator (or a request) raised: no more requests; ``exc`` is raised at its position."""
        self.failure, self.done = (self.sent, exc), True

    def finish(self) -> None:
        """At the end of the stream: raise the caller's own failure, or the gap of a stream cut short."""
        if self.failure is not None and self.taken == self.failure[0]:
            raise self.failure[1]
        if self.taken < self.sent:
            raise missing(self.sent, self.taken)


class _Message:
    """One message being packed: its framed items, their bytes, and the credits it holds (the one taken before
    its first request, and one more for each request after it)."""

    def __init__(self, encoder: Encoder) -> None:
        self._encoder = encoder
        self.parts: list[bytes] = []
        self.used = 0
        self.held = 1

    def add(self, framed: bytes) -> bool:
        """Pack an item; whether another may follow in this message (given a free credit for it)."""
        self.parts.append(framed)
        self.used += len(framed)
        return len(self.parts) < self._encoder.per_message and self.used < self._encoder.budget

    @property
    def surplus(self) -> int:
        """Credits held beyond the items packed (theirs went to requests refused here): to hand back."""
        return self.held - len(self.parts)


def _pull(encoder: Encoder, window: _Window, request: Any) -> bytes | None:
    """Frame the caller's next request; None when it is refused here (its error waits in the window)."""
    framed = encoder.item(window.sent, request)
    window.sent += 1
    if isinstance(framed, LossError):
        window.results[window.sent - 1] = framed
        return None
    return framed


def run_sync(method: Callable[..., Any], encoder: Encoder, requests: Iterable[Mapping[str, Any]],
             return_errors: bool, metadata: Any) -> Iterator[Value | LossError]:
    """The sync client's pipeline: a generator of results in request order (see LossClient.pipeline)."""
    window = _Window(return_errors)
    credit = threading.Semaphore(encoder.depth)
    closed = threading.Event()

    def messages() -> Iterator[bytes]:  # runs on grpc's sending thread
        source = iter(requests)
        while not window.done:
            credit.acquire()
            if closed.is_set():
                return
            message = _Message(encoder)
            while True:
                try:
                    framed = _pull(encoder, window, next(source))
                except StopIteration:
                    window.done = True
                    break
                except Exception as exc:  # the caller's iterator or request: raised at its position
                    window.fail(exc)
                    break
                if framed is None:  # refused here: the credit goes to the next request
                    continue
                if not message.add(framed) or not credit.acquire(False):
                    break
                message.held += 1
            if message.surplus:
                credit.release(message.surplus)
            if message.parts:
                yield b"".join(message.parts)

    responses = method(messages(), metadata=metadata)
    try:
        for response in responses:
            for result in response.results:
                window.results[result.id] = result
            yield from _drain(window, credit)
        yield from _drain(window, credit)
        window.finish()
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from None
    finally:
        closed.set()
        credit.release(encoder.depth)  # whatever the sending thread waits for, it wakes and sees closed
        responses.cancel()


def _drain(window: _Window, credit: threading.Semaphore | asyncio.Semaphore) -> Iterator[Value | LossError]:
    """The results ready in order; each from the server frees its credit."""
    while True:
        found = window.ready()
        if found is None:
            return
        value, held = found
        if held:
            credit.release()
        if isinstance(value, LossError) and not window.return_errors:
            raise value
        yield value


async def run_async(method: Callable[..., Any], encoder: Encoder, requests: Any, return_errors: bool,
                    metadata: Any) -> AsyncIterator[Value | LossError]:
    """The asyncio client's pipeline: an async generator of results in request order; ``requests`` an
    iterable or an async iterable."""
    window = _Window(return_errors)
    credit = asyncio.Semaphore(encoder.depth)
    source = aiter(requests) if hasattr(requests, "__aiter__") else None
    plain = iter(requests) if source is None else None

    async def following() -> Any:  # a coroutine must not raise StopIteration: the end is _END
        if plain is not None:
            return next(plain, _END)
        return await anext(source, _END)  # type: ignore[arg-type]

    async def messages() -> AsyncIterator[bytes]:
        while not window.done:
            await credit.acquire()
            message = _Message(encoder)
            while True:
                try:
                    request = await following()
                    if request is _END:
                        window.done = True
                        break
                    framed = _pull(encoder, window, request)
                except Exception as exc:
                    window.fail(exc)
                    break
                if framed is None:
                    continue
                if not message.add(framed) or credit.locked():
                    break
                await credit.acquire()  # free now: not locked
                message.held += 1
            for _ in range(message.surplus):
                credit.release()
            if message.parts:
                yield b"".join(message.parts)

    call = method(messages(), metadata=metadata)
    try:
        async for response in call:
            for result in response.results:
                window.results[result.id] = result
            for value in _drain(window, credit):
                yield value
        for value in _drain(window, credit):
            yield value
        window.finish()
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from None
    finally:
        call.cancel()

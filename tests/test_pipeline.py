"""The Pipeline RPC and LossClient.pipeline: many small requests over one stream, each answered alone."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from google.rpc import status_pb2
from helpers import one_loss_registry

from lossd.client import (
    AsyncLossClient,
    CancelledError,
    DeadlineExceededError,
    InvalidArgumentError,
    LossClient,
    LossNotFoundError,
    ResourceExhaustedError,
)
from lossd.client._codec import encode_array
from lossd.losses import Registry
from lossd.server import BackgroundServer, ServerSettings
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import loss_service_pb2_grpc as pb_grpc


def _requests(rng: np.random.Generator, count: int, n: int = 64) -> list[dict[str, np.ndarray]]:
    return [{"input": rng.random(n, np.float32), "target": rng.random(n, np.float32)} for _ in range(count)]


def _bad(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"input": rng.random(8, np.float32), "target": rng.random(5, np.float32)}


def test_results_equal_compute_in_request_order(client: LossClient, rng: np.random.Generator) -> None:
    requests = _requests(rng, 100)
    assert list(client.pipeline("mse", requests)) == [client.compute("mse", **r) for r in requests]


@pytest.mark.parametrize("depth", [1, 2, 7, 64])
def test_any_depth_gives_the_same_results(client: LossClient, rng: np.random.Generator, depth: int) -> None:
    requests = _requests(rng, 40)
    assert list(client.pipeline("mse", requests, depth=depth)) == [client.compute("mse", **r) for r in requests]


def test_params_and_reduction_apply_to_every_request(client: LossClient, rng: np.random.Generator) -> None:
    requests = _requests(rng, 10)
    got = list(client.pipeline("huber", requests, delta=0.1, reduction="none"))
    for value, r in zip(got, requests, strict=True):
        np.testing.assert_array_equal(value, client.compute("huber", delta=0.1, reduction="none", **r))


def test_requests_are_pulled_lazily_within_the_window(client: LossClient, rng: np.random.Generator) -> None:
    """A generator of requests is consumed as results are taken: never more than depth ahead."""
    pulled = []

    def source() -> Iterator[dict[str, np.ndarray]]:
        for i, r in enumerate(_requests(rng, 50)):
            pulled.append(i)
            yield r

    for taken, _ in enumerate(client.pipeline("mse", source(), depth=4), start=1):
        time.sleep(0.002)  # the sender may run ahead only as far as the window allows
        assert len(pulled) <= taken + 4
    assert len(pulled) == 50


def test_a_refused_request_raises_its_error_at_its_position(client: LossClient, rng: np.random.Generator) -> None:
    requests = [*_requests(rng, 3), _bad(rng), *_requests(rng, 3)]
    got = []
    with pytest.raises(InvalidArgumentError) as caught:
        for value in client.pipeline("mse", requests):
            got.append(value)
    assert got == [client.compute("mse", **r) for r in requests[:3]]
    assert caught.value.fields == ["inputs[target]"]
    assert caught.value.request_id


def test_return_errors_yields_the_error_there_and_goes_on(client: LossClient, rng: np.random.Generator) -> None:
    requests = [*_requests(rng, 2), _bad(rng), *_requests(rng, 2)]
    got = list(client.pipeline("mse", requests, return_errors=True))
    assert isinstance(got[2], InvalidArgumentError)
    assert got[2].code == grpc.StatusCode.INVALID_ARGUMENT
    assert [got[i] for i in (0, 1, 3, 4)] == [client.compute("mse", **requests[i]) for i in (0, 1, 3, 4)]


def test_an_unknown_loss_refuses_every_item_as_not_found(client: LossClient, rng: np.random.Generator) -> None:
    got = list(client.pipeline("no_such_loss", _requests(rng, 3), return_errors=True))
    assert [type(e) for e in got] == [LossNotFoundError] * 3


def test_the_server_keeps_serving_after_a_refused_item(client: LossClient, rng: np.random.Generator) -> None:
    list(client.pipeline("mse", [_bad(rng)], return_errors=True))
    r = _requests(rng, 1)[0]
    assert list(client.pipeline("mse", [r])) == [client.compute("mse", **r)]


def test_an_error_in_the_callers_iterator_is_raised_at_its_position(client: LossClient,
                                                                     rng: np.random.Generator) -> None:
    def source() -> Iterator[dict[str, np.ndarray]]:
        yield from _requests(rng, 3)
        raise OSError("the dataset's file went away")

    got = []
    with pytest.raises(OSError, match="went away"):
        for value in client.pipeline("mse", source()):
            got.append(value)
    assert len(got) == 3


def test_a_request_that_is_not_a_mapping_is_a_type_error(client: LossClient) -> None:
    with pytest.raises(TypeError, match="mapping of role names"):
        list(client.pipeline("mse", [np.zeros(3)]))


def test_a_request_too_large_for_one_message_is_refused_at_its_position(server: BackgroundServer,
                                                                        rng: np.random.Generator) -> None:
    """Its place belongs to compute(), which streams large tensors; the others go on."""
    with LossClient(server.address, max_message_mb=0.05) as small:
        requests = [*_requests(rng, 1), _requests(rng, 1, n=20_000)[0], *_requests(rng, 1)]
        got = list(small.pipeline("mse", requests, return_errors=True))
        assert isinstance(got[1], ResourceExhaustedError)
        assert "compute()" in got[1].message
        assert got[2] == small.compute("mse", **requests[2])


@pytest.mark.parametrize("depth", [0, -1, 1.5, True])
def test_depth_must_be_a_positive_integer(client: LossClient, depth: Any) -> None:
    with pytest.raises(ValueError, match="depth"):
        client.pipeline("mse", [], depth=depth)


def test_an_empty_iterable_yields_nothing(client: LossClient) -> None:
    assert list(client.pipeline("mse", [])) == []


def test_closing_the_iterator_early_leaves_the_server_serving(client: LossClient, rng: np.random.Generator) -> None:
    results = client.pipeline("mse", _requests(rng, 1000))
    next(results)
    results.close()  # cancels the stream with items in flight
    r = _requests(rng, 1)[0]
    assert list(client.pipeline("mse", [r])) == [client.compute("mse", **r)]


def test_items_are_counted_as_calls_of_their_own(server: BackgroundServer, client: LossClient,
                                                 rng: np.random.Generator) -> None:
    def count(code: str) -> float:
        for family in server.server.metrics.requests.collect():
            return sum(s.value for s in family.samples if s.name.endswith("_total")
                       and s.labels == {"method": "PipelineItem", "loss": "mse", "code": code})
        return 0.0

    ok, invalid = count("OK"), count("INVALID_ARGUMENT")
    list(client.pipeline("mse", [*_requests(rng, 4), _bad(rng)], return_errors=True))
    assert (count("OK") - ok, count("INVALID_ARGUMENT") - invalid) == (4, 1)


async def _async_requests(requests: list[dict[str, np.ndarray]]) -> AsyncIterator[dict[str, np.ndarray]]:
    for r in requests:
        await asyncio.sleep(0)
        yield r


@pytest.mark.parametrize("source", ["iterable", "async iterable"])
def test_async_client_pipeline_equals_compute(server: BackgroundServer, client: LossClient,
                                              rng: np.random.Generator, source: str) -> None:
    requests = _requests(rng, 60)
    want = [client.compute("mse", **r) for r in requests]

    async def run() -> list[Any]:
        async with AsyncLossClient(server.address) as ac:
            given = requests if source == "iterable" else _async_requests(requests)
            return [v async for v in ac.pipeline("mse", given, depth=8)]

    assert asyncio.run(run()) == want


def test_async_client_pipeline_raises_a_refusal_at_its_position(server: BackgroundServer,
                                                                rng: np.random.Generator) -> None:
    async def run() -> list[Any]:
        got: list[Any] = []
        async with AsyncLossClient(server.address) as ac:
            with pytest.raises(InvalidArgumentError):
                async for v in ac.pipeline("mse", [*_requests(rng, 2), _bad(rng)]):
                    got.append(v)
            got.append([type(v) for v in [x async for x in ac.pipeline("mse", [_bad(rng)], return_errors=True)]])
        return got

    got = asyncio.run(run())
    assert len(got) == 3 and got[2] == [InvalidArgumentError]


# --- The protocol itself: ids, completion order, per-item deadlines and cancellation, over a raw stub. ---


class _Gate:
    """A loss that waits until released (to hold the one compute thread), then answers MSE."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def fn(self, input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if float(input.reshape(-1)[0]) < 0:  # a negative first element marks the item that holds the thread
            self.release.wait(timeout=20)
        return torch.nn.functional.mse_loss(input, target, reduction=reduction)

    def registry(self) -> Registry:
        return one_loss_registry("gate", self.fn)


def _item(item_id: int, first: float, timeout_ms: int = 0, loss: str = "gate") -> pb.PipelineItem:
    request = pb.ComputeRequest(loss=loss)
    request.inputs["input"].CopyFrom(encode_array(np.array([first, 1.0], np.float32)))
    request.inputs["target"].CopyFrom(encode_array(np.array([0.0, 0.0], np.float32)))
    return pb.PipelineItem(id=item_id, compute=request, timeout_ms=timeout_ms)


@pytest.fixture
def gated() -> Iterator[tuple[_Gate, pb_grpc.LossServiceStub]]:
    """A server whose items all go to its one compute thread (inline_bytes 0)."""
    gate = _Gate()
    settings = ServerSettings(port=0, metrics_port=0, device="cpu", inline_bytes=0, compute_threads=1)
    with BackgroundServer(settings, registry=gate.registry()) as srv, grpc.insecure_channel(srv.address) as ch:
        yield gate, pb_grpc.LossServiceStub(ch)
        gate.release.set()


def _stream(stub: pb_grpc.LossServiceStub) -> tuple[queue.Queue[Any], Iterator[pb.PipelineResult]]:
    """A Pipeline call fed from a queue (None ends it), and its results one by one."""
    sends: queue.Queue[Any] = queue.Queue()
    responses = stub.Pipeline(iter(sends.get, None), timeout=30)

    def results() -> Iterator[pb.PipelineResult]:
        for response in responses:
            yield from response.results
    return sends, results()


def _code(result: pb.PipelineResult) -> int:
    return status_pb2.Status.FromString(result.error).code if result.WhichOneof("outcome") == "error" else 0


def test_results_come_as_items_complete_with_their_ids(gated: tuple[_Gate, pb_grpc.LossServiceStub]) -> None:
    """Items queue for the one compute thread behind a slow one; released, each is answered under its id."""
    gate, stub = gated
    sends, results = _stream(stub)
    sends.put(pb.PipelineRequest(items=[_item(7, -1.0), _item(3, 2.0)]))
    time.sleep(0.2)
    gate.release.set()
    sends.put(None)
    got = {r.id: r for r in results}
    assert sorted(got) == [3, 7]
    assert got[3].compute.loss.raw_data == np.float32(2.5).tobytes()  # mean of 2² and 1²
    assert got[7].compute.loss.raw_data == np.float32(1.0).tobytes()


def test_results_being_written_when_the_caller_half_closes_are_still_sent(
        gated: tuple[_Gate, pb_grpc.LossServiceStub]) -> None:
    """The stream ends once every result is written, not once every item is computed: the half-close comes
    as the held items finish, while their results are being written (a race, so several rounds)."""
    gate, stub = gated
    for round_ in range(8):
        gate.release.clear()
        sends, results = _stream(stub)
        sends.put(pb.PipelineRequest(items=[_item(2 * round_, -1.0), *(_item(2 * round_ + 1 + i, 2.0)
                                                                       for i in range(0, 8, 2))]))
        time.sleep(0.05)
        gate.release.set()
        sends.put(None)
        assert sorted(r.id for r in results) == [2 * round_, *(2 * round_ + 1 + i for i in range(0, 8, 2))]


def test_an_item_whose_deadline_passes_in_the_queue_is_answered_deadline_exceeded(
        gated: tuple[_Gate, pb_grpc.LossServiceStub]) -> None:
    gate, stub = gated
    sends, results = _stream(stub)
    sends.put(pb.PipelineRequest(items=[_item(1, -1.0), _item(2, 2.0, timeout_ms=50), _item(3, 2.0)]))
    time.sleep(0.3)  # item 2 waits behind item 1 past its 50 ms
    gate.release.set()
    sends.put(None)
    got = {r.id: r for r in results}
    assert _code(got[2]) == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert got[2].request_id
    assert (_code(got[1]), _code(got[3])) == (0, 0)


def test_a_cancelled_item_is_answered_cancelled_and_never_computed(
        gated: tuple[_Gate, pb_grpc.LossServiceStub]) -> None:
    gate, stub = gated
    sends, results = _stream(stub)
    sends.put(pb.PipelineRequest(items=[_item(1, -1.0), _item(2, 2.0)]))
    time.sleep(0.1)
    sends.put(pb.PipelineRequest(cancel=[2]))
    first = next(results)
    assert (first.id, _code(first)) == (2, grpc.StatusCode.CANCELLED.value[0])
    gate.release.set()
    sends.put(None)
    assert [(r.id, _code(r)) for r in results] == [(1, 0)]


def test_an_item_with_no_call_is_refused_naming_the_field(stub: pb_grpc.LossServiceStub) -> None:
    (response,) = list(stub.Pipeline(iter([pb.PipelineRequest(items=[pb.PipelineItem(id=5)])]), timeout=10))
    (result,) = response.results
    status = status_pb2.Status.FromString(result.error)
    assert (result.id, status.code) == (5, grpc.StatusCode.INVALID_ARGUMENT.value[0])
    assert "items.call" in status.message


def test_cancelled_error_is_a_loss_error_with_its_code() -> None:
    error = CancelledError(grpc.StatusCode.CANCELLED, "withdrawn")
    assert error.code == grpc.StatusCode.CANCELLED


def test_a_timeout_is_sent_with_every_item(client: LossClient, rng: np.random.Generator) -> None:
    """A generous per-request timeout changes nothing; a non-positive one is refused before anything is sent."""
    requests = _requests(rng, 5)
    assert list(client.pipeline("mse", requests, timeout=30)) == [client.compute("mse", **r) for r in requests]
    with pytest.raises(ValueError, match="timeout"):
        client.pipeline("mse", requests, timeout=0)


def test_deadline_exceeded_reaches_the_client_as_its_error() -> None:
    """Through LossClient: the item that waited past its timeout is a DeadlineExceededError at its position."""
    settings = ServerSettings(port=0, metrics_port=0, device="cpu", inline_bytes=0, compute_threads=1)
    other = _Gate()
    with BackgroundServer(settings, registry=other.registry()) as srv, LossClient(srv.address) as c:
        requests = [{"input": np.array([-1.0, 1.0], np.float32), "target": np.zeros(2, np.float32)},
                    {"input": np.array([2.0, 1.0], np.float32), "target": np.zeros(2, np.float32)}]
        threading.Timer(0.3, other.release.set).start()
        got = list(c.pipeline("gate", requests, timeout=0.05, return_errors=True))
        assert isinstance(got[1], DeadlineExceededError)
        assert got[0] == 1.0

"""Where calls run: unary calls that carry tensors on the server's few threads for them, computed there when small
and on the compute threads when large; the streams on the event loop (lossd.server.bridge)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from helpers import one_loss_registry

from lossd.client import LossClient
from lossd.server import BackgroundServer, ServerSettings
from lossd.server.app import _small_call_threads

X = np.ones(16, np.float32)


class _Where:
    """A loss that records the name of the thread computing it."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def fn(self, input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        self.threads.append(threading.current_thread().name)
        return torch.nn.functional.mse_loss(input, target, reduction=reduction)


@pytest.fixture(scope="module")
def where() -> Iterator[tuple[_Where, BackgroundServer]]:
    loss = _Where()
    settings = ServerSettings(host="127.0.0.1", port=0, metrics_port=0, device="cpu", inline_bytes=1024)
    with BackgroundServer(settings, registry=one_loss_registry("where", loss.fn)) as srv:
        yield loss, srv


def test_a_small_unary_call_is_computed_on_a_call_thread(where: tuple[_Where, BackgroundServer]) -> None:
    """Under inline_bytes: on the thread that received it, one of the unary calls' own."""
    loss, srv = where
    with LossClient(srv.address, timeout=30) as client:
        client.compute("where", input=X, target=X)
        client.gradient("where", input=X, target=X)
    assert [name.split("_")[0] for name in loss.threads[-2:]] == ["lossd-call", "lossd-call"]


def test_a_large_unary_call_is_computed_on_a_compute_thread(where: tuple[_Where, BackgroundServer]) -> None:
    """Over inline_bytes: handed to the compute threads (the call's thread waits for it)."""
    loss, srv = where
    big = np.ones(4096, np.float32)
    with LossClient(srv.address, timeout=30) as client:
        client.compute("where", input=big, target=big)
    assert loss.threads[-1].startswith("lossd-compute")


def test_a_streamed_call_is_computed_on_a_compute_thread(where: tuple[_Where, BackgroundServer]) -> None:
    """ComputeStream runs on the event loop, its computation on the compute threads, as before the bridge."""
    loss, srv = where
    big = np.ones(32768, np.float32)  # 128 KiB a tensor, over the client's stream_mb: sent in chunks
    with LossClient(srv.address, timeout=30, stream_mb=0.05) as client:
        assert client.compute("where", input=big, target=big, reduction="sum") == 0.0
    assert loss.threads[-1].startswith("lossd-compute")
    assert srv.server.metrics.calls_in_flight.now("ComputeStream") == 0  # the stream was served, and has ended


@pytest.mark.parametrize(("unary_threads", "max_in_flight", "expected"), [
    (0, 0, 2), (3, 0, 3), (0, 5, 6), (8, 5, 8), (0, 10_000, 256),
])
def test_the_unary_threads_are_two_or_enough_for_max_in_flight(unary_threads: int, max_in_flight: int,
                                                                 expected: int) -> None:
    """Two by default; with max_in_flight, one more than it (capped), so that the call past it reaches Python
    and is shed at once instead of queueing for a thread."""
    settings = ServerSettings(unary_threads=unary_threads, max_in_flight=max_in_flight)
    assert _small_call_threads(settings) == expected

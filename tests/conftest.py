"""Shared fixtures: one real lossd server per test session, on loopback, and clients for it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import torch

from lossd.client import LossClient
from lossd.server import BackgroundServer, ServerSettings
from lossd.v1 import loss_service_pb2_grpc as pb_grpc

HAS_CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `cuda`-marked tests cleanly on hosts without CUDA."""
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _deterministic_math() -> None:
    # TF32 would make CUDA results differ from the CPU references by ~1e-3.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


@pytest.fixture(scope="session")
def server() -> Iterator[BackgroundServer]:
    """A real lossd server (device auto) on 127.0.0.1, any free port, with its metrics endpoint and its REST
    front (also on a free port)."""
    device = os.environ.get("LOSSD_TEST_DEVICE", "auto")
    settings = ServerSettings(host="127.0.0.1", port=0, metrics_port=0, http_port=0, device=device)
    srv = BackgroundServer(settings).start()
    srv.server.serve_metrics("127.0.0.1", 0)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def client(server: BackgroundServer) -> Iterator[LossClient]:
    """The library client, connected to the session's server."""
    with LossClient(server.address, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def channel(server: BackgroundServer) -> Iterator[grpc.Channel]:
    """A plain gRPC channel to the session's server (for tests of the wire contract itself)."""
    with grpc.insecure_channel(server.address) as ch:
        yield ch


@pytest.fixture(scope="session")
def stub(channel: grpc.Channel) -> pb_grpc.LossServiceStub:
    """The generated stub, bypassing the client library."""
    return pb_grpc.LossServiceStub(channel)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, so failures reproduce."""
    return np.random.default_rng(1234)

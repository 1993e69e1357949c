"""One client, three servers: calls spread over all of them and survive one going away."""

from __future__ import annotations

import numpy as np

from lossd.client import LossClient
from lossd.server import BackgroundServer, ServerSettings


def _served(server: BackgroundServer) -> float:
    """Compute calls a server answered OK, from its own metrics registry."""
    for family in server.server.metrics.requests.collect():
        return sum(s.value for s in family.samples
                   if s.name.endswith("_total") and s.labels["method"] == "Compute" and s.labels["code"] == "OK")
    return 0.0


def test_calls_spread_over_three_servers_and_survive_one_stopping() -> None:
    """round_robin sends calls to every server; after one stops, every call still succeeds."""
    servers = [BackgroundServer(ServerSettings(port=0, metrics_port=0, device="cpu")).start() for _ in range(3)]
    try:
        with LossClient([s.address for s in servers], timeout=10) as c:
            for _ in range(30):
                assert c.compute("mse", input=np.array([2.0]), target=np.array([0.0])) == 4.0
            assert all(_served(s) > 0 for s in servers)
            servers[0].stop(grace=0)
            results = [c.compute("mse", input=np.array([3.0]), target=np.array([0.0])) for _ in range(30)]
            assert results == [9.0] * 30
            assert sum(_served(s) for s in servers) == 60
    finally:
        for s in servers[1:]:
            s.stop(grace=0)

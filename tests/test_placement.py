"""Device placement by cost, and what ListLosses says about the server."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossd.server import BackgroundServer, ServerSettings
from lossd.server.placement import Placement, placement_for
from lossd.v1 import loss_service_pb2 as pb


def test_small_requests_stay_on_the_cpu_of_a_cuda_server() -> None:
    """Under the threshold a CUDA server computes on the CPU; at or over it, on the GPU."""
    placement = Placement(torch.device("cuda", 0), gpu_min_elements=1000)
    assert placement.device_for(999) == torch.device("cpu")
    assert placement.device_for(1000) == torch.device("cuda", 0)


def test_cpu_server_ignores_the_threshold() -> None:
    """A CPU server has no threshold to apply (and measures none)."""
    placement = placement_for(torch.device("cpu"), -1)
    assert placement.gpu_min_elements == 0 and placement.device_for(1) == torch.device("cpu")


def test_list_losses_describes_the_server(stub) -> None:  # type: ignore[no-untyped-def]
    """ListLosses carries the server's version, device, message limit and shared-memory prefix."""
    info = stub.ListLosses(pb.ListLossesRequest(name="mse"), timeout=10).server
    assert info.device in ("cpu", "cuda:0")
    assert info.max_message_bytes == 64 << 20
    assert info.shm_prefix == ""
    assert info.version


@pytest.mark.cuda
def test_cuda_server_places_requests_by_size() -> None:
    """With a threshold of 1000 elements, a 10-element call runs on the CPU and a 10K one on cuda:0."""
    import grpc
    from helpers import raw_tensor

    from lossd.v1 import loss_service_pb2_grpc as pb_grpc

    settings = ServerSettings(port=0, metrics_port=0, device="cuda:0", gpu_min_elements=1000)
    with BackgroundServer(settings) as srv, grpc.insecure_channel(srv.address) as ch:
        stub = pb_grpc.LossServiceStub(ch)
        devices = []
        for n in (5, 5000):
            x = np.ones(n, np.float32)
            reply = stub.Compute(pb.ComputeRequest(loss="mse", inputs={"input": raw_tensor(x),
                                                                       "target": raw_tensor(x)}), timeout=30)
            devices.append(reply.device)
    assert devices == ["cpu", "cuda:0"]

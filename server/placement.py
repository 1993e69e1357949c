"""Device placement by cost: on a CUDA host, small requests stay on the CPU.

A GPU round trip costs tens to hundreds of microseconds of launches and copies before any work, so
an elementwise loss over a few thousand numbers is faster on the CPU; large or heavy requests win
on the GPU. The crossover is configured (``gpu_min_elements``) or measured at start-up.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from lossd.losses import REGISTRY, evaluate, validate

log = logging.getLogger("lossd.server")
_CPU = torch.device("cpu")


@dataclass(frozen=True)
class Placement:
    """Where a request of a given size runs."""

    device: torch.device
    gpu_min_elements: int = 0

    def device_for(self, elements: int) -> torch.device:
        """The server's device, or the CPU for requests under the threshold on a CUDA server."""
        if self.device.type == "cuda" and elements < self.gpu_min_elements:
            return _CPU
        return self.device


def _best_of(device: torch.device, elements: int, repeats: int = 5) -> float:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(elements, generator=gen), torch.rand(elements, generator=gen)
    prepared = validate(REGISTRY.get("mse"), {"input": x, "target": y}, {}, "mean", wrt=["input"])
    evaluate(prepared, device)  # warm up kernels and allocators
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        evaluate(prepared, device)
        best = min(best, time.perf_counter() - start)
    return best


def measure_gpu_min_elements(device: torch.device) -> int:
    """The smallest size (a power of 4 from 1K to 16M elements) where MSE value+gradient, copies
    included, runs faster on ``device`` than on the CPU."""
    sizes = [1 << k for k in range(10, 26, 2)]
    for elements in sizes:
        if _best_of(device, elements) < _best_of(_CPU, elements):
            log.info("placement: requests of >= %d elements run on %s, smaller ones on the CPU", elements, device)
            return elements
    return sizes[-1] * 4


def placement_for(device: torch.device, setting: int) -> Placement:
    """The placement for a server on ``device``; ``setting`` -1 measures the threshold (CUDA only)."""
    if device.type != "cuda":
        return Placement(device, 0)
    return Placement(device, measure_gpu_min_elements(device) if setting < 0 else setting)

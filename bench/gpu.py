"""``lossd bench --gpu``: heavy losses end to end on a CUDA server, with absolute times.

CE over 4096x32000 logits, InfoNCE over 8192x512 features and MSE over 128M elements, each value +
gradient through the real client and server (the MSE request streams: it is past any message
limit), beside torch on the same GPU in-process. Sized to finish in a few minutes on one GPU.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from lossd.bench.measure import paired_latency
from lossd.bench.processes import lossd_server
from lossd.bench.scenarios import Row
from lossd.client import LossClient


def _floor(device: torch.device, fn: Callable[..., torch.Tensor], *arrays: np.ndarray) -> Callable[[], object]:
    """torch in-process on ``device``: host->device, value+grad, gradient back to the host."""
    def run() -> object:
        tensors = [torch.from_numpy(a).to(device) for a in arrays]
        leaf = tensors[0].requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(*tensors), [leaf])
        return grad.cpu()
    return run


def _info_nce(features: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    # Reference for the floor: lossd's info_nce with its defaults (normalised, adjacent positives).
    z = F.normalize(features, dim=1)
    sim = z @ z.T / temperature
    n = sim.shape[0]
    sim = sim.masked_fill(torch.eye(n, dtype=torch.bool, device=sim.device), float("-inf"))
    idx = torch.arange(n, device=sim.device)
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    return -(log_prob[idx, (idx + 1) % n] + log_prob[idx, (idx - 1) % n]).mean() / 2


def run_gpu(quick: bool, device: str = "cuda:0") -> list[Row]:
    """The GPU scenarios; ``device`` may be "cpu" only to smoke-test this code with --quick sizes."""
    scale = 16 if quick else 1
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4096 // scale, 32000 // scale), np.float32)
    labels = rng.integers(0, 32000 // scale, 4096 // scale)
    features = rng.standard_normal((8192 // scale, 512), np.float32)
    n = (128 << 20) // scale**2
    x, y = rng.random(n, np.float32), rng.random(n, np.float32)
    torch_device = torch.device(device)
    rows = []
    with lossd_server("--device", device, "--max-message-mb", "1024") as server, \
            LossClient(server.address, timeout=600, max_message_mb=1024) as client:
        for name, call, floor in (
            (f"CE {logits.shape[0]}x{logits.shape[1]} value+grad",
             lambda: client.gradient("cross_entropy", input=logits, target=labels),
             _floor(torch_device, F.cross_entropy, logits, labels)),
            (f"InfoNCE {features.shape[0]}x{features.shape[1]} value+grad",
             lambda: client.gradient("info_nce", features=features), _floor(torch_device, _info_nce, features)),
            (f"MSE {n:,} elements value+grad" + (" (streamed)" if 2 * x.nbytes > 48 << 20 else ""),
             lambda: client.gradient("mse", input=x, target=y), _floor(torch_device, F.mse_loss, x, y)),
        ):
            ours, reference = paired_latency([call, floor], 3 if quick else 8, 60.0, warmup=1)
            rows.append(Row(name, "ms", ours.median * 1e3, None, reference.median * 1e3,
                            ours.median / reference.median, "absolute (floor: torch on the same device)", None))
    return rows

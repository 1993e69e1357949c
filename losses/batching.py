"""Several requests for the same loss, run as one launch, each still getting its own reduction.

Triton's dynamic batching, done for losses: requests that agree on the loss, its parameters, the
roles' dtypes, their shapes past the batch dimension and the roles to differentiate are
concatenated along dim 0 and computed once with reduction "none"; each request's slice is then
reduced its own way ("mean", "sum" or "none"), and one backward pass, seeded with each request's own
upstream gradient (1/n for mean, 1 for sum, its grad_output for none), yields every request's
gradients. Only losses whose unreduced output lines up with the batch dimension and whose "mean" is
a plain mean of it are batchable (``LossSpec.batchable``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch

from lossd.losses.engine import Result, evaluate, to_device, to_host
from lossd.losses.reduction import reduce_loss
from lossd.losses.validate import Prepared

_BATCHED_ROLES = frozenset({"input", "target"})


def batch_key(prepared: Prepared, device: torch.device) -> Hashable | None:
    """What requests must share to run together; None when this request cannot be batched."""
    spec, tensors = prepared.spec, prepared.tensors
    if not spec.batchable or set(tensors) != _BATCHED_ROLES:
        return None
    if any(t.dim() == 0 for t in tensors.values()) or len({t.shape[0] for t in tensors.values()}) != 1:
        return None
    params = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in prepared.params.items()))
    shapes = tuple((name, t.dtype, tuple(t.shape[1:])) for name, t in sorted(tensors.items()))
    return spec.name, params, shapes, prepared.wrt, str(device)


def evaluate_batch(batch: Sequence[Prepared], device: torch.device) -> list[Result]:
    """Results for requests that share a :func:`batch_key`, computed in one launch."""
    if len(batch) == 1:
        return [evaluate(batch[0], device)]
    first = batch[0]
    spec, wrt = first.spec, first.wrt
    sizes = [p.tensors["input"].shape[0] for p in batch]
    work = {}
    for name in first.tensors:
        joined = to_device(torch.cat([p.tensors[name] for p in batch]), device, integer_as_long=True)
        work[name] = joined.requires_grad_(True) if name in wrt else joined
    with torch.set_grad_enabled(bool(wrt)):
        unreduced = spec.fn(**work, **first.params, reduction="none")
    pieces = unreduced.detach().split(sizes)
    losses = [reduce_loss(piece, p.reduction) for piece, p in zip(pieces, batch, strict=True)]
    grads: list[dict[str, torch.Tensor]] = [{} for _ in batch]
    if wrt:
        upstream = torch.cat([_seed(piece, p, device) for piece, p in zip(pieces, batch, strict=True)])
        found = torch.autograd.grad(unreduced, [work[r] for r in wrt], grad_outputs=upstream, allow_unused=True)
        for role, g in zip(wrt, found, strict=True):
            g = torch.zeros_like(work[role]) if g is None else g.detach()
            for out, part, p in zip(grads, g.split(sizes), batch, strict=True):
                out[role] = to_host(part, p.tensors[role].dtype)
    return [Result(to_host(loss, p.output_dtype), g) for loss, g, p in zip(losses, grads, batch, strict=True)]


def _seed(piece: torch.Tensor, prepared: Prepared, device: torch.device) -> torch.Tensor:
    """This request's upstream gradient for its slice of the unreduced loss."""
    if prepared.reduction == "none":
        if prepared.grad_output is not None:
            return to_device(prepared.grad_output, device, integer_as_long=False).to(piece.dtype)
        return torch.ones_like(piece)
    scale = 1.0 / piece.numel() if prepared.reduction == "mean" and piece.numel() else 1.0
    if prepared.grad_output is not None:
        scale = scale * prepared.grad_output.to(device, piece.dtype)
    return torch.ones_like(piece) * scale

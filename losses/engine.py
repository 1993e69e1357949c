"""Runs a validated request on a device: the loss, and optionally its vector-Jacobian product."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from lossd.losses.hessian import autograd_diagonals
from lossd.losses.small import small_arrays
from lossd.losses.validate import Prepared

# Halves lose too much precision in reductions and softmax; compute them in float32 and answer in
# the caller's dtype, as mixed-precision training does.
_UPCAST = {torch.float16: torch.float32, torch.bfloat16: torch.float32}
_WIDEN = (torch.int32, torch.uint8)  # class indices: torch's losses want int64


@dataclass(frozen=True)
class Result:
    """The loss and, for a Gradient call, one gradient per role in ``wrt`` and, when asked, one Hessian
    diagonal per role (all on the CPU)."""

    loss: torch.Tensor
    gradients: dict[str, torch.Tensor]
    hessians: dict[str, torch.Tensor] = field(default_factory=dict)  # when asked: one diagonal per role in wrt


def to_device(t: torch.Tensor, device: torch.device, integer_as_long: bool) -> torch.Tensor:
    """``t`` on ``device``, halves as float32 and (with ``integer_as_long``) class indices as int64."""
    # Attribute checks first: a no-op .to() still costs a dispatch, which shows on small requests.
    if t.dtype in _UPCAST:
        t = t.to(_UPCAST[t.dtype])
    elif integer_as_long and t.dtype in _WIDEN:
        t = t.to(torch.int64)
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        # Pageable memory copies at a fraction of pinned speed, and blocks; torch's caching host
        # allocator hands back the same pinned blocks request after request.
        staged = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        staged.copy_(t)
        return staged.to(device, non_blocking=True)
    return t.to(device)


_streams = threading.local()


def _thread_stream(device: torch.device) -> torch.cuda.Stream:
    """One CUDA stream per calling thread, so concurrent requests' copies and kernels overlap."""
    streams = getattr(_streams, "by_device", None)
    if streams is None:
        streams = _streams.by_device = {}
    if device not in streams:
        streams[device] = torch.cuda.Stream(device=device)
    return streams[device]


def evaluate(prepared: Prepared, device: torch.device | str = "cpu") -> Result:
    """Compute ``prepared`` on ``device``; gradients are d(sum(grad_output * loss))/d(role).

    The loss and gradients come back on the CPU in the request's float dtype; a gradient with
    respect to a role that does not affect the loss is zeros. On CUDA the work runs on the calling
    thread's own stream, with inputs staged through pinned host memory and copied without blocking.
    """
    device = device if isinstance(device, torch.device) else torch.device(device)
    if device.type != "cuda":
        return _evaluate(prepared, device)
    stream = _thread_stream(device)
    with torch.cuda.stream(stream):
        result = _evaluate(prepared, device)
    stream.synchronize()  # the results' non-blocking copies to the host must land before anyone reads
    return result


def _placed(prepared: Prepared, device: torch.device) -> dict[str, torch.Tensor]:
    """The request's tensors on ``device`` in the dtypes losses compute in (the same dict when nothing moves)."""
    tensors = prepared.tensors
    if device.type == "cpu":
        for t in tensors.values():
            if t.dtype in _CONVERTED or not t.is_cpu:
                break
        else:  # already where and what they need to be: the common case of a small CPU request
            return tensors
    return {name: to_device(t, device, integer_as_long=True) for name, t in tensors.items()}


_CONVERTED = frozenset((*_UPCAST, *_WIDEN))


def _evaluate(prepared: Prepared, device: torch.device) -> Result:
    spec = prepared.spec
    if spec.small_value is not None and device.type == "cpu" and not prepared.wrt:
        arrays = small_arrays(prepared.tensors)
        if arrays is not None:  # small enough that torch's dispatch would cost more than the arithmetic
            value = spec.small_value(arrays, prepared.params, prepared.reduction)
            return Result(torch.from_numpy(np.asarray(value)), {})
    work = _placed(prepared, device)
    out_dtype = prepared.output_dtype
    upstream = None
    if prepared.grad_output is not None:
        upstream = to_device(prepared.grad_output, device, integer_as_long=False)
    diagonals = None
    if prepared.hessian:
        closed = spec.hessian_fn(work, prepared.params, prepared.reduction, prepared.wrt, upstream) \
            if spec.hessian_fn is not None else None
        if closed is None:
            loss, grads, diagonals = autograd_diagonals(spec, work, prepared.params, prepared.reduction,
                                                        prepared.wrt, upstream)
        else:
            loss, grads = _first_order(prepared, work, upstream)
            diagonals = closed
    else:
        loss, grads = _first_order(prepared, work, upstream)
    role_dtype = {role: prepared.tensors[role].dtype for role in prepared.wrt}
    hosted = {role: to_host(g, role_dtype[role]) for role, g in grads.items()}
    hessians = {role: to_host(h, role_dtype[role]) for role, h in diagonals.items()} if diagonals else {}
    return Result(to_host(loss, out_dtype), hosted, hessians)


def _first_order(prepared: Prepared, work: dict[str, torch.Tensor], upstream: torch.Tensor | None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss and its gradients on the device: the spec's closed form, or autograd."""
    spec = prepared.spec
    if spec.value_and_grad is not None:  # closed form: the value alone too, when wrt is empty
        closed = spec.value_and_grad(work, prepared.params, prepared.reduction, prepared.wrt, upstream)
        if closed is not None:  # None: this setting is autograd's
            return closed
    if prepared.wrt:
        # Fresh leaves even where placing returned the caller's tensors: never mark their tensors.
        work = {name: t.detach().requires_grad_(True) if name in prepared.wrt else t for name, t in work.items()}
    with torch.set_grad_enabled(bool(prepared.wrt)):
        loss = spec.fn(**work, **prepared.params, reduction=prepared.reduction)
    grads: dict[str, torch.Tensor] = {}
    if prepared.wrt:
        up = torch.ones_like(loss) if upstream is None else upstream.to(loss.dtype)
        leaves = [work[r] for r in prepared.wrt]
        found = torch.autograd.grad(loss, leaves, grad_outputs=up, allow_unused=True)
        for role, leaf, g in zip(prepared.wrt, leaves, found, strict=True):
            grads[role] = torch.zeros_like(leaf) if g is None else g.detach()
    return (loss.detach() if loss.requires_grad else loss), grads


def to_host(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` on the CPU in ``dtype`` (from CUDA: into pinned memory, without blocking)."""
    if t.is_cpu:
        return t if t.dtype == dtype else t.to(dtype)
    # Into pinned memory, without blocking: evaluate() synchronizes the stream once at the end.
    out = torch.empty(t.shape, dtype=dtype, pin_memory=True)
    out.copy_(t, non_blocking=True)
    return out

"""Shape and value checks shared by the loss specs' ``check`` functions.

They run on the CPU tensors decoded from the request, before anything is moved to a device: a bad
class index that reached CUDA would trigger a device-side assert and poison the whole process.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from lossd.losses.errors import invalid


def field(role: str) -> str:
    """The wire-contract name of an input role, as used in error details."""
    return f"inputs[{role}]"


def shape_text(shape: torch.Size | tuple[int, ...]) -> str:
    """``(2, 3)``; ``()`` for a 0-d tensor."""
    dims = tuple(shape)
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def same_shape(tensors: Mapping[str, torch.Tensor], role: str, like: str) -> None:
    """``role`` must have exactly the shape of ``like`` (no silent broadcasting)."""
    a, b = tensors[role], tensors[like]
    if a.shape != b.shape:
        raise invalid(
            field(role), f"shape {shape_text(a.shape)} must equal the shape of {like} {shape_text(b.shape)}"
        )


def broadcastable_to(tensor: torch.Tensor, role: str, shape: torch.Size, like: str) -> None:
    """``tensor`` must broadcast to ``shape`` without changing it."""
    try:
        ok = torch.broadcast_shapes(tensor.shape, shape) == shape
    except RuntimeError:
        ok = False
    if not ok:
        raise invalid(
            field(role),
            f"shape {shape_text(tensor.shape)} does not broadcast to the shape of {like} {shape_text(shape)}",
        )


def min_ndim(tensor: torch.Tensor, role: str, ndim: int, rule: str) -> None:
    """``tensor`` needs at least ``ndim`` dimensions; ``rule`` says the expected shape in words."""
    if tensor.dim() < ndim:
        raise invalid(field(role), f"shape {shape_text(tensor.shape)} has too few dimensions; expected {rule}")


# NaN in data flows through as torch lets it (the loss is NaN where it reaches): a NaN is no value outside a
# domain. Weights are configuration, not data, and stay refused when not finite (nan=False); so are NaNs where
# torch itself raises (binary_cross_entropy's probabilities).


def finite(tensor: torch.Tensor, role: str, nan: bool = False) -> None:
    """Every element must be finite (no ±Inf; no NaN either unless ``nan``)."""
    if not tensor.is_floating_point() or not tensor.numel():
        return
    ok = torch.isfinite(tensor) | (torch.isnan(tensor) if nan else False)
    if not bool(ok.all()):
        bad = (~ok).reshape(-1).nonzero()[0].item()
        raise invalid(field(role), f"holds a non-finite value (first at flat index {bad}); expected finite values")


def in_range(tensor: torch.Tensor, role: str, low: float, high: float, nan: bool = True) -> None:
    """Every element must lie in [low, high]; NaN passes unless ``nan`` is False."""
    if not tensor.numel():
        return
    ok = (tensor >= low) & (tensor <= high)
    if nan and tensor.is_floating_point():
        ok |= torch.isnan(tensor)
    if not bool(ok.all()):
        flat = (~ok).reshape(-1).nonzero()[0].item()
        value = tensor.reshape(-1)[flat].item()
        raise invalid(
            field(role), f"value {value:g} at flat index {flat} is outside [{low:g}, {high:g}]"
        )


def non_negative(tensor: torch.Tensor, role: str, nan: bool = False) -> None:
    """Every element must be finite and >= 0 (NaN passes with ``nan``: data, not weights)."""
    finite(tensor, role, nan)
    if tensor.numel() and bool((tensor < 0).any()):
        flat = (tensor < 0).reshape(-1).nonzero()[0].item()
        value = tensor.reshape(-1)[flat].item()
        raise invalid(field(role), f"value {value:g} at flat index {flat} is negative; expected >= 0")


def class_indices(target: torch.Tensor, role: str, num_classes: int, ignore_index: int | None) -> None:
    """Every index must lie in [0, num_classes) or equal ``ignore_index``."""
    if not target.numel():
        return
    t = target.to(torch.int64)
    bad = (t < 0) | (t >= num_classes)
    if ignore_index is not None:
        bad &= t != ignore_index
    if bool(bad.any()):
        flat = bad.reshape(-1).nonzero()[0].item()
        value = t.reshape(-1)[flat].item()
        allowed = f" or ignore_index {ignore_index}" if ignore_index is not None else ""
        raise invalid(
            field(role),
            f"class index {value} at flat index {flat} is outside [0, {num_classes}){allowed}",
        )

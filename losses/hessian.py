"""Hessian diagonals: for each role r in wrt, diag(d²/dr² sum(upstream * loss)), shaped like r. Exact.

Autograd, by the loss's ``hessian`` kind (lossd.losses.spec):

- "elementwise": each element of the loss depends on one element of r, so the Hessian with respect to r is
  diagonal and one Hessian-vector product with a vector of ones is its diagonal;
- "rows": the loss decomposes over dim 0 (rows are independent) but couples the elements of a row (the C
  logits of cross-entropy), so the Hessian is block-diagonal: one product per position k within a row, with
  the indicator of position k in every row, gives column k of every row's diagonal.

Closed forms, where they are faster, for mse, mae, bce_with_logits and cross_entropy (``LossSpec.hessian_fn``);
tests check them, and every autograd diagonal, against ``torch.autograd.functional.hessian``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lossd.losses.errors import FieldViolation, ResourceLimitError

# Hessian-vector products one request may cost: a "rows" loss needs one per element of a row.
MAX_PRODUCTS = 4096


def autograd_diagonals(spec: Any, work: dict[str, torch.Tensor], params: dict[str, Any], reduction: str,
                       wrt: tuple[str, ...], upstream: torch.Tensor | None
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(loss, {role: gradient}, {role: Hessian diagonal}) by double backward through ``spec.fn``."""
    leaves = {r: work[r].detach().requires_grad_(True) for r in wrt}
    inputs = {**work, **leaves}
    with torch.enable_grad():
        loss = spec.fn(**inputs, **params, reduction=reduction)
        up = torch.ones_like(loss) if upstream is None else upstream.to(loss.dtype)
        firsts = torch.autograd.grad(loss, [leaves[r] for r in wrt], grad_outputs=up, create_graph=True,
                                     allow_unused=True)
        rows = _rows(spec, work, params)
        grads, diagonals = {}, {}
        for role, g in zip(wrt, firsts, strict=True):
            leaf = leaves[role]
            if g is None:
                grads[role] = diagonals[role] = torch.zeros_like(leaf)
                continue
            grads[role] = g.detach()
            if not g.requires_grad:  # linear in this role: the second derivative is zero
                diagonals[role] = torch.zeros_like(leaf)
            elif spec.hessian == "elementwise":
                diagonals[role] = _product(g, leaf, torch.ones_like(leaf))
            else:
                diagonals[role] = _row_blocks(g, leaf, rows if leaf.dim() and leaf.shape[0] == rows else 1)
    return loss.detach(), grads, diagonals


def _rows(spec: Any, work: dict[str, torch.Tensor], params: dict[str, Any]) -> int:
    """How many independent rows the loss has: dim 0 of its unreduced shape (1 for an unbatched sample)."""
    shape = spec.unreduced_shape(work, params)
    return int(shape[0]) if shape else 1


def _product(g: torch.Tensor, leaf: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """H v, where H = dg/d(leaf) (symmetric: g is a gradient)."""
    (hv,) = torch.autograd.grad(g, leaf, grad_outputs=v, retain_graph=True, allow_unused=True)
    return torch.zeros_like(leaf) if hv is None else hv.detach()


def _row_blocks(g: torch.Tensor, leaf: torch.Tensor, rows: int) -> torch.Tensor:
    """The diagonal of a block-diagonal Hessian, one block per row: a product per position within a row."""
    per_row = leaf.numel() // max(rows, 1) if leaf.numel() else 0
    if per_row > MAX_PRODUCTS:
        raise ResourceLimitError(
            f"the Hessian diagonal of this request needs {per_row} Hessian-vector products (one per element of "
            f"a row); this server computes at most {MAX_PRODUCTS}",
            [FieldViolation("hessian", f"{per_row} elements per row; at most {MAX_PRODUCTS}")])
    diagonal = torch.zeros(rows, per_row, dtype=leaf.dtype, device=leaf.device)
    v = torch.zeros(rows, per_row, dtype=leaf.dtype, device=leaf.device)
    for k in range(per_row):
        v[:, k] = 1
        diagonal[:, k] = _product(g, leaf, v.view(leaf.shape)).reshape(rows, per_row)[:, k]
        v[:, k] = 0
    return diagonal.view(leaf.shape)


def _scaled(h: torch.Tensor, reduction: str, count: float, upstream: torch.Tensor | None) -> torch.Tensor:
    """An unreduced second derivative under ``reduction`` and the upstream gradient."""
    if reduction == "mean":
        h = h / count
    if upstream is not None:
        h = h * upstream.to(h.dtype)
    return h


def mse_hessian(t: dict[str, torch.Tensor], params: dict[str, Any], reduction: str, wrt: tuple[str, ...],
                upstream: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """(x - y)²: 2 for both roles, over N under "mean"."""
    x = t["input"]
    h = _scaled(torch.full_like(x, 2.0), reduction, max(x.numel(), 1), upstream)
    return {role: h for role in wrt}


def zero_hessian(t: dict[str, torch.Tensor], params: dict[str, Any], reduction: str, wrt: tuple[str, ...],
                 upstream: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """A piecewise-linear loss (mae): its second derivative is zero wherever it exists."""
    return {role: torch.zeros_like(t[role]) for role in wrt}


def bce_with_logits_hessian(t: dict[str, torch.Tensor], params: dict[str, Any], reduction: str,
                            wrt: tuple[str, ...], upstream: torch.Tensor | None) -> dict[str, torch.Tensor] | None:
    """-w (pw t log s + (1 - t) log(1 - s)) with s = sigmoid(x): w (pw t + 1 - t) s (1 - s) in x; zero in t
    (the loss is linear in it)."""
    x, y = t["input"], t["target"]
    p = torch.sigmoid(x)
    h = p * (1 - p)
    pos_weight = t.get("pos_weight")
    if pos_weight is not None:
        h = h * (pos_weight * y + 1 - y)
    weight = t.get("weight")
    if weight is not None:
        h = h * weight
    h = _scaled(h.expand(x.shape), reduction, max(x.numel(), 1), upstream)
    return {role: h if role == "input" else torch.zeros_like(y) for role in wrt}


def index_target_mass(y: torch.Tensor, weight: torch.Tensor | None, ignore_index: int, eps: float, classes: int,
                      dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross-entropy's per-position terms for class-index targets ``y``: ``keep`` (1 where y is not
    ``ignore_index``, 0 where it is, in ``dtype``), ``index`` (y, ignored positions pointing at class 0), ``w_y``
    (w[y], 0 where ignored; w ones without ``weight``) and ``mass``, the row's target mass
    s = sum_c a_c = (1 - eps) w[y] + eps sum(w) / C with label smoothing ``eps``."""
    kept = y != ignore_index
    index = torch.where(kept, y, torch.zeros_like(y))
    keep = kept.to(dtype)  # (a bool tensor times a Python float would round in float32)
    w = weight.to(dtype) if weight is not None else None
    w_y = w[index] * keep if w is not None else keep
    mass = w_y * (1 - eps) + keep * (w.sum() if w is not None else classes) * (eps / classes)
    return keep, index, w_y, mass


def cross_entropy_hessian(t: dict[str, torch.Tensor], params: dict[str, Any], reduction: str,
                          wrt: tuple[str, ...], upstream: torch.Tensor | None) -> dict[str, torch.Tensor] | None:
    """-Σ_c a_c log softmax(x)_c with Σ_c a_c = s: s p_c (1 - p_c) in the logits, where s is the row's target
    mass (w[y] (1 - eps) + eps/C Σ w for index targets, Σ_c w_c q_c for probabilities); zero in the target.
    The closed form covers logits (from_logits) with the class dimension at 1; other calls take autograd."""
    x, y = t["input"], t["target"]
    if not params["from_logits"] or x.dim() < 1:
        return None
    dim = 1 if x.dim() >= 2 else 0
    classes = x.shape[dim]
    weight = t.get("weight")
    w = weight if weight is not None else torch.ones(classes, dtype=x.dtype, device=x.device)
    eps = float(params["label_smoothing"])
    shape = [1] * x.dim()
    shape[dim] = classes
    if y.is_floating_point():  # probabilities, smoothed as torch does
        q = y * (1 - eps) + eps / classes
        mass = (q * w.view(shape)).sum(dim=dim)
        denominator = math.prod(mass.shape) if mass.dim() else 1
    else:
        _, _, w_y, mass = index_target_mass(y, weight, params["ignore_index"], eps, classes, x.dtype)
        denominator = float(w_y.sum())
    p = torch.softmax(x, dim=dim)
    h = p * (1 - p) * mass.unsqueeze(dim)
    if reduction == "mean":
        h = h / denominator if denominator else torch.zeros_like(h)
    if upstream is not None:
        h = h * (upstream.to(h.dtype).unsqueeze(dim) if reduction == "none" and x.dim() >= 2 else upstream.to(h.dtype))
    return {role: h if role == "input" else torch.zeros_like(y) for role in wrt}


def multi_margin_hessian(t: dict[str, torch.Tensor], params: dict[str, Any], reduction: str,
                         wrt: tuple[str, ...], upstream: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Σ_{c≠y} w[y] max(0, margin - x_y + x_c)^p / C (torch has no second derivative of it): zero for p = 1; for
    p = 2, 2 w[y] / C at each active c ≠ y, and 2 w[y] / C times the number of active classes at y."""
    x, y = t["input"], t["target"]
    if int(params["p"]) == 1:
        return {"input": torch.zeros_like(x)}
    rows = x.reshape(-1, x.shape[-1])
    index = y.reshape(-1, 1)
    classes = rows.shape[1]
    violation = float(params["margin"]) - rows.gather(1, index) + rows
    active = (violation > 0).to(x.dtype).scatter(1, index, 0.0)
    weight = t.get("weight")
    scale = (2.0 / classes) * (weight[index] if weight is not None else torch.ones_like(index, dtype=x.dtype))
    h = (active * scale).scatter(1, index, (active * scale).sum(dim=1, keepdim=True))
    if reduction == "mean":
        h = h / rows.shape[0]
    if upstream is not None:
        h = h * (upstream.to(h.dtype).reshape(-1, 1) if reduction == "none" else upstream.to(h.dtype))
    return {"input": h.reshape(x.shape)}

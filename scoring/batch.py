"""One batch of rows scored: columns to tensors, the engine's answer reduced to one loss per row, refusals
narrowed to the rows at fault, and the output columns (``loss``, kept columns, ``grad_<role>``, ``error``)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from lossd.scoring.columns import DataError, column_tensor, loss_column, null_column, stack_columns, tensor_column
from lossd.scoring.engines import LossMeta, Refused, UsageError

_FLAT = re.compile(r" at flat index (\d+)")
_ROLE = re.compile(r"^inputs\[([^\]]+)\]")


@dataclass(frozen=True)
class Plan:
    """A validated scoring job: the loss, which columns feed which role, and what to write."""

    loss: LossMeta
    roles: Mapping[str, tuple[str, ...]]  # role -> its column (several: stacked side by side)
    params: Mapping[str, Any] = field(default_factory=dict)
    gradients: bool = False
    wrt: tuple[str, ...] = ()  # empty: the loss's default
    row_reduction: str = "mean"
    keep: tuple[str, ...] = ()
    on_error: str = "stop"

    @property
    def grad_roles(self) -> tuple[str, ...]:
        """The roles whose gradients are written (``grad_<role>`` columns)."""
        return (self.wrt or self.loss.default_wrt) if self.gradients else ()

    def columns(self) -> list[str]:
        """Every input column the job reads: the mapped ones, then the kept ones."""
        needed = [c for cols in self.roles.values() for c in cols]
        return list(dict.fromkeys([*needed, *self.keep]))


@dataclass
class Scored:
    """A batch's answers: per-row loss (NaN where refused), gradients, and the error text of refused rows."""

    loss: np.ndarray
    grads: dict[str, np.ndarray]
    errors: dict[int, str] = field(default_factory=dict)  # row -> why it was refused

    @property
    def rows(self) -> int:
        """Rows in the batch."""
        return len(self.loss)

    @property
    def refused(self) -> np.ndarray:
        """True for the rows that got no score."""
        mask = np.zeros(self.rows, dtype=bool)
        mask[list(self.errors)] = True
        return mask


def tensors_of(plan: Plan, table: pa.Table) -> dict[str, np.ndarray]:
    """The mapped columns of ``table`` as tensors, by role (DataError names the column and row)."""
    out = {}
    for role, cols in plan.roles.items():
        parts = [column_tensor(table.column(c), c) for c in cols]
        out[role] = parts[0] if len(parts) == 1 else stack_columns(parts, cols)
    return out


def _per_row(plan: Plan, rows: int, loss: np.ndarray, grads: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:
    """The unreduced loss reduced over every dimension but the first; gradients scaled to match."""
    if loss.ndim == 0 or loss.shape[0] != rows:
        raise UsageError(f"{plan.loss.name}'s unreduced value has shape {list(loss.shape)}, not one value (or "
                         f"slice) per row of {rows}: it cannot be scored row by row")
    if loss.ndim == 1:
        return loss, dict(grads)
    per_row = loss.reshape(rows, -1)
    if plan.row_reduction == "sum":
        return per_row.sum(axis=1), dict(grads)
    scale = 1.0 / per_row.shape[1]
    return per_row.mean(axis=1), {r: g * np.asarray(scale, g.dtype) for r, g in grads.items()}


def _attempt(plan: Plan, engine: Any, table: pa.Table, gradients: bool) -> tuple[np.ndarray, dict]:
    tensors = tensors_of(plan, table)
    loss, grads = engine.run(plan.loss.name, tensors, plan.params, list(plan.wrt) if gradients else None)
    return _per_row(plan, table.num_rows, np.asarray(loss), grads)


def locate(plan: Plan, engine: Any, table: pa.Table, refusal: Refused) -> DataError:
    """The refusal in the data's terms: the first row at fault and its column. The row comes from the
    refusal's flat index where it has one, otherwise by halving the batch (one value-only call a step)."""
    field_name, description = refusal.violations[0]
    role = _ROLE.match(field_name)
    column = _column_of(plan, field_name)
    flat = _FLAT.search(description)
    if role and flat and role.group(1) in plan.roles:
        tensor = tensors_of(plan, table)[role.group(1)]
        per_row = max(1, tensor.size // max(1, tensor.shape[0]))
        return DataError(int(flat.group(1)) // per_row, column, _FLAT.sub("", description))
    lo, hi = 0, table.num_rows  # the first bad row lies in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            _attempt(plan, engine, table.slice(lo, mid - lo), gradients=False)
            lo = mid
        except Refused as exc:
            field_name, description = exc.violations[0]
            hi = mid
        except DataError as exc:
            return DataError(lo + exc.row, exc.column, exc.message)
    return DataError(lo, _column_of(plan, field_name), _FLAT.sub("", description))


def _column_of(plan: Plan, field_name: str) -> str:
    """The column(s) behind a refused field: ``inputs[target]`` is the column mapped to target."""
    role = _ROLE.match(field_name)
    return ",".join(plan.roles.get(role.group(1), (role.group(1),))) if role else field_name


def score(plan: Plan, engine: Any, table: pa.Table) -> Scored:
    """Score every row of ``table``. With on_error "stop" a refusal raises :class:`DataError` (its row relative
    to the table); with "skip" the refused batch is halved until the good rows are scored, and each refused
    row gets a null loss and its error text."""
    try:
        loss, grads = _attempt(plan, engine, table, plan.gradients)
        return Scored(loss, grads)
    except DataError:
        if plan.on_error == "stop":
            raise
    except Refused as refusal:
        if plan.on_error == "stop":
            raise locate(plan, engine, table, refusal) from None
    if table.num_rows == 1:
        error = _single_error(plan, engine, table)
        return Scored(np.full(1, np.nan, np.float32), {}, {0: error})
    mid = table.num_rows // 2
    return _concat([score(plan, engine, table.slice(0, mid)), score(plan, engine, table.slice(mid))])


def _single_error(plan: Plan, engine: Any, table: pa.Table) -> str:
    try:
        _attempt(plan, engine, table, plan.gradients)
    except DataError as exc:
        return f"column {exc.column}: {exc.message}"
    except Refused as refusal:
        located = locate(plan, engine, table, refusal)
        return f"column {located.column}: {located.message}"
    return "refused in its batch, accepted alone"


def _concat(parts: Sequence[Scored]) -> Scored:
    good = [p for p in parts if len(p.errors) < p.rows]
    dtype = np.result_type(*[p.loss.dtype for p in good]) if good else np.float32
    loss = np.concatenate([p.loss.astype(dtype, copy=False) for p in parts])
    errors: dict[int, str] = {}
    start = 0
    for p in parts:
        errors.update({start + row: why for row, why in p.errors.items()})
        start += p.rows
    grads = {}
    if good:
        for role, sample in good[0].grads.items():
            grads[role] = np.concatenate([p.grads[role] if role in p.grads else
                                          np.full((p.rows, *sample.shape[1:]), np.nan, sample.dtype)
                                          for p in parts])
    return Scored(loss, grads, errors)


def output_table(plan: Plan, table: pa.Table, scored: Scored) -> pa.Table:
    """The batch's output rows: ``loss``, the kept columns, ``grad_<role>`` and, with on_error "skip", ``error``."""
    refused = scored.refused if scored.errors else None
    columns: dict[str, Any] = {"loss": loss_column(scored.loss, refused)}
    for name in plan.keep:
        columns[name] = table.column(name)
    for role in plan.grad_roles:
        cols = plan.roles.get(role, ())
        like = table.schema.field(cols[0]).type if len(cols) == 1 else None
        if role in scored.grads:
            columns[f"grad_{role}"] = tensor_column(scored.grads[role], like, refused)
        else:  # every row refused
            columns[f"grad_{role}"] = null_column(table.num_rows, like)
    if plan.on_error == "skip":
        errors = [None] * scored.rows
        for row, why in scored.errors.items():
            errors[row] = why
        columns["error"] = pa.array(errors, pa.string())
    return pa.table(columns)

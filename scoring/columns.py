"""Arrow columns ↔ the numpy tensors a loss takes, and the output columns built from its answers.

A column becomes a tensor by its Arrow type: a numeric column → (N,); a fixed-size list → (N, d); nested
fixed-size lists → (N, d1, d2, ...); the fixed-shape tensor extension type → (N, *shape); lists whose rows all
have one length (JSON lines has no other kind) → as fixed-size ones. Numbers are viewed, not copied, where
Arrow's layout allows it. Nulls, strings and ragged lists are refused with the first offending row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class DataError(Exception):
    """A mapped column that cannot be a tensor, or a row the loss refused: ``row`` is relative to the batch."""

    def __init__(self, row: int, column: str, message: str) -> None:
        super().__init__(f"row {row}, column {column}: {message}")
        self.row = row
        self.column = column
        self.message = message


def _first_true(mask: pa.Array) -> int:
    return int(np.argmax(np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)))


def _first_null(array: pa.Array) -> int:
    return _first_true(array.is_null())


def column_tensor(column: pa.Array | pa.ChunkedArray, name: str) -> np.ndarray:
    """The tensor ``column`` holds, shaped (N, ...); raises :class:`DataError` naming ``name`` and the row."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    rows = len(array)
    if isinstance(array.type, pa.FixedShapeTensorType):
        if array.null_count:
            raise DataError(_first_null(array), name, "null; every row needs a value")
        storage = array.storage
        values = _values(storage.flatten(), name, rows, math.prod(array.type.shape))
        return values.reshape(rows, *array.type.shape)
    dims: list[int] = []
    per_row = 1  # elements of one row at the current depth
    while pa.types.is_fixed_size_list(array.type) or pa.types.is_list(array.type) \
            or pa.types.is_large_list(array.type):
        if array.null_count:
            raise DataError(_first_null(array) // per_row, name, "null; every row needs a value")
        if pa.types.is_fixed_size_list(array.type):
            size = array.type.list_size
        else:
            size = _uniform_length(array, name, per_row)
        dims.append(size)
        per_row *= size
        array = array.flatten()
    values = _values(array, name, rows, per_row)
    return values.reshape(rows, *dims)


def _uniform_length(array: pa.Array, name: str, per_row: int) -> int:
    """The one length of every list in ``array`` (a list column, or a level of one); refuses the first row
    whose list differs, since a tensor needs every row alike."""
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
    if len(lengths) == 0:
        return 0
    first = int(lengths[0])
    differs = np.flatnonzero(lengths != first)
    if len(differs):
        at = int(differs[0])
        raise DataError(at // per_row, name, f"a list of {int(lengths[at])} values where the rows before hold "
                        f"{first}: a tensor needs lists of one length (a fixed-size list column)")
    return first


def _values(array: pa.Array, name: str, rows: int, per_row: int) -> np.ndarray:
    """The innermost values as numpy (a view where Arrow allows), checked for type and nulls."""
    kind = array.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        raise DataError(0, name, f"holds {kind}; a loss takes numbers: a numeric column, fixed-size lists of "
                        "numbers or a fixed-shape tensor column")
    if array.null_count:
        raise DataError(_first_null(array) // max(per_row, 1), name, "null; every row needs a value")
    values = array.to_numpy(zero_copy_only=False)
    if len(values) != rows * per_row:  # (cannot happen for well-formed Arrow data)
        raise DataError(0, name, f"{len(values)} values for {rows} rows of {per_row}")
    return values


def stack_columns(tensors: Sequence[np.ndarray], names: Sequence[str]) -> np.ndarray:
    """Several (N,) columns mapped to one role, side by side: (N, k)."""
    for t, name in zip(tensors, names, strict=True):
        if t.ndim != 1:
            raise DataError(0, name, f"holds rows of shape {list(t.shape[1:])}; columns mapped together to one "
                            "role must hold one number per row")
    return np.stack(tensors, axis=1)


def tensor_column(values: np.ndarray, like: pa.DataType | None = None, null: np.ndarray | None = None) -> pa.Array:
    """An (N, ...) array as an Arrow column: numbers, nested fixed-size lists, or a fixed-shape tensor column
    when ``like`` (the input column it mirrors) was one; rows where ``null`` is true are null."""
    mask = pa.array(null) if null is not None and null.any() else None
    if values.ndim == 1:
        return pa.array(values, mask=mask)
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    if isinstance(like, pa.FixedShapeTensorType):
        storage = pa.FixedSizeListArray.from_arrays(flat, math.prod(values.shape[1:]), mask=mask)
        return pa.ExtensionArray.from_storage(pa.fixed_shape_tensor(flat.type, list(values.shape[1:])), storage)
    array: Any = flat
    for depth, size in enumerate(reversed(values.shape[1:])):
        array = pa.FixedSizeListArray.from_arrays(array, size, mask=mask if depth == values.ndim - 2 else None)
    return array


def null_column(rows: int, like: pa.DataType | None) -> pa.Array:
    """A column of nulls typed like a float input column (for a batch whose every row was refused)."""
    if like is not None and (pa.types.is_floating(like) or pa.types.is_fixed_size_list(like)
                             or isinstance(like, pa.FixedShapeTensorType)):
        return pa.nulls(rows, like)
    return pa.nulls(rows, pa.float32())


def loss_column(values: np.ndarray, refused: np.ndarray | None = None) -> pa.Array:
    """The per-row loss; rows in ``refused`` (a boolean mask) are null, not NaN."""
    return pa.array(values, mask=refused if refused is not None and refused.any() else None)

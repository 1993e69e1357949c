"""Seeded datasets for the batch-scoring tests, and the numpy references their scores are checked against."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

ROWS = 2_000
CLASSES = 5


def regression(rows: int = ROWS, seed: int = 0) -> pa.Table:
    """id, pred, label (float32), vec and vec_target (fixed-size lists of 3), country (string)."""
    rng = np.random.default_rng(seed)
    vec = rng.standard_normal((rows, 3)).astype(np.float32)
    vec_target = rng.standard_normal((rows, 3)).astype(np.float32)
    return pa.table({
        "id": np.arange(rows, dtype=np.int64),
        "pred": rng.standard_normal(rows).astype(np.float32),
        "label": rng.standard_normal(rows).astype(np.float32),
        "vec": fixed_list(vec),
        "vec_target": fixed_list(vec_target),
        "country": rng.choice(np.array(["de", "fr", "jp", "us"]), rows),
    })


def classification(rows: int = ROWS, seed: int = 1) -> pa.Table:
    """id, logits (fixed-size list of CLASSES float32), label (int64 class index), model (string)."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((rows, CLASSES)).astype(np.float32)
    return pa.table({
        "id": np.arange(rows, dtype=np.int64),
        "logits": fixed_list(logits),
        "label": rng.integers(0, CLASSES, rows),
        "model": rng.choice(np.array(["a", "b"]), rows),
    })


def fixed_list(values: np.ndarray) -> pa.Array:
    """An (N, d1, ...) array as nested fixed-size lists."""
    array = pa.array(np.ascontiguousarray(values).reshape(-1))
    for size in reversed(values.shape[1:]):
        array = pa.FixedSizeListArray.from_arrays(array, size)
    return array


def tensor(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A fixed-size-list column back as an (N, ...) numpy array (independent of lossd's converter)."""
    rows = column.to_pylist()
    return np.asarray(rows, dtype=np.float64)


def mse_rows(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row mean squared error and its gradient with respect to ``pred`` (of that row's own loss)."""
    diff = pred.astype(np.float64) - target.astype(np.float64)
    k = int(np.prod(diff.shape[1:])) if diff.ndim > 1 else 1
    axes = tuple(range(1, diff.ndim))
    loss = (diff**2).mean(axis=axes) if axes else diff**2
    return loss, 2 * diff / k


def cross_entropy_rows(logits: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row cross-entropy of class-index targets and its gradient with respect to the logits."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logsumexp = np.log(np.exp(z).sum(axis=1))
    loss = logsumexp - z[np.arange(len(z)), label]
    grad = np.exp(z - logsumexp[:, None])
    grad[np.arange(len(z)), label] -= 1
    return loss, grad

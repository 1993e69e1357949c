"""Cases for the sequence family: ctc (a numpy forward-algorithm oracle, in log space)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, log_softmax, reduce


def _ctc_one(lp: np.ndarray, labels: np.ndarray, blank: int) -> float:
    """-log p(labels | lp) for one sequence: lp (T, C) log-probabilities of the frames used."""
    ext = [blank]
    for label in labels:
        ext += [int(label), blank]
    s_len = len(ext)
    alpha = np.full(s_len, -np.inf)
    if len(lp) == 0:
        return 0.0 if len(labels) == 0 else np.inf
    alpha[0] = lp[0, blank]
    if s_len > 1:
        alpha[1] = lp[0, ext[1]]
    for t in range(1, len(lp)):
        prev = alpha.copy()
        for s in range(s_len):
            terms = [prev[s]]
            if s >= 1:
                terms.append(prev[s - 1])
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                terms.append(prev[s - 2])
            alpha[s] = np.logaddexp.reduce(terms) + lp[t, ext[s]]
    tail = alpha[-2:] if s_len > 1 else alpha[-1:]
    return -float(np.logaddexp.reduce(tail))


def _ctc(a: Arrays, p: Any, r: str) -> Any:
    lp, targets = a["log_probs"], a["targets"]
    il, tl = np.atleast_1d(a["input_lengths"]), np.atleast_1d(a["target_lengths"])
    batched = lp.ndim == 3
    if not batched:
        lp, targets = lp[:, None], targets[None]
    starts = np.concatenate([[0], np.cumsum(tl)[:-1]])
    losses = []
    for n in range(lp.shape[1]):
        labels = targets[starts[n]:starts[n] + tl[n]] if targets.ndim == 1 else targets[n, :tl[n]]
        loss = _ctc_one(lp[:il[n], n], labels, p["blank"])
        losses.append(0.0 if p["zero_infinity"] and np.isinf(loss) else loss)
    out = np.array(losses)
    if r == "mean":
        return (out / np.maximum(tl, 1)).mean()
    return reduce(out if batched else out[0], r)


def _padded(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"log_probs": log_softmax(floats(rng, np.float64, 7, 3, 5), axis=2).astype(dtype),
            "targets": np.array([[1, 2, 2, 4], [3, 1, 0, 0], [4, 4, 1, 0]]),  # padding beyond the lengths
            "input_lengths": np.array([7, 5, 6]), "target_lengths": np.array([4, 2, 3])}


def _concatenated(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"log_probs": log_softmax(floats(rng, np.float64, 6, 2, 4), axis=2).astype(dtype),
            "targets": np.array([0, 1, 1, 2]), "input_lengths": np.array([6, 4]), "target_lengths": np.array([3, 1])}


def _infeasible(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    # Sequence 0 needs 5 frames (1 1 1 with blanks between repeats) but gets 4: no valid alignment.
    return {"log_probs": log_softmax(floats(rng, np.float64, 5, 2, 3), axis=2).astype(dtype),
            "targets": np.array([[1, 1, 1], [2, 1, 0]]), "input_lengths": np.array([4, 5]),
            "target_lengths": np.array([3, 2])}


CASES = [
    Case("ctc", _padded, _ctc, bad_shape=("target_lengths", (4,))),
    Case("CTCLoss", _concatenated, _ctc, params={"blank": 3}, variant="concatenated,blank=3",
         bad_shape=("log_probs", (6, 2, 4, 1))),
    Case("ctc", _infeasible, _ctc, params={"zero_infinity": True}, variant="zero_infinity",
         bad_shape=("input_lengths", (2, 1))),
]

"""Cases for the distribution family: kl_div and distillation (numpy oracles)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, log_softmax, reduce


def _kl_inputs(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": log_softmax(floats(rng, np.float64, 4, 5), axis=1).astype(dtype),
            "target": np.exp(log_softmax(floats(rng, np.float64, 4, 5), axis=1)).astype(dtype)}


def _kl_log_inputs(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": log_softmax(floats(rng, np.float64, 3, 2, 4), axis=2).astype(dtype),
            "target": log_softmax(floats(rng, np.float64, 3, 2, 4), axis=2).astype(dtype)}


def _kl(a: Arrays, p: Any, r: str) -> Any:
    x, t = a["input"], a["target"]
    logp, prob = (t, np.exp(t)) if p["log_target"] else (np.log(t), t)
    pointwise = prob * (logp - x)
    if r == "batchmean":
        return pointwise.sum() / x.shape[0]
    return reduce(pointwise, r)


def _kd_inputs(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"student": floats(rng, dtype, 5, 4, low=-3, high=3), "teacher": floats(rng, dtype, 5, 4, low=-3, high=3)}


def _kd_label_inputs(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {**_kd_inputs(rng, dtype), "labels": rng.integers(0, 4, 5)}


def _kd(a: Arrays, p: Any, r: str) -> Any:
    s, t, temp = a["student"], a["teacher"], p["temperature"]
    log_s, log_t = log_softmax(s / temp, axis=1), log_softmax(t / temp, axis=1)
    losses = temp**2 * (np.exp(log_t) * (log_t - log_s)).sum(axis=1)
    if "labels" in a:
        y = a["labels"]
        ce = -log_softmax(s, axis=1)[np.arange(len(y)), y]
        losses = p["alpha"] * ce + (1 - p["alpha"]) * losses
    return losses.mean() if r == "batchmean" else reduce(losses, r)


CASES = [
    Case("kl_div", _kl_inputs, _kl, bad_shape=("target", (4, 4))),
    Case("KLDivLoss", _kl_log_inputs, _kl, params={"log_target": True}, variant="log_target,3-d",
         bad_shape=("target", (3, 2))),
    Case("distillation", _kd_inputs, _kd, bad_shape=("teacher", (5, 3))),
    Case("distillation", _kd_inputs, _kd, params={"temperature": 1.5}, variant="T=1.5", bad_shape=("student", (20,))),
    Case("kd", _kd_label_inputs, _kd, params={"alpha": 0.3}, variant="alpha=0.3,labels", bad_shape=("labels", (4,))),
]

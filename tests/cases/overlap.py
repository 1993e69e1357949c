"""Cases for the overlap losses against monai (per sample and class, reduction none): TverskyLoss, DiceLoss with
jaccard=True (which smooths by half as much: its smooth s equals lossd's 2s), and focal Tversky as monai's Tversky
loss raised to gamma. monai is imported where it is used: the GPU checks load these cases without it."""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, reduce


def _maps(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": floats(rng, dtype, 2, 3, 4, 4), "target": (rng.random((2, 3, 4, 4)) > 0.5).astype(dtype)}


def _indexed(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": floats(rng, dtype, 2, 3, 4, 4), "target": rng.integers(0, 3, (2, 4, 4))}


def _monai(name: str, a: Arrays, **kwargs: Any) -> np.ndarray:
    import monai
    import torch

    x, t = torch.from_numpy(a["input"]), torch.from_numpy(np.asarray(a["target"]))
    if not t.is_floating_point():  # class indices: monai one-hot encodes a (N, 1, *) target
        kwargs.update(softmax=True, to_onehot_y=True)
        t = t.unsqueeze(1)
    else:
        kwargs.setdefault("sigmoid", True)
    loss = getattr(monai.losses, name)(reduction="none", **kwargs)(x, t)
    return loss.reshape(x.shape[:2]).numpy()


def _tversky(a: Arrays, p: Any, r: str) -> Any:
    s = p["smooth"]
    return reduce(_monai("TverskyLoss", a, alpha=p["alpha"], beta=p["beta"], smooth_nr=s, smooth_dr=s), r)


def _focal_tversky(a: Arrays, p: Any, r: str) -> Any:
    s = p["smooth"]
    return reduce(_monai("TverskyLoss", a, alpha=p["alpha"], beta=p["beta"], smooth_nr=s, smooth_dr=s)
                  ** p["gamma"], r)


def _jaccard(a: Arrays, p: Any, r: str) -> Any:
    s = 2 * p["smooth"]
    return reduce(_monai("DiceLoss", a, jaccard=True, smooth_nr=s, smooth_dr=s), r)


CASES = [
    Case("tversky", _maps, _tversky, bad_shape=("target", (2, 3, 4, 3))),
    Case("TverskyLoss", _maps, _tversky, params={"alpha": 0.3, "beta": 0.7, "smooth": 1.0},
         variant="alpha=0.3,beta=0.7,smooth=1"),
    Case("tversky", _indexed, _tversky, params={"activation": "softmax"}, variant="softmax, class indices"),
    Case("focal_tversky", _maps, _focal_tversky, bad_shape=("target", (2, 2, 4, 4))),
    Case("FocalTverskyLoss", _indexed, _focal_tversky, params={"activation": "softmax", "gamma": 1.5},
         variant="softmax, gamma=1.5"),
    Case("jaccard", _maps, _jaccard, bad_shape=("target", (2, 3, 3, 4))),
    Case("soft_iou", _indexed, _jaccard, params={"activation": "softmax", "smooth": 0.5},
         variant="softmax, class indices, smooth=0.5"),
]
